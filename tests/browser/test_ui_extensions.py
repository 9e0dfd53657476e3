"""UI extensions in the real page, in Debian's Chromium: the CSP scheme for srcdoc frames
(the host page refuses injected script, the frames' nonced scripts run), each bundled UI
extension doing its job (github-panel, mermaid-viewer, poll with a confirmed vote that
reaches Synapse), the unmodified matrix-widget-api WidgetApi inside a Kumix frame, the
active list with unload, and /ext/{id}. Screenshots go to test-results/screenshots/."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from tests.browser.harness import TIMEOUT_MS, api, log_in_through_api, open_room, open_signed_in, shot
from tests.synapse_harness import SynapseHarness, TestUser
from tests.ui_fixtures import make_ui_extension
from tests.web.web_harness import MatrixUser, WebServer

REPO = Path(__file__).resolve().parents[2]
WIDGET_API = REPO / "tests/ui_widget_api/vendor/matrix-widget-api.min.js"

ELEMENT_STYLE_WIDGET = """
"use strict";
(() => {
  const boot = window.__KUMIX_UI_BOOTSTRAP__;
  // The browserify bundle (unmodified) sets window.mxwidgets; it may be the exports or a
  // function returning them.
  const bundle = window.mxwidgets;
  const { WidgetApi } = typeof bundle === "function" ? bundle() : bundle;
  const api = new WidgetApi(boot.widgetId, "*");
  api.requestCapabilityToReceiveEvent("m.room.message");
  api.requestCapabilityToSendEvent("m.room.encrypted");
  api.on("ready", async () => {
    const approved = api.approvedCapabilities || [];
    document.getElementById("approved").textContent = approved.join(" ");
    const events = await api.readRoomEvents("m.room.message", 10);
    document.getElementById("bodies").textContent = events.map((e) => e.content.body).join(" | ");
    try {
      await api.sendRoomEvent("m.room.encrypted", {});
      document.getElementById("send").textContent = "sent";
    } catch (error) {
      document.getElementById("send").textContent = String(error.message);
    }
  });
  api.start();
})();
"""


@pytest.fixture(autouse=True)
def patient_expect() -> Iterator[None]:
    """Frames load after the room opens, and mermaid-viewer's first document takes seconds to
    build on a loaded machine: expectations wait as long as the harness waits for elements."""
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


class Listener:
    """A loopback HTTP-ish listener that records what arrives (a frame must reach nothing)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 7\r\n\r\nreached")
                except OSError:
                    data = b""
            with self.lock:
                self.received += data

    def got(self) -> bytes:
        with self.lock:
            return self.received

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    s = Listener()
    yield s
    s.close()


@pytest.fixture
def extension_root(tmp_path: Path, listener: Listener) -> Path:
    root = tmp_path / "extensions"
    # Navigates itself (and tries a meta refresh, which the builder removes) to the listener.
    make_ui_extension(root, "navigator", f"""<!doctype html><html><head><title>Navigator</title>
<meta http-equiv="refresh" content="0; url=http://127.0.0.1:{listener.port}/refreshed">
<script src="nav.js"></script></head><body><p id="state">here</p></body></html>""",
                      files={"nav.js": "setTimeout(() => { location.href = "
                                       f'"http://127.0.0.1:{listener.port}/navigated"; }}, 200);'})
    ext = make_ui_extension(root, "element-widget", """<!doctype html><html><head><title>Element-style widget</title>
<script src="matrix-widget-api.min.js"></script><script src="widget.js"></script></head>
<body><h1>Element-style widget</h1><p id="approved"></p><p id="bodies"></p><p id="send"></p></body></html>""",
                            capabilities=["room.context.read"], files={"widget.js": ELEMENT_STYLE_WIDGET})
    shutil.copy(WIDGET_API, ext / "matrix-widget-api.min.js")
    return root


