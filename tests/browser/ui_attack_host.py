"""A loopback listener that must receive nothing, and the host page hostile UI extensions run in.

The host page is Kumix's own client code (`web/client/bridge/mount.js`, the page's Trusted
Types policy, the host-page gate `frame-bridge.js`) under the page's CSP with the per-response
nonce, served from 127.0.0.1; the frames are built by `UiFrames.mount` (the server's frame
builder) and every message the gate forwards is decided by `UiFrames.handle` (the server's
bridge session). Each protection can be switched off on its own (`Off`), so every attack is
shown succeeding without it and failing with it; the switches change what the page is
served, never Kumix's code on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumix.app.extensions import ExtensionService
from kumix.app.ui_frames import MountedFrame, UiFrames
from kumix.core.errors import KumixError
from kumix.extensions.policy import load_policy
from kumix.extensions.ui.bridge_session import AskUser, Reply, Unload
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.ui_send_approvals import SendApprovalStore
from kumix.web.headers import PAGE_CSP

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "src" / "kumix" / "web" / "client"
FIXTURES = REPO / "tests" / "fixtures" / "ui_attacks"
ROOM = "!attacked-room:localhost"


# -- the listener --------------------------------------------------------------------


NO_BYTES = "<connection, no bytes>"


class Listener:
    """A plain TCP server and a UDP socket on 127.0.0.1 that record whatever reaches them:
    an HTTP request line, a bare connection, a STUN datagram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[tuple[str, str]] = []
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind(("127.0.0.1", 0))
        self._tcp.listen(64)
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self.port = self._tcp.getsockname()[1]
        self.udp_port = self._udp.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _record(self, kind: str, what: str) -> None:
        with self._lock:
            self._hits.append((kind, what))

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self._record("tcp", line or NO_BYTES)
        if data:
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                             b"access-control-allow-origin: *\r\ncontent-length: 2\r\n\r\nok")
        conn.close()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data, _ = self._udp.recvfrom(65536)
            except OSError:
                return
            # A STUN binding request starts with message type 0x0001.
            self._record("udp", "stun binding request" if data[:2] == b"\x00\x01" else data[:8].hex())

    def hits(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._hits)

    def hits_but_navigation_preconnects(self, navigating_frames: int) -> list[tuple[str, str]]:
        """What reached the listener, less at most one bare TCP connection (no bytes at all) per
        frame that navigates itself: Chromium opens that connection to a navigation's target
        before the host page's frame-src refuses the navigation (seen in its net log as a
        preconnect for the frame's own target URL), and nothing Kumix serves can veto the
        navigation first in an opaque-origin frame (its `location` is unforgeable, and the
        Navigation API fires no events there). docs/ui-extensions.md lists it; everything
        else, and any byte, still counts."""
        hits = self.hits()
        bare = [hit for hit in hits if hit == ("tcp", NO_BYTES)]
        return [hit for hit in hits if hit != ("tcp", NO_BYTES)] + bare[navigating_frames:]

    def paths(self) -> set[str]:
        """The first path segment of every HTTP request that arrived, and `stun` for STUN."""
        out = set()
        for kind, what in self.hits():
            if kind == "udp":
                out.add("stun")
            elif " " in what:
                out.add(what.split(" ")[1].split("?")[0].lstrip("/"))
        return out

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def close(self) -> None:
        self._closed = True
        self._tcp.close()
        self._udp.close()


# -- protections that can be switched off -----------------------------------------------


@dataclass(frozen=True)
class Off:
    """Protections removed from what the page is served, one switch each."""

    frame_csp: bool = False
    """Kumix's CSP `<meta>` taken out of the frame document."""
    webrtc: bool = False
    """The bootstrap leaves WebRTC (and the other deleted constructors) in place."""
    nested_frames: bool = False
    """The bootstrap lets frame elements be created and frame markup through."""
    host_csp: bool = False
    """The host page is served with no CSP at all (so no inherited policy in the frame)."""
    sandbox: bool = False
    """The iframe gets allow-same-origin, top navigation and popups that escape the sandbox."""
    gate: bool = False
    """The host-page gate with its window, origin, token, size and rate checks removed."""
    meta_refresh: str | None = None
    """The builder's removal of `<meta http-equiv>` undone in this extension's frame (its
    refresh put back)."""
    bootstrap_first: bool = False
    """Kumix's bootstrap moved after the extension's scripts."""
    raw_text: tuple[tuple[str, str], ...] = ()
    """(split, raw) pairs: the builder's refusal of `</script` in a script undone, as a builder
    that inlined the extension's text as it is would do."""

    @property
    def any(self) -> bool:
        return any(vars(self).values())


