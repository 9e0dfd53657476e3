"""UI frames through the real server: the page's nonce, mounting on an event WebSocket, the
bridge carried over that socket (negotiation, reading, pushed events, a confirmed vote that
reaches Synapse), ownership by connection, and `/ext/{id}`. The host page's own gate and the
Chromium side are in tests/browser/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection

from kumix.app.matrix_session import MatrixService
from kumix.store.database import Database
from tests.synapse_harness import SynapseHarness
from tests.web.web_harness import MatrixUser, WebServer

pytestmark = pytest.mark.synapse

PASSPHRASE = "ui host tests' vault passphrase"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("vault") / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, PASSPHRASE.encode() + b"\n")
    os.close(fd)
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(path)}


@pytest.fixture(scope="module")
def server(synapse: SynapseHarness, env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    user = synapse.user("uihostalice")
    data_dir = tmp_path_factory.mktemp("uihost") / "data"
    data_dir.mkdir(mode=0o700)
    db = Database(data_dir / "state.db")
    asyncio.run(MatrixService(data_dir, db, env=env, interactive=False)
                .login_password(synapse.url, user.user_id, user.password))
    db.close()
    s = WebServer(data_dir, env).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(server: WebServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def bob(synapse: SynapseHarness) -> Iterator[MatrixUser]:
    user = synapse.user("uihostbob")
    b = MatrixUser(synapse.url, user.user_id, user.password)
    yield b
    b.close()


@pytest.fixture(scope="module")
def room(browser: httpx.Client, bob: MatrixUser) -> str:
    r = browser.post("/api/rooms", json={"name": "UI host", "encrypted": False, "invite": [bob.user_id]})
    assert r.status_code == 200, r.text
    room_id = str(r.json()["room_id"])
    bob.join(room_id)
    return room_id


def page_nonce(c: httpx.Client, path: str = "/") -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    match = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]+)'", r.headers["content-security-policy"])
    assert match, r.headers["content-security-policy"]
    assert f'nonce="{match.group(1)}"' in r.text
    return match.group(1)


class Page:
    """One page's event WebSocket, speaking the bridge frames as mount.js does."""

    def __init__(self, server: WebServer, c: httpx.Client) -> None:
        self.server = server
        self.c = c
        self.ws: ClientConnection = server.websocket(c)
        hello = server.recv_json(self.ws)
        assert hello["type"] == "hello"
        self.connection = str(hello["connection"])
        self.nonce = page_nonce(c)

    def mount(self, extension: str, room: str) -> dict[str, Any]:
        r = self.c.post("/api/ui/frames", json={"extension": extension, "room": room, "nonce": self.nonce,
                                                 "connection": self.connection})
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def send(self, **frame: Any) -> None:
        self.ws.send(json.dumps(frame))

    def bridge(self, widget_id: str, message: dict[str, Any]) -> None:
        self.send(type="bridge", widget_id=widget_id, message=json.dumps(message))

    def next(self, wanted: str, widget_id: str | None = None, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.server.recv_json(self.ws, timeout=max(0.1, deadline - time.monotonic()))
            if doc["type"] == wanted and (widget_id is None or doc.get("widget_id") == widget_id):
                return doc
        raise AssertionError(f"no {wanted} frame")

    def response(self, widget_id: str, request_id: str) -> dict[str, Any]:
        """The answer to one fromWidget request of the frame: frames pushed to it meanwhile
        (toWidget send_event of a message the live sync brought) are passed over."""
        while True:
            message: dict[str, Any] = self.next("bridge", widget_id)["message"]
            if message.get("api") == "fromWidget" and message.get("requestId") == request_id:
                response: dict[str, Any] = message["response"]
                return response

    def negotiate(self, widget_id: str, capabilities: list[str]) -> list[str]:
        self.send(type="bridge_start", widget_id=widget_id)
        ask = self.next("bridge", widget_id)["message"]
        assert ask["api"] == "toWidget"
        assert ask["action"] == "capabilities"
        self.bridge(widget_id, {**ask, "response": {"capabilities": capabilities}})
        notify = self.next("bridge", widget_id)["message"]
        assert notify["action"] == "notify_capabilities"
        approved: list[str] = notify["data"]["approved"]
        return approved

    def close(self) -> None:
        self.ws.close()


def request(widget_id: str, request_id: str, action: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"api": "fromWidget", "widgetId": widget_id, "requestId": request_id, "action": action, "data": data}


def test_pages_carry_a_new_nonce_each_and_frames_need_one_of_them(server: WebServer, browser: httpx.Client,
                                                                  room: str) -> None:
    first, second = page_nonce(browser), page_nonce(browser)
    assert first != second
    csp = browser.get("/").headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "frame-src 'none'" in csp.split("; ")
    assert "child-src 'none'" in csp.split("; ")
    assert "trusted-types kumix default" in csp.split("; ")
    page = Page(server, browser)
    try:
        r = browser.post("/api/ui/frames", json={"extension": "github-panel", "room": room,
                                                  "nonce": "A" * 22, "connection": page.connection})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_request"
        r = browser.post("/api/ui/frames", json={"extension": "github-panel", "room": room,
                                                  "nonce": page.nonce, "connection": "nope"})
        assert r.status_code == 404
        r = browser.post("/api/ui/frames", json={"extension": "markdown-renderer", "room": room,
                                                  "nonce": page.nonce, "connection": page.connection})
        assert r.status_code == 400
        mounted = page.mount("github-panel", room)
        assert (mounted["sandbox"], mounted["allow"], mounted["referrerPolicy"]) == ("allow-scripts", "", "no-referrer")
        assert f'nonce="{page.nonce}"' in mounted["srcdoc"]
        assert mounted["widgetId"] in mounted["srcdoc"]
    finally:
        page.close()


def test_a_frame_is_driven_only_by_the_connection_that_mounted_it(server: WebServer, browser: httpx.Client,
                                                                    room: str) -> None:
    owner, other = Page(server, browser), Page(server, browser)
    try:
        widget = owner.mount("github-panel", room)["widgetId"]
        # Another connection of the same session cannot mount on the owner's connection id
        # without its cookie... but it can name the widget: its frames are simply ignored.
        other.send(type="bridge_start", widget_id=widget)
        other.bridge(widget, request(widget, "r1", "supported_api_versions", {}))
        other.send(type="heartbeat-probe")
        approved = owner.negotiate(widget, ["org.matrix.msc2762.receive.event:m.room.message"])
        assert approved == ["org.matrix.msc2762.receive.event:m.room.message"]
        with pytest.raises(TimeoutError):
            while True:
                doc = server.recv_json(other.ws, timeout=1.5)
                assert not doc["type"].startswith("bridge"), doc
    finally:
        owner.close()
        other.close()


def test_a_theme_chosen_in_the_page_reaches_its_frames(server: WebServer, browser: httpx.Client,
                                                       room: str) -> None:
    page = Page(server, browser)
    try:
        plain = page.mount("github-panel", room)["widgetId"]
        page.negotiate(plain, ["org.matrix.msc2762.receive.event:m.room.message"])
        browser.put("/api/settings", json={"theme": "dark"}).raise_for_status()
        push = page.next("bridge", plain)["message"]
        assert (push["api"], push["action"]) == ("toWidget", "theme_change")
        assert push["data"] == {"name": "dark"}, "the name only: no theme.tokens capability"
        browser.put("/api/settings", json={"language": "en"}).raise_for_status()
        browser.put("/api/settings", json={"theme": "system"}).raise_for_status()
        push = page.next("bridge", plain)["message"]
        assert push["data"] == {"name": "system"}, "a language change pushes nothing; the next theme does"
    finally:
        page.close()


def test_reading_pushing_and_a_confirmed_vote_that_reaches_synapse(server: WebServer, browser: httpx.Client,
                                                                    room: str, bob: MatrixUser) -> None:
    bob.send(room, "see kumix/kumix#14 and https://github.com/kumix/kumix/pull/7")
    poll_start = {
        "org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": "Lunch?"},
                                          "kind": "org.matrix.msc3381.poll.disclosed", "max_selections": 1,
                                          "answers": [{"id": "a", "org.matrix.msc1767.text": "Yes"},
                                                      {"id": "b", "org.matrix.msc1767.text": "No"}]},
        "org.matrix.msc1767.text": "Lunch?",
    }
    r = bob.http.put(f"/_matrix/client/v3/rooms/{room}/send/org.matrix.msc3381.poll.start/pollt1", json=poll_start)
    r.raise_for_status()
    poll_id = r.json()["event_id"]
    page = Page(server, browser)
    try:
        widget = page.mount("poll", room)["widgetId"]
        caps = ["org.matrix.msc2762.receive.event:org.matrix.msc3381.poll.start",
                "org.matrix.msc2762.receive.event:m.room.message",
                "org.matrix.msc2762.send.event:org.matrix.msc3381.poll.response",
                "org.matrix.msc2762.receive.state_event:m.room.member", "org.matrix.msc2762.timeline:*"]
        approved = page.negotiate(widget, caps)
        assert "org.matrix.msc2762.send.event:org.matrix.msc3381.poll.response" in approved
        assert "org.matrix.msc2762.timeline:*" not in approved
        assert not any("state_event" in c for c in approved)
        # The poll was sent before the mount: it is read from the server's stored timeline.
        events: list[dict[str, Any]] = []
        for attempt in range(60):
            page.bridge(widget, request(widget, f"read{attempt}", "org.matrix.msc2876.read_events",
                                        {"type": "org.matrix.msc3381.poll.start"}))
            events = page.response(widget, f"read{attempt}")["events"]
            if events:
                break
            time.sleep(0.25)
        assert [e["event_id"] for e in events] == [poll_id]
        assert events[0]["content"]["org.matrix.msc3381.poll.start"]["question"]["org.matrix.msc1767.text"] == "Lunch?"
        # Pushed: a new message of the room reaches the frame as toWidget send_event.
        bob.send(room, "pushed to the frame")
        while True:
            push = page.next("bridge", widget)["message"]
            if push["api"] == "toWidget" and push["action"] == "send_event" \
                    and push["data"]["content"].get("body") == "pushed to the frame":
                break
        assert (push["data"]["room_id"], push["data"]["type"]) == (room, "m.room.message")
        # Another room is refused, naming the capability.
        page.bridge(widget, request(widget, "other-room", "send_event", {
            "type": "org.matrix.msc3381.poll.response", "room_id": "!other:localhost",
            "content": {"m.relates_to": {"rel_type": "m.reference", "event_id": poll_id}}}))
        refused = page.response(widget, "other-room")["error"]
        assert "timeline:!other:localhost" in refused["message"]
        # The vote: the server asks the page first; nothing is sent until the user says yes.
        vote = {"m.relates_to": {"rel_type": "m.reference", "event_id": poll_id},
                "org.matrix.msc3381.poll.response": {"answers": ["a"]}}
        page.bridge(widget, request(widget, "vote", "send_event",
                                    {"type": "org.matrix.msc3381.poll.response", "content": vote}))
        ask = page.next("bridge_ask", widget)
        assert (ask["extension_id"], ask["event_type"]) == ("poll", "org.matrix.msc3381.poll.response")
        # What the person is shown comes from the poll the room holds, not from the frame.
        assert ask["poll"] == {"question": "Lunch?", "answers": ["Yes"]}
        page.send(type="bridge_answer", widget_id=widget, request_id=ask["request_id"], approved=True, always=False)
        event_id = page.response(widget, "vote")["event_id"]
        got = bob.http.get(f"/_matrix/client/v3/rooms/{room}/event/{event_id}")
        got.raise_for_status()
        assert got.json()["type"] == "org.matrix.msc3381.poll.response"
        assert got.json()["content"]["org.matrix.msc3381.poll.response"] == {"answers": ["a"]}
        # Declined: the frame gets an error, nothing is sent.
        page.bridge(widget, request(widget, "vote2", "send_event",
                                    {"type": "org.matrix.msc3381.poll.response", "content": vote}))
        ask = page.next("bridge_ask", widget)
        page.send(type="bridge_answer", widget_id=widget, request_id=ask["request_id"], approved=False, always=False)
        declined = page.response(widget, "vote2")["error"]
        assert declined["io.kumix.code"] == "not_granted"
    finally:
        page.close()