@pytest.fixture
def ui_server(data_dir: Path, vault_env: dict[str, str], extension_root: Path) -> Iterator[WebServer]:
    server = WebServer(data_dir, vault_env, extension_roots=(extension_root,)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(synapse: SynapseHarness, ui_server: WebServer, web_user: TestUser, context: BrowserContext) -> Page:
    log_in_through_api(ui_server, synapse.url, web_user)
    return open_signed_in(context, ui_server)


@pytest.fixture
def bob(synapse: SynapseHarness) -> Iterator[MatrixUser]:
    user = synapse.user("uibob")
    b = MatrixUser(synapse.url, user.user_id, user.password)
    yield b
    b.close()


def room_with(server: WebServer, bob: MatrixUser, name: str, *texts: str) -> str:
    created = api(server, "POST", "/api/rooms", {"name": name, "encrypted": False, "invite": [bob.user_id]})
    room_id = str(created["room_id"])
    bob.join(room_id)
    for text in texts:
        bob.send(room_id, text)
    return room_id


def frame(page: Page, extension_id: str) -> FrameLocator:
    return page.frame_locator(f'iframe[title="{extension_id}"]')


def test_host_page_refuses_injected_script_and_frames_run_theirs(
        page: Page, ui_server: WebServer, bob: MatrixUser, context: BrowserContext) -> None:
    room_with(ui_server, bob, "CSP room", "see kumix/kumix#14")
    open_room(page, "CSP room")
    # The frame's scripts (nonced by the server, checked by the host's CSP and the frame's
    # own) ran: the panel read the room through the bridge.
    expect(frame(page, "github-panel").locator("#refs a")).to_have_text(["kumix/kumix#14"])
    frame_el = page.locator('iframe[title="github-panel"]')
    assert frame_el.get_attribute("sandbox") == "allow-scripts"
    assert frame_el.get_attribute("referrerpolicy") == "no-referrer"
    assert frame_el.get_attribute("allow") == ""
    # The frame's scripts carry the nonce of this page's answer (every answer has its own).
    nonce = page.evaluate("() => document.querySelector('script[nonce]').nonce")
    assert len(nonce) >= 22
    assert frame_el.evaluate("(f, n) => f.srcdoc.includes(`<script nonce=\"${n}\">`)", nonce)
    assert page.evaluate("() => document.querySelector('script[nonce]').getAttribute('nonce')") == ""

    attempts = """async () => {
      const out = {};
      const violations = [];
      document.addEventListener("securitypolicyviolation", (e) => violations.push(e.violatedDirective));
      // 1. an inline script without the nonce, built with DOM calls that need no string sink
      const s = document.createElement("script");
      s.appendChild(document.createTextNode("window.__injected = 'inline';"));
      document.body.appendChild(s);
      // 2. a string-to-HTML sink (Trusted Types: only the kumix policy makes HTML)
      try {
        document.body.insertAdjacentHTML("beforeend", "<img src=x onerror=\\"window.__injected='sink'\\">");
        out.sink = "accepted";
      } catch (e) { out.sink = e.name; }
      // 3. a string-to-script sink
      try {
        const t = document.createElement("script");
        t.text = "window.__injected = 'text';";
        document.body.appendChild(t);
        out.text = "accepted";
      } catch (e) { out.text = e.name; }
      // 4. a string as a timer's code (run by the page later, not by the test's own call;
      //    DevTools-evaluated code is exempt from CSP, so a direct eval here proves nothing)
      try { setTimeout("window.__injected = 'timer'", 0); out.timer = "accepted"; } catch (e) { out.timer = e.name; }
      await new Promise((r) => setTimeout(r, 200));
      out.injected = window.__injected ?? null;
      out.violations = violations;
      return out;
    }"""
    result: dict[str, Any] = page.evaluate(attempts)
    assert result["injected"] is None, result
    assert result["sink"] == "TypeError"
    assert result["text"] == "TypeError"
    assert result["timer"] == "TypeError"
    assert any(v.startswith("script-src") or v.startswith("require-trusted-types") for v in result["violations"])
    shot(page, "frames-run-host-refuses")

    # The same attempts against the same page served without its CSP: the inline script
    # and the sinks run. So the refusals above are the CSP's doing.
    bare = context.new_page()

    def strip_csp(route: Any) -> None:
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
        route.fulfill(response=response, headers=headers)

    bare.route(f"{ui_server.origin}/", strip_csp)
    bare.goto(f"{ui_server.origin}/")
    bare.locator("aside.sidebar").wait_for()
    unprotected: dict[str, Any] = bare.evaluate(attempts)
    assert unprotected["injected"] in ("inline", "sink", "text", "timer"), unprotected
    assert unprotected["sink"] == "accepted"
    bare.close()


def test_github_panel_lists_references_and_can_be_unloaded(page: Page, ui_server: WebServer,
                                                            bob: MatrixUser) -> None:
    room_id = room_with(ui_server, bob, "Code talk", "fixed in https://github.com/kumix/kumix/pull/7",
                        "see kumix/kumix#14 and octo/cat#3")
    open_room(page, "Code talk")
    panel = frame(page, "github-panel")
    expect(panel.locator("#refs a")).to_have_count(3)
    links = panel.locator("#refs a")
    assert links.evaluate_all("(as) => as.map((a) => a.href)") == [
        "https://github.com/kumix/kumix/issues/14", "https://github.com/kumix/kumix/pull/7",
        "https://github.com/octo/cat/issues/3"]
    # A new message arrives pushed through the bridge.
    bob.send(room_id, "and kumix/web#9")
    expect(panel.locator("#refs a")).to_have_count(4)
    active = page.get_by_role("list", name="Active extensions")
    expect(active).to_contain_text("GitHub")
    shot(page, "github-panel")
    page.get_by_role("button", name="Unload GitHub references").click()
    expect(page.locator('iframe[title="github-panel"]')).to_have_count(0)
    expect(page.get_by_role("button", name="Show GitHub references")).to_be_visible()
    shot(page, "github-panel-unloaded")


def test_mermaid_viewer_renders_a_block_inside_its_frame(page: Page, ui_server: WebServer, bob: MatrixUser) -> None:
    room_with(ui_server, bob, "Diagrams", "```mermaid\ngraph TD\n  Alice-->Bob\n```")
    open_room(page, "Diagrams")
    viewer = frame(page, "mermaid-viewer")
    image = viewer.locator("figure.diagram img")
    expect(image).to_be_visible()
    assert str(image.get_attribute("src")).startswith("data:image/svg+xml")
    assert image.evaluate("(img) => img.naturalWidth") > 0
    # mermaid ran in the frame, never in the host page.
    assert page.evaluate("() => typeof window.mermaid") == "undefined"
    shot(page, "mermaid-viewer")


def test_poll_votes_through_send_event_after_confirmation(page: Page, ui_server: WebServer, bob: MatrixUser,
                                                          web_user: TestUser) -> None:
    room_id = room_with(ui_server, bob, "Lunch poll")
    start = {"org.matrix.msc3381.poll.start": {
        "question": {"org.matrix.msc1767.text": "Lunch at noon?"}, "kind": "org.matrix.msc3381.poll.disclosed",
        "max_selections": 1, "answers": [{"id": "yes", "org.matrix.msc1767.text": "Yes"},
                                         {"id": "no", "org.matrix.msc1767.text": "No"}]},
        "org.matrix.msc1767.text": "Lunch at noon?"}
    r = bob.http.put(f"/_matrix/client/v3/rooms/{room_id}/send/org.matrix.msc3381.poll.start/lunch1", json=start)
    r.raise_for_status()
    poll_id = r.json()["event_id"]
    open_room(page, "Lunch poll")
    poll = frame(page, "poll")
    expect(poll.locator("h2")).to_have_text("Lunch at noon?")
    poll.get_by_role("button", name="Yes (0)").click()
    dialog = page.get_by_role("dialog", name="Send from an extension?")
    expect(dialog).to_contain_text("Lunch at noon?")
    expect(dialog).to_contain_text("Yes")
    shot(page, "poll-confirmation")
    dialog.get_by_role("button", name="Send", exact=True).click()
    expect(poll.locator(".vote-status")).to_have_text("Voted “Yes”.")
    # The vote came back from the homeserver as a pushed event: the tally counts it.
    expect(poll.get_by_role("button", name="Yes (1)")).to_be_visible()
    # The vote reached Synapse, from the page's account, relating to the poll.
    votes: list[dict[str, Any]] = []
    for _ in range(100):
        r = bob.http.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "b", "limit": 20})
        r.raise_for_status()
        votes = [e for e in r.json()["chunk"] if e["type"] == "org.matrix.msc3381.poll.response"]
        if votes:
            break
        time.sleep(0.1)
    assert len(votes) == 1
    assert votes[0]["sender"] == web_user.user_id
    assert votes[0]["content"]["m.relates_to"] == {"rel_type": "m.reference", "event_id": poll_id}
    assert votes[0]["content"]["org.matrix.msc3381.poll.response"] == {"answers": ["yes"]}
    # Declined: nothing more is sent and the frame says so.
    poll.get_by_role("button", name="No", exact=False).click()
    page.get_by_role("dialog", name="Send from an extension?").get_by_role("button", name="Don't send").click()
    expect(poll.locator(".vote-status")).to_contain_text("Not sent")
    shot(page, "poll-voted")