ESCAPING_SANDBOX = ("allow-scripts allow-same-origin allow-top-navigation allow-popups "
                    "allow-popups-to-escape-sandbox allow-forms allow-modals")
CSP_META = re.compile(r'<meta content="[^"]*" http-equiv="Content-Security-Policy">')
BOOTSTRAP_SCRIPT = re.compile(r'<script nonce="[^"]+">// Kumix UI frame bootstrap.*?</script>', re.DOTALL)


def _replace_once(text: str, old: str, new: str) -> str:
    # Each switch must find exactly what it removes: a switch that silently matched nothing
    # would make an "off" run test the protection it claims to remove.
    assert text.count(old) == 1, f"switch target not found exactly once: {old[:60]!r}"
    return text.replace(old, new)


def patch_srcdoc(srcdoc: str, off: Off, listener: Listener) -> str:
    if off.frame_csp:
        assert len(CSP_META.findall(srcdoc)) == 1
        srcdoc = CSP_META.sub("", srcdoc)
    if off.webrtc:
        srcdoc = _replace_once(srcdoc, "for (const name of removed) {", "for (const name of []) {")
    if off.nested_frames:
        srcdoc = _replace_once(srcdoc, "if (frameTags.has(local)) {", "if (false) {")
        srcdoc = _replace_once(srcdoc, "const frameMarkup = /[<:](?:i?frame|object|embed|portal|fencedframe)/i;",
                               "const frameMarkup = /(?!)/;")
    if off.meta_refresh is not None and f'"extensionId":"{off.meta_refresh}"' in srcdoc:
        srcdoc = _replace_once(srcdoc, "<head>", f'<head><meta content="0; url={listener.url}/meta-refresh" '
                                                 'http-equiv="refresh">')
    if off.bootstrap_first:
        match = BOOTSTRAP_SCRIPT.search(srcdoc)
        assert match is not None
        srcdoc = srcdoc[: match.start()] + srcdoc[match.end():]
        srcdoc = _replace_once(srcdoc, "</head>", match.group(0) + "</head>")
    for split, raw in off.raw_text:
        assert split in srcdoc
        srcdoc = srcdoc.replace(split, raw)
    return srcdoc


def patch_gate(source: str) -> str:
    for old, new in (
        ('if (event.source !== this.frameWindow) return this.drop("wrong_window");', ""),
        ('if (event.origin !== "null") return this.drop("wrong_origin");', ""),
        ('if (data.widgetId !== this.widgetId) return this.drop("wrong_token");', ""),
        ("if (this.overRate(nowMs)) {", "if (false) {"),
        ("if (jsonLengthAtLeast(data, max) <= max) {", "if (true) {"),
        ("if (raw === null || raw.length > max || this.encoder.encode(raw).length > max) {", "if (false) {"),
    ):
        source = _replace_once(source, old, new)
    return source