def test_a_flooding_frame_is_unloaded(server: WebServer, browser: httpx.Client, room: str) -> None:
    page = Page(server, browser)
    try:
        widget = page.mount("github-panel", room)["widgetId"]
        limit = 200  # at least every bundled policy's ui.maxMessagesPerSecond (strict 50, dev 200)
        for i in range(2 * limit + 2):
            page.bridge(widget, request(widget, f"f{i}", "supported_api_versions", {}))
        unload = page.next("bridge_unload", widget)
        assert "messages a second" in unload["reason"]
        # Gone: its frames are ignored now.
        page.send(type="bridge_start", widget_id=widget)
        with pytest.raises(TimeoutError):
            while True:
                doc = server.recv_json(page.ws, timeout=1.5)
                assert doc["type"] != "bridge" or doc["message"].get("action") != "capabilities"
    finally:
        page.close()


def test_extension_page_needs_a_ui_extension_and_a_known_room(server: WebServer, browser: httpx.Client,
                                                               room: str) -> None:
    assert page_nonce(browser, f"/ext/poll?room={room}")
    assert browser.get("/ext/poll").status_code == 400
    assert browser.get("/ext/markdown-renderer", params={"room": room}).status_code == 404
    assert browser.get("/ext/poll", params={"room": "!unknown:localhost"}).status_code == 404
    with server.anonymous(origin=server.origin) as anonymous:
        assert anonymous.get(f"/ext/poll?room={room}").status_code == 401


def test_index_has_exactly_one_module_script() -> None:
    """The page's HTML carries the nonce only on its one module script (no inline script)."""
    from kumix.web.routes import PAGE_SCRIPT, _asset

    assert _asset("index.html").count(PAGE_SCRIPT) == 1
