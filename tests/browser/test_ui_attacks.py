"""Hostile UI extensions in real Chromium (issue 14 item 8, docs/security.md row 5).

Each hostile extension (tests/fixtures/ui_attacks/) is an external extension granted every
capability it declares, mounted by the server's frame builder in Kumix's host page. A
loopback listener (TCP and UDP on 127.0.0.1) must receive nothing, and the host page must
keep running: no main-thread task over 200 ms (PerformanceObserver `longtask`). Each attack
runs twice: with one protection (or the layers that stop it) switched off it succeeds, with
everything on it fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from kumix.app.settings import Settings
from kumix.core.errors import ExtensionFailed
from tests.browser.harness import api, log_in_through_api, open_room, open_signed_in, shot
from tests.browser.ui_attack_host import FIXTURES, AttackHost, Listener, Off, Run, iter_reports
from tests.synapse_harness import SynapseHarness
from tests.web.web_harness import WebServer

pytestmark = pytest.mark.browser

LONG_TASK_MS = 200
"""The host page's responsiveness bound (issue 14): no main-thread task longer than this."""


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[AttackHost]:
    made = AttackHost(tmp_path_factory.mktemp("ui-attacks"), listener)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext, host: AttackHost, listener: Listener) -> Page:
    """A page of the shared harness's context (its recorder fails the test on any request
    to a host other than 127.0.0.1), with the stand-in server's hop exposed."""
    context.expose_function("kumixServer", host.server)
    listener.clear()
    return context.new_page()


def load(page: Page, host: AttackHost, run: Run, *, done: int) -> None:
    """Open the host page and wait until `done` frames have reported their last attack."""
    page.on("console", lambda message: run.reports.extend(
        (message.page.url if message.page else "", name, outcome) for name, outcome in iter_reports(message.text)))
    page.goto(host.url + "/")
    page.wait_for_function("() => window.__kumixAttack && window.__kumixAttack.ready")
    deadline = 200  # 20 s at most, in 100 ms steps: an attack that never reports fails the test
    while sum(1 for _, name, _ in run.reports if name == "done") < done and deadline > 0:
        page.wait_for_timeout(100)
        deadline -= 1
    assert sum(1 for _, name, _ in run.reports if name == "done") >= done, run.reports


def settle(page: Page, listener: Listener, expected: set[str] | None = None) -> set[str]:
    """What reached the listener. With `expected`, wait until all of it arrived; without,
    give late loads (beacons, prefetches, a STUN retry) a second to show up."""
    for _ in range(100 if expected else 10):
        if expected and expected <= listener.paths():
            break
        page.wait_for_timeout(100)
    return listener.paths()


def long_tasks(page: Page) -> list[float]:
    """Durations of the host page's long tasks from the moment its frames are mounted (the
    page's own start and the mounting are not the frames' doing)."""
    tasks: list[float] = page.evaluate("""() => {
        const s = window.__kumixAttack;
        return s ? s.longTasks.filter(([start, duration]) => start + duration > s.mountingAt).map(([, d]) => d) : [];
    }""")
    return tasks


def assert_host_responsive(page: Page) -> None:
    worst = max(long_tasks(page), default=0.0)
    detail = page.evaluate("() => [window.__kumixAttack.mountingAt, window.__kumixAttack.longTasks]")
    assert worst < LONG_TASK_MS, f"a host-page task took {worst:.0f} ms (mounting at, [start, duration]): {detail}"
    # And the page still runs script now.
    assert page.evaluate("() => 1 + 1") == 2


# -- egress ---------------------------------------------------------------------------

EGRESS_PATHS = {"fetch", "xhr", "websocket", "eventsource", "img", "img-markup", "css-url", "css-url-script",
                "font", "font-script", "prefetch", "beacon", "import.js", "stun"}
"""What the egress attacks reach with both CSPs and the bootstrap off. (`prefetch-markup`, the
extension's own `<link rel=prefetch>`, never does: the builder drops every non-stylesheet link.)"""