def host_csp(nonce: str) -> str:
    """The page's CSP with the per-response nonce the frames' scripts and styles carry, and
    the frames' Trusted Types policy name (`default`) next to the page's own (`kumix`)."""
    csp = _replace_once(PAGE_CSP, "script-src 'self'", f"script-src 'self' 'nonce-{nonce}'")
    csp = _replace_once(csp, "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    return _replace_once(csp, "trusted-types kumix", "trusted-types kumix default")


HOST_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Kumix attack host</title>
<script type="module" src="/host.js"></script></head><body><main id="frames"></main></body></html>
"""

HOST_JS = """
import { mountFrame } from "/client/bridge/mount.js";
const state = { longTasks: [], unloaded: [], forwarded: 0, flood: 0, ready: false, mounted: {} };
window.__kumixAttack = state;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) state.longTasks.push([entry.startTime, entry.duration]);
}).observe({ type: "longtask", buffered: true });
const queue = [];
let flushing = false;
const apply = (answer) => {
  const frame = state.mounted[answer.widgetId];
  if (!frame) return;
  for (const message of answer.replies) frame.deliver(message);
  if (answer.unload) { frame.unload(); state.unloaded.push([answer.widgetId, "server: " + answer.unload]); }
};
const flush = async () => {
  if (flushing) return;
  flushing = true;
  try {
    while (queue.length) {
      for (const answer of await window.kumixServer(queue.splice(0, 200))) apply(answer);
    }
  } finally {
    flushing = false;
  }
};
const mounts = await (await fetch("/mounts.json")).json();
for (const mounted of mounts) {
  const box = document.createElement("section");
  document.getElementById("frames").append(box);
  state.mounted[mounted.widgetId] = mountFrame(box, mounted, {
    // A body over 1 MB is recorded by its size: the test's page-to-server hop (a CDP binding)
    // is not the WebSocket and does not carry 10 MB; what is tested is that the gate let it out.
    forward: (raw) => {
      state.forwarded += 1;
      if (raw.includes('"attack-flood-')) state.flood += 1;
      const widgetId = mounted.widgetId;
      queue.push(raw.length > 1000000 ? { widgetId, oversize: raw.length } : { widgetId, raw });
      flush();
    },
    onUnload: (reason) => state.unloaded.push([mounted.widgetId, reason]),
    onLoad: () => { queue.push({ widgetId: mounted.widgetId, start: true }); flush(); },
  });
}
// Long tasks are counted from here: the frames are mounted (mounting is the page's own
// work, measured by bench/ui_bridge.py) and everything after is the frames' doing.
state.mountingAt = performance.now();
state.ready = true;
"""


class Actions:
    """The account's side of the bridge: records what a frame made happen."""

    def __init__(self) -> None:
        self.performed: list[tuple[str, Any]] = []

    async def read_events(self, room_id: str, event_type: str, msgtype: str | None,
                          limit: int) -> list[Mapping[str, Any]]:
        self.performed.append(("read_events", room_id))
        return [{"type": "m.room.message", "room_id": room_id, "event_id": "$e1",
                 "content": {"msgtype": "m.text", "body": "hello"}}]

    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        self.performed.append(("send_event", room_id))
        return "$sent"

    async def navigate(self, room_link: str) -> None:
        self.performed.append(("navigate", room_link))

    async def theme_tokens(self) -> Mapping[str, Any]:
        self.performed.append(("theme_tokens", None))
        return {"bg": "#ffffff"}

    async def proc_call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        self.performed.append(("proc_call", extension_id))
        return {"html": ""}