def test_unmodified_widget_api_works_in_a_kumix_frame(page: Page, ui_server: WebServer, bob: MatrixUser) -> None:
    api(ui_server, "POST", "/api/extensions/element-widget/grant", {"capability": "room.context.read"})
    api(ui_server, "POST", "/api/extensions/element-widget/enable", {})
    room_with(ui_server, bob, "Widget room", "first", "second")
    open_room(page, "Widget room")
    widget = frame(page, "element-widget")
    expect(widget.locator("#approved")).to_have_text("org.matrix.msc2762.receive.event:m.room.message")
    expect(widget.locator("#bodies")).to_contain_text("second")
    expect(widget.locator("#bodies")).to_contain_text("first")
    # Asked for, never approved, refused by the server with the missing capability named.
    expect(widget.locator("#send")).to_contain_text("org.matrix.msc2762.send.event:m.room.encrypted")
    shot(page, "element-widget")


def test_extension_page_shows_one_extension_alone(page: Page, ui_server: WebServer, bob: MatrixUser) -> None:
    room_id = room_with(ui_server, bob, "Author room", "kumix/kumix#1")
    page.goto(f"{ui_server.origin}/ext/github-panel?room={room_id}")
    expect(frame(page, "github-panel").locator("#refs a")).to_have_text(["kumix/kumix#1"])
    expect(page.locator("iframe")).to_have_count(1)
    shot(page, "ext-page")


