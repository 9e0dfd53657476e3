"""The UI-extension bridge in Chromium, against baselines measured in the same run.

    .venv/bin/python bench/ui_bridge.py [--rounds 300] [--mounts 20]

Starts a homeserver, logs a Kumix account in, serves the web app (uvicorn on 127.0.0.1),
opens Debian's Chromium on `/ext/bench-bridge?room=ROOM` (an external UI extension written
to a temporary directory, granted what it declares) and measures, inside the frame:

1. a bridge `io.kumix.theme_tokens` round trip (frame → host gate → WebSocket → server
   session → back) against a bare `postMessage` round trip between the same frame and page
   (the page echoes it), and the WebSocket hop alone (the page sends the same request for a
   mounted-but-not-shown frame straight on a WebSocket of its own: no frame, no gate);
   target: bridge <= 3 x bare + WebSocket hop;
2. `io.kumix.proc_call` to `markdown-renderer` through the bridge against `Kumix.call` of
   the same method on the server's own loop;
3. mounting a frame (POST /api/ui/frames: build; then the iframe until its first
   `content_loaded` reaches the page) against a plain sandboxed srcdoc frame whose only
   script posts one message.

A benchmark, not a test: it prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
USER, PASSWORD = "uibench", "bench-password"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
MARKDOWN = "# Title\n\nSome *emphasis*, a [link](https://example.org) and a list:\n\n- one\n- two\n"

ENTRY = """<!DOCTYPE html><html><head><title>bench</title><script src="bench.js"></script></head>
<body><p>bench</p></body></html>"""

# The frame's side: negotiate, then time each kind of round trip with the frame's clock.
BENCH_JS = r"""
"use strict";
const boot = window.__KUMIX_UI_BOOTSTRAP__;
const pending = new Map();
let counter = 0;
let negotiated;
const ready = new Promise((resolve) => { negotiated = resolve; });
const post = (m) => parent.postMessage(m, "*");
window.addEventListener("message", (event) => {
  if (event.source !== parent) return;
  const m = event.data;
  if (m && m.benchEcho !== undefined) {
    const w = pending.get("echo");
    if (w) { pending.delete("echo"); w(m); }
    return;
  }
  if (!m || m.widgetId !== boot.widgetId) return;
  if (m.api === "fromWidget" && m.response) {
    const w = pending.get(m.requestId); if (w) { pending.delete(m.requestId); w(m.response); }
  } else if (m.api === "toWidget" && m.action === "capabilities") {
    post({ ...m, response: { capabilities: ["io.kumix.theme_tokens", "io.kumix.proc_call"] } });
  } else if (m.api === "toWidget" && m.action === "notify_capabilities") {
    post({ ...m, response: {} });
    negotiated(m.data.approved);
  }
});
const ask = (action, data) => new Promise((resolve) => {
  counter += 1;
  const requestId = "b" + counter;
  pending.set(requestId, resolve);
  post({ api: "fromWidget", widgetId: boot.widgetId, requestId, action, data });
});
const echo = (i) => new Promise((resolve) => { pending.set("echo", resolve); post({ benchEcho: i }); });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const time = async (n, one) => {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const t0 = performance.now();
    const answer = await one(i);
    out.push(performance.now() - t0);
    if (answer && answer.error) throw new Error(answer.error.message);
    // Stay under the policy's message rate: the bench measures latency, not the limiter.
    if (i % 20 === 19) await sleep(25);
  }
  return out;
};
window.kumixWarm = async (markdown) => {
  await ready;
  // The first call of each proc extension starts its worker: retry until both answer.
  for (const [action, data] of [["io.kumix.theme_tokens", {}],
      ["io.kumix.proc_call",
       { extension: "markdown-renderer", method: "render.markdown", params: { source: markdown } }]]) {
    for (let i = 0; i < 30; i += 1) {
      const answer = await ask(action, data);
      if (!answer.error) break;
      await sleep(500);
    }
  }
};
window.kumixBench = async (rounds, markdown) => {
  await ready;
  const result = { bare: [], bridge: [], proc: [] };
  for (let r = 0; r < 3; r += 1) {  // interleaved rounds: the machine's load hits all alike
    result.bare.push(...await time(rounds / 3, (i) => echo(i)));
    result.bridge.push(...await time(rounds / 3, () => ask("io.kumix.theme_tokens", {})));
    result.proc.push(...await time(rounds / 6, () => ask("io.kumix.proc_call",
      { extension: "markdown-renderer", method: "render.markdown", params: { source: markdown } })));
  }
  return result;
};
post({ api: "fromWidget", widgetId: boot.widgetId, requestId: "loaded", action: "content_loaded", data: {} });
"""

# The page's side: echo the frame's bare messages (the only thing added to Kumix's page).
# Playwright runs an init script in every frame, the UI frame too: there it must do nothing,
# or the frame would echo the page's echo back and each bare round trip would leave a
# ping-pong running between the two for the rest of the run.
ECHO_JS = """
window.benchEchoes = 0;
if (window === window.top) {
  addEventListener("message", (event) => {
    if (event.data && event.data.benchEcho !== undefined) {
      window.benchEchoes += 1;
      event.source.postMessage(event.data, "*");
    }
  });
}
"""

# The WebSocket hop alone, from the page: a connection of its own, a frame mounted on it but
# never shown, negotiated by hand, then the same theme_tokens request straight on the socket.
WS_HOP_JS = """
async ([rounds, roomId, givenNonce]) => {
  const nonce = givenNonce || document.querySelector("script[nonce]").nonce;
  const ws = new WebSocket(`ws://${location.host}/api/events`);
  let waiter = null;
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (waiter && waiter.test(f)) { const w = waiter; waiter = null; w.resolve(f); }
  };
  const next = (test) => new Promise((resolve) => { waiter = { test, resolve }; });
  const hello = await next((f) => f.type === "hello");
  const answer = await (await fetch("/api/ui/frames", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ extension: "bench-bridge", room: roomId, nonce, connection: hello.connection }) })).json();
  const W = answer.widgetId;
  const bridge = (message) => ws.send(JSON.stringify(
    { type: "bridge", widget_id: W, message: JSON.stringify(message) }));
  let got = next((f) => f.type === "bridge" && f.message.action === "capabilities");
  ws.send(JSON.stringify({ type: "bridge_start", widget_id: W }));
  const caps = (await got).message;
  got = next((f) => f.type === "bridge" && f.message.action === "notify_capabilities");
  bridge({ ...caps, response: { capabilities: ["io.kumix.theme_tokens"] } });
  const notify = (await got).message;
  bridge({ ...notify, response: {} });
  const out = [];
  for (let i = 0; i < rounds; i += 1) {
    const id = "ws" + i;
    const reply = next((f) => f.type === "bridge" && f.message.requestId === id);
    const t0 = performance.now();
    bridge({ api: "fromWidget", widgetId: W, requestId: id, action: "io.kumix.theme_tokens", data: {} });
    await reply;
    out.push(performance.now() - t0);
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 25));
  }
  ws.close();
  return out;
}
"""

# Mounting: the Kumix frame (build on the server + the iframe until its first content_loaded)
# against a plain sandboxed srcdoc frame with one inline script that posts one message.
MOUNT_JS = """
async ([count, roomId]) => {
  const nonce = document.querySelector("script[nonce]").nonce;
  const ws = new WebSocket(`ws://${location.host}/api/events`);
  const hello = await new Promise((resolve) => {
    ws.onmessage = (e) => { const f = JSON.parse(e.data); if (f.type === "hello") resolve(f); };
  });
  // The page's CSP allows a policy named "default" (the frames' own); the page does not use it.
  const pass = trustedTypes.createPolicy("default", { createHTML: (s) => s });
  const firstMessage = (iframe) => new Promise((resolve) => {
    const on = (e) => { if (e.source === iframe.contentWindow) { removeEventListener("message", on); resolve(); } };
    addEventListener("message", on);
  });
  const kumix = [], build = [], plain = [];
  for (let i = 0; i < count; i += 1) {
    let t0 = performance.now();
    const answer = await (await fetch("/api/ui/frames", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ extension: "bench-bridge", room: roomId, nonce, connection: hello.connection }) })).json();
    build.push(performance.now() - t0);
    let iframe = document.createElement("iframe");
    iframe.setAttribute("sandbox", answer.sandbox);
    iframe.srcdoc = pass.createHTML(answer.srcdoc);
    let loaded = firstMessage(iframe);
    document.body.append(iframe);
    await loaded;
    kumix.push(performance.now() - t0);
    iframe.remove();
    ws.send(JSON.stringify({ type: "bridge_unload", widget_id: answer.widgetId }));

    t0 = performance.now();
    iframe = document.createElement("iframe");
    iframe.setAttribute("sandbox", "allow-scripts");
    iframe.srcdoc = pass.createHTML(`<!DOCTYPE html><html><head><script nonce="${nonce}">`
      + `parent.postMessage("loaded", "*")</` + `script></head><body><p>plain</p></body></html>`);
    loaded = firstMessage(iframe);
    document.body.append(iframe);
    await loaded;
    plain.push(performance.now() - t0);
    iframe.remove();
  }
  ws.close();
  return { kumix, build, plain };
}
"""


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


class Server:
    """The web app under uvicorn in a thread with its own loop."""

    def __init__(self, settings: Any, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from kumix.app.kumix import Kumix
        from kumix.web.routes import build_app
        from kumix.web.server import bind, port_of, serve
        from kumix.web.sessions import Sessions

        async with Kumix.open(self.settings, env=self.env, interactive=False) as k:
            await k.start_live()
            self.k = k
            sock = bind(None)
            self.port = port_of(sock)
            self.sessions = Sessions(self.port)
            app, _ = build_app(k, self.sessions)
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            self.ready.set()
            await serve(app, sock, self.stop)

    def start(self) -> Server:
        self.thread.start()
        self.ready.wait(120)
        return self

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(300)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def _python_ws_hop(origin: str, token: str, room_id: str, rounds: int) -> list[float]:
    """The same WebSocket hop as WS_HOP_JS from a Python client: the server and the socket
    without Chromium, to tell the server's share from the page's."""
    import re

    import httpx
    from websockets.sync.client import connect

    c = httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60)
    c.get("/", params={"token": token})
    nonce_match = re.search(r'nonce="([^"]+)"', c.get("/").text)
    assert nonce_match is not None
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    with connect(origin.replace("http", "ws") + "/api/events", origin=origin, additional_headers={"Cookie": cookie},
                 compression=None, ping_interval=None) as ws:
        return _python_ws_rounds(ws, c, room_id, nonce_match.group(1), rounds)


def _python_ws_rounds(ws: Any, c: Any, room_id: str, nonce: str, rounds: int) -> list[float]:
    def until(test: Any) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(ws.recv(timeout=60))
            if test(frame):
                return frame

    hello = until(lambda f: f.get("type") == "hello")
    answer = c.post("/api/ui/frames", json={"extension": "bench-bridge", "room": room_id, "nonce": nonce,
                                            "connection": hello["connection"]}).json()
    widget = answer["widgetId"]

    def bridge(message: dict[str, Any]) -> None:
        ws.send(json.dumps({"type": "bridge", "widget_id": widget, "message": json.dumps(message)}))

    ws.send(json.dumps({"type": "bridge_start", "widget_id": widget}))
    caps = until(lambda f: f.get("type") == "bridge" and f["message"].get("action") == "capabilities")["message"]
    bridge({**caps, "response": {"capabilities": ["io.kumix.theme_tokens"]}})
    notify = until(lambda f: f.get("type") == "bridge" and f["message"].get("action") == "notify_capabilities")
    bridge({**notify["message"], "response": {}})
    out = []
    for i in range(rounds):
        rid = f"py{i}"
        t0 = time.perf_counter()
        bridge({"api": "fromWidget", "widgetId": widget, "requestId": rid, "action": "io.kumix.theme_tokens",
                "data": {}})
        until(lambda f, rid=rid: f.get("type") == "bridge" and f["message"].get("requestId") == rid)
        out.append((time.perf_counter() - t0) * 1000)
        if i % 20 == 19:
            time.sleep(0.025)
    return out


def _write_extension(root: Path) -> None:
    ext = root / "bench-bridge"
    ext.mkdir(parents=True)
    (ext / "manifest.json").write_text(json.dumps({
        "id": "bench-bridge", "name": "Bridge benchmark", "version": "1.0.0", "kind": "ui",
        "capabilities": ["theme.tokens", "proc.call"], "entry": "entry.html"}))
    (ext / "entry.html").write_text(ENTRY)
    (ext / "bench.js").write_text(BENCH_JS)


def _write_policy(path: Path) -> None:
    """The dev policy (it allows proc.call), with a message rate the paced loops stay under."""
    from importlib import resources

    doc = json.loads(resources.files("kumix.bundled.policies").joinpath("dev.json").read_text())
    doc["ui"]["maxMessagesPerSecond"] = 2000
    path.write_text(json.dumps(doc))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--mounts", type=int, default=20)
    args = ap.parse_args()
    rounds = max(6, args.rounds - args.rounds % 6)

    import httpx
    from playwright.sync_api import sync_playwright

    from kumix.app.kumix import Kumix
    from kumix.app.settings import Settings
    from kumix.matrix.homeserver import Homeserver, HomeserverConfig, free_port

    work = Path(tempfile.mkdtemp(prefix="kumix-uibench-"))
    hs = Homeserver(HomeserverConfig(work / "synapse", free_port()))
    hs.start()
    try:
        hs.register(USER, PASSWORD)
        data = work / "data"
        data.mkdir(mode=0o700)
        (data / "pass").write_text("bench passphrase")
        (data / "pass").chmod(0o600)
        env = {"KUMIX_VAULT_PASSPHRASE_FILE": str(data / "pass")}
        _write_extension(work / "extensions")
        _write_policy(work / "policy.json")
        settings = Settings(data_dir=data, policy=str(work / "policy.json"), extension_roots=(work / "extensions",))

        async def set_up() -> str:
            async with Kumix.open(settings, env=env, interactive=False) as k:
                await k.login_password(hs.url, f"@{USER}:localhost", PASSWORD)
                for capability in ("theme.tokens", "proc.call"):
                    k.grant("bench-bridge", capability)
                await k.enable_extension("bench-bridge")
                async with httpx.AsyncClient(base_url=hs.url) as c:
                    login = (await c.post("/_matrix/client/v3/login", json={
                        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": USER},
                        "password": PASSWORD})).json()
                    room = (await c.post("/_matrix/client/v3/createRoom", json={"name": "Bench room"},
                                         headers={"authorization": f"Bearer {login['access_token']}"})).json()
                    return str(room["room_id"])

        room_id = asyncio.run(set_up())
        server = Server(settings, env).start()
        try:
            origin = f"http://127.0.0.1:{server.port}"
            # Wait until the live sync has the room (the mount route needs a known room).
            for _ in range(600):
                try:
                    server.k.known_room_id(room_id)
                    break
                except Exception:  # not synced yet
                    time.sleep(0.05)

            # The direct call: Kumix.call on the server's own loop (warm the worker first).
            async def direct(n: int) -> list[float]:
                out = []
                await server.k.call("markdown-renderer", "render.markdown", {"source": MARKDOWN})
                for _ in range(n):
                    t0 = time.perf_counter()
                    await server.k.call("markdown-renderer", "render.markdown", {"source": MARKDOWN})
                    out.append((time.perf_counter() - t0) * 1000)
                return out

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.add_init_script(ECHO_JS)
                page.goto(f"{origin}/?token={server.sessions.token}")
                page.goto(f"{origin}/ext/bench-bridge?room={room_id}")
                frame_el = page.wait_for_selector("iframe[data-widget-id]", timeout=60_000)
                frame = frame_el.content_frame()
                assert frame is not None
                frame.wait_for_function("() => typeof window.kumixBench === 'function'")
                frame.evaluate("(md) => window.kumixWarm(md)", MARKDOWN)
                frame.evaluate("([r, md]) => window.kumixBench(r, md)", [6, MARKDOWN])  # warm-up
                measured = frame.evaluate("([r, md]) => window.kumixBench(r, md)", [rounds, MARKDOWN])
                # The page echoed each bare message once and nothing else posts them: more
                # would mean echoes still in flight, loading both renderers for the rest.
                echoes = page.evaluate("() => window.benchEchoes")
                if echoes != 6 + rounds:
                    sys.exit(f"the page echoed {echoes} bare messages, expected {6 + rounds}: figures not valid")
                ws_hop = page.evaluate(WS_HOP_JS, [rounds // 3 * 3, room_id])
                mounts = page.evaluate(MOUNT_JS, [args.mounts, room_id])
                # The same hop from a page of the same origin that runs no Kumix client (a JSON
                # answer): what the Kumix page's own main-thread work adds to the hop.
                blank = browser.new_page()
                blank.goto(f"{origin}/?token={server.sessions.token}")
                nonce = blank.evaluate("() => document.querySelector('script[nonce]').nonce")
                blank.goto(f"{origin}/api/whoami")
                blank_hop = blank.evaluate(WS_HOP_JS, [rounds // 3 * 3, room_id, nonce])
                browser.close()
            direct_ms = server.run(direct(max(20, rounds // 2)))
            py_hop = _python_ws_hop(origin, server.sessions.token, room_id, rounds)
        finally:
            server.close()
    finally:
        hs.stop()

    bare, bridge, proc = measured["bare"], measured["bridge"], measured["proc"]
    target = 3 * _median(bare) + _median(ws_hop)
    rows = [
        ("bare postMessage round trip, frame ↔ page", bare, None),
        ("WebSocket hop alone: page → server session → page (theme_tokens)", ws_hop, None),
        ("same hop from a same-origin page without the Kumix client", blank_hop, None),
        ("same hop from a Python client (no browser)", py_hop, None),
        ("bridge io.kumix.theme_tokens round trip, frame → page → server → frame", bridge, None),
        ("bridge io.kumix.proc_call markdown-renderer render.markdown", proc, None),
        ("Kumix.call markdown-renderer render.markdown on the server's loop", direct_ms, None),
        ("mount: POST /api/ui/frames (build) alone", mounts["build"], None),
        ("mount: build + iframe until its first content_loaded", mounts["kumix"], None),
        ("plain sandboxed srcdoc frame until its first message", mounts["plain"], None),
    ]
    print(f"{'case':<74} {'median':>9} {'p90':>9}  n")
    for name, values, _ in rows:
        print(f"{name:<74} {_median(values):>7.2f}ms {_p90(values):>7.2f}ms  {len(values)}")
    print()
    print(f"bridge / bare postMessage: {_median(bridge) / _median(bare):.1f}x; "
          f"target 3 x bare + WebSocket hop = {target:.2f} ms: "
          f"{'met' if _median(bridge) <= target else 'MISSED'} ({_median(bridge):.2f} ms)")
    print(f"bridge proc_call / Kumix.call: {_median(proc) / _median(direct_ms):.2f}x "
          f"(+{_median(proc) - _median(direct_ms):.2f} ms)")
    print(f"mount / plain srcdoc frame: {_median(mounts['kumix']) / _median(mounts['plain']):.2f}x "
          f"(+{_median(mounts['kumix']) - _median(mounts['plain']):.2f} ms, of which build "
          f"{_median(mounts['build']):.2f} ms)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