@dataclass
class Run:
    """One page load: the frames mounted in it and what happened."""

    frames: dict[str, MountedFrame]
    off: Off
    nonce: str
    reports: list[tuple[str, str, str]] = field(default_factory=list)
    """(frame url, attack name, outcome) from the frames' console."""
    forwarded: dict[str, list[str]] = field(default_factory=dict)
    """widgetId → requestIds of every message the page relayed to the server."""
    asks: list[AskUser] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Exceptions of the stand-in server side: any fails the test."""

    def outcome(self, name: str) -> str:
        found = [o for _, n, o in self.reports if n == name]
        assert len(found) == 1, (name, self.reports)
        return found[0]


class AttackHost:
    """Installs the hostile fixtures as external extensions, granted and enabled, and serves
    the host page for one `Run` at a time."""

    def __init__(self, root: Path, listener: Listener) -> None:
        self.listener = listener
        self.ext_root = root / "extensions"
        self.ext_root.mkdir()
        for fixture in sorted(FIXTURES.iterdir()):
            if fixture.is_dir():
                self._install(fixture, self.ext_root / fixture.name)
        self.db = Database(root / "state.db")
        self.service = ExtensionService(load_policy("dev"), ExtensionStateStore(self.db), (self.ext_root,))
        for status in self.service.list():
            if status.record.external and status.record.manifest is not None:
                for capability in status.record.manifest.capabilities:
                    self.service.grant(status.id, capability)
                self.service.enable(status.id)
        self.frames = UiFrames(self.service, SendApprovalStore(self.db))
        self.actions = Actions()
        self.run: Run | None = None
        self._gate = (CLIENT / "bridge" / "frame-bridge.js").read_text()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._loop_thread.start()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _install(self, source: Path, target: Path) -> None:
        shutil.copytree(source, target)
        for path in target.rglob("*"):
            if path.is_file() and path.suffix in (".js", ".html"):
                text = path.read_text()
                text = text.replace("__LISTENER__", self.listener.url)
                text = text.replace("__UDP_PORT__", str(self.listener.udp_port))
                path.write_text(text)

    def rewrite(self, extension_id: str, name: str, old: str, new: str) -> None:
        """Change one file of an installed extension (the builder reads it at the next mount)."""
        path = self.ext_root / extension_id / name
        path.write_text(_replace_once(path.read_text(), old, new))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(5)
        self.db.close()

    # -- one run ---------------------------------------------------------------------

    def prepare(self, extension_ids: list[str], off: Off = Off()) -> Run:
        for widget_id in list(self.run.frames) if self.run else ():
            self.frames.unload(widget_id)
        nonce = secrets.token_urlsafe(16)
        frames = {}
        for extension_id in extension_ids:
            frame = self.frames.mount(extension_id, room_id=ROOM, host_origin=self.url, script_nonce=nonce,
                                      theme={"bg": "#ffffff"})
            frames[frame.widget_id] = frame
        self.run = Run(frames=frames, off=off, nonce=nonce)
        return self.run

    def mounts_json(self) -> bytes:
        assert self.run is not None
        out = []
        for frame in self.run.frames.values():
            doc = frame.to_json()
            doc["srcdoc"] = patch_srcdoc(doc["srcdoc"], self.run.off, self.listener)
            if self.run.off.sandbox:
                doc["sandbox"] = ESCAPING_SANDBOX
            out.append(doc)
        return json.dumps(out).encode()

    def server(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The page's batch of forwarded messages, decided by the server's bridge sessions."""
        try:
            return self._server_batch(batch)
        except BaseException as exc:
            assert self.run is not None
            self.run.errors.append(repr(exc))
            raise

    def _server_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        run = self.run
        assert run is not None
        answers = []
        for item in batch:
            widget_id = str(item["widgetId"])
            frame = run.frames.get(widget_id)
            if frame is None:
                continue
            if item.get("start"):
                effects = list(frame.session.start())
            elif "oversize" in item:
                run.forwarded.setdefault(widget_id, []).append(f"<{item['oversize']} bytes>")
                continue
            else:
                raw = str(item["raw"])
                run.forwarded.setdefault(widget_id, []).append(_request_id(raw))
                try:
                    effects = asyncio.run_coroutine_threadsafe(
                        self.frames.handle(widget_id, raw, time.monotonic(), self.actions), self._loop).result(30)
                except KumixError:
                    continue  # unloaded already
            for ask in [e for e in effects if isinstance(e, AskUser)]:
                # The user declines: the confirmation was shown, nothing is sent.
                run.asks.append(ask)
                effects.extend(asyncio.run_coroutine_threadsafe(self.frames.answer(
                    widget_id, ask.request_id, approved=False, always=False, actions=self.actions),
                    self._loop).result(30))
            replies = [e.message for e in effects if isinstance(e, Reply)]
            unload = next((e.reason for e in effects if isinstance(e, Unload)), None)
            if unload is not None:
                run.unloads.append(widget_id)
                if run.off.gate:
                    # The gate alone is under test: the server's own unload (it checks the
                    # rate again) is recorded but not carried out in the page.
                    unload = None
            answers.append({"widgetId": widget_id, "replies": replies, "unload": unload})
        return answers

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                run = host.run
                path = self.path.split("?")[0]
                headers: list[tuple[str, str]] = []
                if path == "/":
                    body, kind = HOST_HTML.encode(), "text/html; charset=utf-8"
                    if run is not None and not run.off.host_csp:
                        headers.append(("content-security-policy", host_csp(run.nonce)))
                elif path == "/host.js":
                    body, kind = HOST_JS.encode(), "text/javascript"
                elif path == "/mounts.json":
                    body, kind = host.mounts_json(), "application/json"
                elif path.startswith("/client/") and ".." not in path:
                    file = CLIENT / path.removeprefix("/client/")
                    if not file.is_file():
                        self.send_error(404)
                        return
                    text = file.read_text()
                    if file.name == "frame-bridge.js" and run is not None and run.off.gate:
                        text = patch_gate(text)
                    body, kind = text.encode(), "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("cache-control", "no-store")
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


def _request_id(raw: str) -> str:
    if len(raw) > 1_000_000:
        return f"<{len(raw)} bytes>"
    try:
        value = json.loads(raw)
    except ValueError:
        return "<not json>"
    return str(value.get("requestId")) if isinstance(value, dict) else "<not an object>"


def iter_reports(text: str) -> Iterator[tuple[str, str]]:
    if text.startswith("KUMIX-ATTACK "):
        report = json.loads(text.removeprefix("KUMIX-ATTACK "))
        yield str(report["name"]), str(report["outcome"])