def test_a_frame_cannot_navigate_itself_away(page: Page, ui_server: WebServer, bob: MatrixUser,
                                             listener: Listener, browser: Browser) -> None:
    api(ui_server, "POST", "/api/extensions/navigator/grant", {"capability": "room.context.read"})
    api(ui_server, "POST", "/api/extensions/navigator/enable", {})
    room_with(ui_server, bob, "Navigation room")
    # The host page's frame-src 'none' refuses the frame's own navigation (srcdoc is no
    # fetch, so the frame itself loaded); Chromium says so on the console.
    target = f"127.0.0.1:{listener.port}"
    with page.expect_console_message(lambda m: target in m.text and "frame-src 'none'" in m.text,
                                     timeout=TIMEOUT_MS):
        open_room(page, "Navigation room")
    assert b"GET /navigated" not in listener.got()
    assert b"/refreshed" not in listener.got()
    shot(page, "navigation-refused")

    # The same page with CSP switched off in the browser: the frame's navigation reaches the
    # listener. So the refusal above is the host page's frame-src. (A page whose header is
    # stripped by routing is no longer seen as loopback, and Chromium's local-network checks
    # then stop its WebSocket: bypass_csp keeps the real answer.)
    bare_context = browser.new_context(bypass_csp=True)
    try:
        bare = open_signed_in(bare_context, ui_server)
        open_room(bare, "Navigation room")
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while b"GET /navigated" not in listener.got() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"GET /navigated" in listener.got()
        assert b"/refreshed" not in listener.got()  # the builder removed the meta refresh
    finally:
        bare_context.close()