def test_egress_succeeds_with_the_csps_and_the_bootstrap_off(page: Page, host: AttackHost,
                                                              listener: Listener) -> None:
    run = host.prepare(["hostile-egress"], Off(frame_csp=True, host_csp=True, webrtc=True, nested_frames=True))
    load(page, host, run, done=1)
    reached = settle(page, listener, EGRESS_PATHS)
    assert reached >= EGRESS_PATHS, sorted(EGRESS_PATHS - reached)
    assert run.outcome("webrtc").startswith("ok")
    assert run.outcome("webrtc-nested") == "ok appended"
    assert run.outcome("webrtc-nested-markup") == "ok inserted 2"


def test_egress_reaches_nothing(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-egress"])
    load(page, host, run, done=1)
    assert settle(page, listener) == set(), listener.hits()
    assert listener.hits() == []
    # WebRTC is gone from the frame, and no nested frame can bring it back.
    assert run.outcome("webrtc").startswith("threw TypeError")
    assert run.outcome("webrtc-nested").startswith("threw NotSupportedError")
    assert run.outcome("webrtc-nested-markup").startswith("threw TypeError")
    assert_host_responsive(page)


def test_the_frame_csp_alone_stops_every_url_load(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-egress"], Off(host_csp=True))
    load(page, host, run, done=1)
    assert settle(page, listener) == set(), listener.hits()


def test_without_the_frame_csp_a_module_import_passes_the_host_nonce(page: Page, host: AttackHost,
                                                                     listener: Listener) -> None:
    """The host page's CSP alone stops every load but `import(url)`: a nonced script's
    dynamic import inherits the nonce (web.md). Only the frame's own `script-src` with no
    source list stops it, which is why the builder always puts that CSP first."""
    run = host.prepare(["hostile-egress"], Off(frame_csp=True))
    load(page, host, run, done=1)
    assert settle(page, listener, {"import.js"}) == {"import.js"}, listener.hits()


def test_webrtc_needs_only_its_removal_off(page: Page, host: AttackHost, listener: Listener) -> None:
    """Both CSPs on, WebRTC left in place: STUN reaches the listener (WebRTC ignores CSP)."""
    run = host.prepare(["hostile-egress"], Off(webrtc=True))
    load(page, host, run, done=1)
    assert settle(page, listener, {"stun"}) == {"stun"}, listener.hits()
    assert run.outcome("webrtc").startswith("ok")


def test_a_nested_frame_brings_webrtc_back_unless_nested_frames_are_refused(page: Page, host: AttackHost,
                                                                          listener: Listener) -> None:
    """WebRTC deleted, both CSPs on, but nested frames allowed: the nested frame's fresh realm
    has RTCPeerConnection again and reaches the listener."""
    run = host.prepare(["hostile-egress"], Off(nested_frames=True))
    load(page, host, run, done=1)
    assert run.outcome("webrtc").startswith("threw TypeError")
    assert run.outcome("webrtc-nested") == "ok appended"
    assert settle(page, listener, {"stun"}) == {"stun"}, listener.hits()


# -- reading the host -------------------------------------------------------------------


def test_reads_succeed_with_allow_same_origin(page: Page, host: AttackHost) -> None:
    run = host.prepare(["hostile-reads"], Off(sandbox=True))
    load(page, host, run, done=1)
    assert run.outcome("parent.document") == "ok Kumix attack host"
    assert run.outcome("localStorage") == "ok v"
    assert run.outcome("indexedDB") == "ok opened"
    assert run.outcome("cookie").startswith("ok")


def test_the_frame_reads_nothing_of_the_host(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-reads"])
    load(page, host, run, done=1)
    for name in ("parent.document", "top.document", "parent.localStorage", "cookie", "localStorage",
                 "sessionStorage", "indexedDB"):
        assert run.outcome(name).startswith("threw"), (name, run.outcome(name))
    assert run.outcome("parent.document").startswith("threw SecurityError")
    assert run.outcome("opener") == "threw Error: opener is null"
    assert listener.hits() == []
    assert_host_responsive(page)


# -- navigation and popups ----------------------------------------------------------------


NAVIGATION_FRAMES = ["hostile-navigate", "hostile-self-nav", "hostile-refresh"]
NAVIGATION_PATHS = {"window-open", "a-blank", "form", "self-navigation", "meta-refresh"}


def test_navigation_and_popups_succeed_with_the_protections_off(page: Page, host: AttackHost,
                                                                listener: Listener) -> None:
    off = Off(sandbox=True, host_csp=True, frame_csp=True, meta_refresh="hostile-refresh")
    run = host.prepare(NAVIGATION_FRAMES, off)
    load(page, host, run, done=1)
    reached = settle(page, listener, NAVIGATION_PATHS)
    assert reached >= NAVIGATION_PATHS, sorted(NAVIGATION_PATHS - reached)


def test_navigation_and_popups_go_nowhere(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(NAVIGATION_FRAMES)
    load(page, host, run, done=3)
    page.wait_for_timeout(500)  # the self-navigation is 300 ms after its report
    assert settle(page, listener) == set(), listener.hits()
    assert listener.hits_but_navigation_preconnects(navigating_frames=1) == [], listener.hits()  # hostile-self-nav
    assert run.outcome("window.open") == "ok null"
    assert len(page.context.pages) == 1
    # The host page is still itself.
    assert page.url == host.url + "/"
    assert_host_responsive(page)


def test_self_navigation_and_refresh_need_only_the_host_frame_src_off(page: Page, host: AttackHost,
                                                                     listener: Listener) -> None:
    """The frame's CSP cannot stop a frame navigating itself; the host's frame-src does."""
    run = host.prepare(["hostile-self-nav", "hostile-refresh"], Off(host_csp=True, meta_refresh="hostile-refresh"))
    load(page, host, run, done=0)
    assert settle(page, listener, {"self-navigation", "meta-refresh"}) >= {"self-navigation", "meta-refresh"}


def test_the_builder_alone_stops_the_meta_refresh(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-refresh"], Off(host_csp=True))
    load(page, host, run, done=1)
    assert settle(page, listener) == set(), listener.hits()


def test_top_navigation_succeeds_with_the_sandbox_off(page: Page, host: AttackHost, listener: Listener) -> None:
    host.prepare(["hostile-top-nav"], Off(sandbox=True))
    page.goto(host.url + "/")
    # The second assignment (parent.location) may cut the first short: either took the host away.
    assert settle(page, listener, {"parent-location"}) & {"top-location", "parent-location"}
    for _ in range(100):
        if page.url.startswith(listener.url):
            break
        page.wait_for_timeout(100)
    assert page.url.startswith(listener.url), page.url


def test_top_navigation_is_refused(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-top-nav"])
    load(page, host, run, done=1)
    assert run.outcome("top.location").startswith("threw")
    assert run.outcome("parent.location").startswith("threw")
    assert settle(page, listener) == set(), listener.hits()
    assert page.url == host.url + "/"
    assert_host_responsive(page)


# -- the bridge -------------------------------------------------------------------------------


def bridge_run(page: Page, host: AttackHost, off: Off) -> tuple[Run, str, str]:
    run = host.prepare(["hostile-victim", "hostile-bridge"], off)
    victim, attacker = list(run.frames)
    page.on("console", lambda message: run.reports.extend(
        (message.page.url if message.page else "", name, outcome) for name, outcome in iter_reports(message.text)))
    page.goto(host.url + "/")
    page.wait_for_function("() => window.__kumixAttack && window.__kumixAttack.ready")
    # The attacker learns the victim's token, as if it had leaked.
    page.wait_for_function("(w) => document.querySelector(`iframe[data-widget-id=\"${w}\"]`)", arg=attacker)
    page.evaluate("""([attacker, victim]) => {
        const frame = document.querySelector(`iframe[data-widget-id="${attacker}"]`);
        const send = () => frame.contentWindow.postMessage({ leakedToken: victim }, "*");
        if (frame.contentDocument === null) send();
        frame.addEventListener("load", send, { once: true });
        setTimeout(send, 500);
    }""", [attacker, victim])
    for _ in range(300):
        if any(name == "done" for _, name, _ in run.reports) or attacker in run.unloads or page.evaluate(
                "() => window.__kumixAttack.unloaded.length") > 0:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    return run, victim, attacker


SPOOFED = ["attack-no-token", "attack-wrong-token", "attack-spoofed-origin", "attack-other-frame-token",
           "attack-nested-window"]


def test_bridge_spoofing_gets_through_a_gate_without_its_checks(page: Page, host: AttackHost) -> None:
    run, victim, attacker = bridge_run(page, host, Off(gate=True, nested_frames=True))
    relayed = [rid for ids in run.forwarded.values() for rid in ids]
    for request_id in SPOOFED:
        assert request_id in relayed, (request_id, run.reports)
    # The gate relays the 10 MB body and every message of the flood.
    assert any(rid.startswith("<1048") for rid in relayed)
    assert run.errors == []
    # Both frames' gates take every message now (no window check): each is relayed twice
    # (the host may still be dispatching the last ones when the frame reports).
    for _ in range(100):
        if page.evaluate("() => window.__kumixAttack.flood") >= 2 * 10_000:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("() => window.__kumixAttack.flood") == 2 * 10_000


def test_bridge_spoofing_oversize_and_flood_are_dropped(page: Page, host: AttackHost,
                                                        listener: Listener) -> None:
    run, victim, attacker = bridge_run(page, host, Off())
    relayed = [rid for ids in run.forwarded.values() for rid in ids]
    for request_id in SPOOFED + ["attack-oversize"]:
        assert request_id not in relayed, request_id
    assert not any(rid.startswith("<") for rid in relayed)
    assert run.outcome("nested-window").startswith("threw NotSupportedError")
    # The oversized request is answered with the Widget API error, not relayed.
    assert '"attack-oversize":"input_too_large"' in run.outcome("errors-before-flood")
    # The flood unloads the frame within its first second: far fewer than 10 000 relayed.
    dropped: dict[str, Any] = page.evaluate("""(w) => {
        const u = window.__kumixAttack.unloaded; return {unloaded: u.map((x) => x[0])};
    }""", attacker)
    assert attacker in dropped["unloaded"]
    assert page.locator(f'iframe[data-widget-id="{attacker}"]').count() == 0
    assert page.evaluate("() => window.__kumixAttack.flood") <= 2 * host.service.policy.ui.max_messages_per_second
    # The victim's session never saw a message of the attacker's.
    assert run.forwarded.get(victim, []) == []
    assert listener.hits() == []
    assert_host_responsive(page)


# -- capability escalation ----------------------------------------------------------------------


REFUSED_ACTIONS = ["send-own-room", "send-other-room", "send-state", "read-other-room", "read-every-room",
                   "openid", "to-device", "turn", "proc-call"]


def test_capability_escalation_is_refused(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(["hostile-escalate"])
    host.actions.performed.clear()
    load(page, host, run, done=1)
    approved = run.outcome("approved")
    # Only what the manifest declares, the policy allows and the user granted, in this room.
    for never in ("send.event", "!other-room", "timeline:*", "to_device", "proc_call", "navigate"):
        assert never not in approved, never
    assert "io.kumix.theme_tokens" in approved
    for name in REFUSED_ACTIONS:
        assert run.outcome(name).startswith("refused"), (name, run.outcome(name))
    assert "room.message.send" in run.outcome("send-own-room")
    # The refusals are not a broken frame: what it holds still works, in its own room only.
    assert run.outcome("read-own-room").startswith("answered")
    assert run.outcome("theme-tokens").startswith("answered")
    assert ("send_event", "!other-room:localhost") not in host.actions.performed
    assert all(room != "!other-room:localhost" for _, room in host.actions.performed)
    assert not run.asks
    assert listener.hits() == []
    assert_host_responsive(page)


def test_the_same_send_reaches_the_user_once_declared_and_granted(page: Page, host: AttackHost) -> None:
    """The escalation's send is well formed: declared, granted and negotiated (the same
    attack script in an extension that declares room.message.send), it reaches the
    confirmation dialog, and still only for the frame's own room."""
    run = host.prepare(["hostile-escalate-declared"])
    load(page, host, run, done=1)
    assert "org.matrix.msc2762.send.event:m.room.message" in run.outcome("approved")
    assert [ask.event_type for ask in run.asks] == ["m.room.message"]
    assert run.outcome("send-other-room").startswith("refused")
    assert run.outcome("read-other-room").startswith("refused")


# -- extension HTML that tries to break the document ------------------------------------------------


def test_a_fake_bootstrap_wins_only_when_kumix_s_is_not_first(page: Page, host: AttackHost) -> None:
    run = host.prepare(["hostile-fake-bootstrap"], Off(bootstrap_first=True))
    load(page, host, run, done=1)
    assert "FAKE" in run.outcome("bootstrap")


def test_a_fake_bootstrap_and_comment_tricks_change_nothing(page: Page, host: AttackHost,
                                                            listener: Listener) -> None:
    run = host.prepare(["hostile-fake-bootstrap"])
    [frame] = run.frames.values()
    load(page, host, run, done=1)
    seen = run.outcome("bootstrap")
    assert "FAKE" not in seen
    assert frame.widget_id in seen
    assert settle(page, listener) == set(), listener.hits()
    assert_host_responsive(page)


def test_script_breakout_runs_when_inlined_raw_without_the_csps(page: Page, host: AttackHost,
                                                                listener: Listener) -> None:
    pairs = (('<" + "/script>', "</script>"), ('<" + "script>', "<script>"))
    original = f"\"</script><script>fetch('{listener.url}/breakout', {{mode: 'no-cors'}})</script>\""
    split = original.replace("</script>", pairs[0][0]).replace("<script>", pairs[1][0])
    host.rewrite("hostile-breakout", "attack.js", original, split)
    try:
        run = host.prepare(["hostile-breakout"], Off(host_csp=True, frame_csp=True, raw_text=pairs))
    finally:
        host.rewrite("hostile-breakout", "attack.js", split, original)
    load(page, host, run, done=0)
    assert settle(page, listener, {"breakout"}) >= {"breakout"}


def test_script_breakout_is_refused_by_the_builder(host: AttackHost) -> None:
    with pytest.raises(ExtensionFailed, match="</script"):
        host.prepare(["hostile-breakout"])


# -- the same hostile extensions in Kumix's own page ------------------------------------------------


HOSTILE_IN_PAGE = ["hostile-egress", "hostile-reads", "hostile-navigate", "hostile-self-nav", "hostile-refresh",
                   "hostile-top-nav", "hostile-escalate", "hostile-fake-bootstrap", "hostile-bridge",
                   "hostile-data-nav"]

IN_PAGE_OUTCOMES = {"webrtc", "webrtc-nested", "parent.document", "window.open", "top.location", "send-other-room",
                    "read-other-room", "openid", "bootstrap", "errors-before-flood"}
"""What the all-in-page test asserts: it waits until each has been reported."""

LONG_TASK_OBSERVER = """
window.__kumixLongTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__kumixLongTasks.push([entry.startTime, entry.duration]);
}).observe({ type: "longtask", buffered: true });
"""


@pytest.fixture
def attack_server(data_dir: Path, vault_env: dict[str, str], host: AttackHost) -> Iterator[WebServer]:
    """A kumix web server whose extension path holds the installed hostile extensions."""
    server = WebServer(data_dir, vault_env)
    server.settings = Settings(data_dir=data_dir, policy="dev", extension_roots=(host.ext_root,))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_hostile_extensions_in_kumix_s_page_reach_nothing(synapse: SynapseHarness, attack_server: WebServer,
                                                           context: BrowserContext, listener: Listener) -> None:
    """Kumix's real page (`kumix serve`'s app, its CSP and nonce, its WebSocket bridge): every
    hostile extension granted and enabled, all mounted next to one room at once."""
    user = synapse.user("attacked")
    log_in_through_api(attack_server, synapse.url, user)
    api(attack_server, "POST", "/api/rooms", {"name": "Attacked room"})
    for extension_id in HOSTILE_IN_PAGE:
        manifest = json.loads((FIXTURES / extension_id / "manifest.json").read_text())
        for capability in manifest["capabilities"]:
            api(attack_server, "POST", f"/api/extensions/{extension_id}/grant", {"capability": capability})
        api(attack_server, "POST", f"/api/extensions/{extension_id}/enable", {})
    reports: list[tuple[str, str]] = []
    context.add_init_script(LONG_TASK_OBSERVER)
    context.on("console", lambda message: reports.extend(iter_reports(message.text)))
    listener.clear()
    page = open_signed_in(context, attack_server)
    open_room(page, "Attacked room")
    frames = page.locator("iframe[data-widget-id]")
    frames.nth(len(HOSTILE_IN_PAGE) - 1).wait_for(state="attached")
    # The page's own start and the mounting of every frame (the bundled mermaid-viewer's
    # document alone is 3.5 MB) come before this; the attacks run after it.
    attacks_from = page.evaluate("() => performance.now()")
    for _ in range(300):
        # The bridge attacker is handed a token that is not its own (until it has started).
        if not any(name == "no-token" for name, _ in reports):
            page.evaluate("""() => { for (const f of document.querySelectorAll("iframe[data-widget-id]")) {
                f.contentWindow.postMessage({ leakedToken: "C".repeat(22) }, "*"); } }""")
        # Seven of the eight that finish say "done" (the flooding bridge attacker may be unloaded
        # first), and every outcome asserted below has come: the escalation attacker asks its
        # questions one after another and can be the last to finish.
        if sum(1 for name, _ in reports if name == "done") >= 7 and {n for n, _ in reports} >= IN_PAGE_OUTCOMES:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(1500)
    outcome = dict(reports)
    assert outcome.get("webrtc", "").startswith("threw TypeError"), reports
    assert outcome["webrtc-nested"].startswith("threw NotSupportedError")
    assert outcome["parent.document"].startswith("threw SecurityError")
    assert outcome["window.open"] == "ok null"
    assert outcome["top.location"].startswith("threw")
    assert outcome["send-other-room"].startswith("refused")
    assert outcome["read-other-room"].startswith("refused")
    assert outcome["openid"].startswith("refused")
    assert "FAKE" not in outcome["bootstrap"]
    assert listener.hits_but_navigation_preconnects(navigating_frames=1) == [], listener.hits()  # hostile-self-nav
    assert len(context.pages) == 1
    assert page.url.startswith(attack_server.origin)
    tasks = page.evaluate("""(from) => window.__kumixLongTasks
        .filter(([start, duration]) => start + duration > from).map(([, d]) => d)""", attacks_from)
    shot(page, "hostile-extensions")
    # The flood unloads the bridge attacker; the page says so and keeps running.
    page.get_by_text("An extension was unloaded").wait_for()
    assert '"attack-oversize":"input_too_large"' in dict(reports)["errors-before-flood"]
    assert page.locator('iframe[title="hostile-bridge"]').count() == 0
    assert page.locator('iframe[title="hostile-egress"]').count() == 1
    assert max(tasks, default=0.0) < LONG_TASK_MS, tasks
    assert page.evaluate("() => 1 + 1") == 2


# -- navigating itself to a document of its own (a realm without Kumix's bootstrap) ----------------


OWN_DOCUMENTS = ["hostile-data-nav"]


def test_a_frame_navigated_to_its_own_data_document_escapes_without_the_host_csp(
        page: Page, host: AttackHost, listener: Listener) -> None:
    """A `data:` document is a fresh realm with neither Kumix's bootstrap nor its CSP meta:
    WebRTC is back and STUN reaches the listener. Only the host page's frame-src stops it."""
    run = host.prepare(OWN_DOCUMENTS, Off(host_csp=True))
    load(page, host, run, done=0)
    assert "stun" in settle(page, listener, {"stun"}), listener.hits()


def test_a_frame_cannot_navigate_to_a_document_of_its_own(page: Page, host: AttackHost, listener: Listener) -> None:
    run = host.prepare(OWN_DOCUMENTS)
    load(page, host, run, done=1)
    page.wait_for_timeout(800)  # the navigations are 300 ms after the reports
    assert settle(page, listener) == set(), listener.hits()
    assert_host_responsive(page)
