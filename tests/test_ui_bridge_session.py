"""The server half of the bridge, driven with hostile requests: every refusal is a Widget
API error that names the missing capability, and nothing is performed unless manifest,
policy, user grant and negotiation all agree."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kumix.core.errors import CallTimeout
from kumix.extensions.ui.bridge_session import (
    AskUser,
    BridgeSession,
    FrameRights,
    Perform,
    RememberSendApproval,
    Reply,
    Unload,
)
from kumix.extensions.ui.capabilities import kumix_capability_for, widget_capabilities_for

TOKEN = "tok-" + "a" * 18
ROOM = "!here:localhost"
EVERYTHING = frozenset({"room.context.read", "room.message.send", "room.navigate", "theme.tokens", "proc.call"})


def session(declared: frozenset[str] = EVERYTHING, allowed: frozenset[str] | None = None,
            granted: frozenset[str] | None = None, rate: int = 50, size: int = 65_536) -> BridgeSession:
    return BridgeSession(widget_id=TOKEN, extension_id="probe", room_id=ROOM,
                         rights=FrameRights(declared, declared if allowed is None else allowed, granted),
                         max_message_bytes=size, max_messages_per_second=rate)


def request(action: str, data: dict[str, Any] | None = None, request_id: str = "r1", **extra: Any) -> str:
    return json.dumps({"api": "fromWidget", "widgetId": TOKEN, "requestId": request_id, "action": action,
                       "data": data or {}, **extra})


def negotiate(s: BridgeSession, caps: list[str]) -> frozenset[str]:
    [ask] = s.start()
    assert isinstance(ask, Reply)
    assert ask.message["action"] == "capabilities"
    answer = {**ask.message, "response": {"capabilities": caps}}
    [notify] = s.receive(json.dumps(answer), now=0.0)
    assert isinstance(notify, Reply)
    assert notify.message["action"] == "notify_capabilities"
    assert notify.message["data"]["requested"] == caps
    return frozenset(notify.message["data"]["approved"])


def error_of(effects: list[Any]) -> dict[str, Any]:
    [reply] = effects
    assert isinstance(reply, Reply)
    return reply.message["response"]["error"]


ALL_CAPS = list(widget_capabilities_for(EVERYTHING, ROOM))


def test_handshake_needs_no_capability_and_answers_versions() -> None:
    s = session(declared=frozenset())
    [reply] = s.receive(request("supported_api_versions"), now=0.0)
    assert "org.matrix.msc2762" in reply.message["response"]["supported_versions"]
    [loaded] = s.receive(request("content_loaded", request_id="r2"), now=0.0)
    assert loaded.message["response"] == {}


def test_negotiation_approves_only_what_rights_cover() -> None:
    s = session(declared=frozenset({"room.context.read"}))
    asked = ["org.matrix.msc2762.receive.event:m.room.message", "org.matrix.msc2762.send.event:m.room.message",
             f"org.matrix.msc2762.timeline:{ROOM}", "org.matrix.msc2762.timeline:*",
             "org.matrix.msc2762.timeline:!other:localhost", "org.matrix.msc2762.send.state_event:m.room.topic",
             "org.matrix.msc3819.send.to_device:m.x", "m.always_on_screen", "io.kumix.proc_call"]
    assert negotiate(s, asked) == {"org.matrix.msc2762.receive.event:m.room.message",
                                   f"org.matrix.msc2762.timeline:{ROOM}"}


def test_capability_mapping_refuses_what_kumix_never_grants() -> None:
    assert kumix_capability_for("org.matrix.msc2762.receive.event:m.room.message#m.text", ROOM) == "room.context.read"
    assert kumix_capability_for("org.matrix.msc2762.receive.event:m.room.member", ROOM) is None
    assert kumix_capability_for("org.matrix.msc2762.send.event:m.poll.start", ROOM) is None
    assert kumix_capability_for("org.matrix.msc2762.send.event:m.reaction#x", ROOM) is None
    assert kumix_capability_for("org.matrix.msc2762.send.event:m.poll.response", ROOM) == "room.message.send"


@pytest.mark.parametrize(
    ("rights", "code"),
    [
        ({"declared": frozenset()}, "capability_not_declared"),
        ({"allowed": frozenset()}, "policy_denied"),
        ({"granted": frozenset()}, "not_granted"),
    ],
)
def test_each_missing_right_is_named(rights: dict[str, Any], code: str) -> None:
    s = session(**rights)
    negotiate(s, ALL_CAPS)
    error = error_of(s.receive(request("io.kumix.theme_tokens"), now=0.0))
    assert error["io.kumix.code"] == code
    assert error["io.kumix.capability"] == "theme.tokens"
    assert "theme.tokens" in error["message"]


def test_not_negotiated_is_refused_even_with_every_right() -> None:
    s = session()
    negotiate(s, ["io.kumix.theme_tokens"])
    error = error_of(s.receive(request("org.matrix.msc2931.navigate", {"uri": f"https://matrix.to/#/{ROOM}"}), now=0))
    assert error["io.kumix.code"] == "not_granted"
    assert error["io.kumix.capability"] == "org.matrix.msc2931.navigate"


def test_runtime_escalation_through_renegotiation_stays_within_rights() -> None:
    s = session(declared=frozenset({"theme.tokens"}))
    negotiate(s, ["io.kumix.theme_tokens"])
    effects = s.receive(request("org.matrix.msc2974.request_capabilities",
                                {"capabilities": ["org.matrix.msc2762.send.event:m.room.message"]}), now=0.0)
    ack, notify = effects
    assert ack.message["response"] == {}
    assert notify.message["data"]["approved"] == ["io.kumix.theme_tokens"]
    error = error_of(s.receive(request("send_event", {"type": "m.room.message",
                                                      "content": {"msgtype": "m.text", "body": "x"}}, "r2"), now=0))
    assert error["io.kumix.code"] == "capability_not_declared"


@pytest.mark.parametrize(
    ("action", "data", "capability"),
    [
        ("get_openid", {}, "openid"),
        ("send_to_device", {"type": "m.x", "messages": {}}, "org.matrix.msc3819.send.to_device"),
        ("watch_turn_servers", {}, "town.robin.msc3846.turn_servers"),
        ("send_event", {"type": "m.room.topic", "state_key": "", "content": {}}, "send.state_event"),
        ("send_event", {"type": "m.room.message", "room_id": "!other:localhost",
                        "content": {"msgtype": "m.text", "body": "x"}}, "timeline:!other:localhost"),
        ("send_event", {"type": "m.room.redaction", "content": {}}, "send.event:m.room.redaction"),
        ("org.matrix.msc2876.read_events", {"type": "m.room.message", "room_ids": ["!other:localhost"]},
         "timeline:!other:localhost"),
        ("org.matrix.msc2876.read_events", {"type": "m.room.message", "room_ids": "*"}, "timeline:*"),
        ("org.matrix.msc2876.read_events", {"type": "m.room.member", "state_key": "@a:b"}, "receive.state_event"),
        ("org.matrix.msc2876.read_events", {"type": "m.room.encrypted"}, "receive.event:m.room.encrypted"),
    ],
)
def test_what_kumix_never_allows_is_refused_naming_the_capability(action: str, data: dict[str, Any],
                                                                 capability: str) -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    error = error_of(s.receive(request(action, data), now=0.0))
    assert capability in error["io.kumix.capability"]
    assert capability.split(":")[0] in error["message"]


def test_read_events_stays_in_the_room_and_is_bounded() -> None:
    s = session()
    negotiate(s, ["org.matrix.msc2762.receive.event:m.room.message"])
    [perform] = s.receive(request("org.matrix.msc2876.read_events", {"type": "m.room.message", "limit": 10_000}), 0)
    assert isinstance(perform, Perform)
    assert perform.params == {"room_id": ROOM, "type": "m.room.message", "limit": 100}
    [reply] = s.complete("r1", {"events": []})
    assert reply.message["response"] == {"events": []}
    assert reply.message["requestId"] == "r1"
    assert s.complete("r1", {"events": ["again"]}) == []  # a second completion is dropped


def test_every_send_is_confirmed_unless_always_allowed() -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    content = {"msgtype": "m.text", "body": "hello"}
    [ask] = s.receive(request("send_event", {"type": "m.room.message", "content": content}), now=0.0)
    assert isinstance(ask, AskUser)
    assert ask.content == content
    error = error_of(s.confirm("r1", approved=False))
    assert error["io.kumix.code"] == "not_granted"
    assert s.confirm("r1", approved=True) == []  # already answered: nothing is sent
    [ask2] = s.receive(request("send_event", {"type": "m.room.message", "content": content}, "r2"), now=0.0)
    remember, perform = s.confirm("r2", approved=True, always=True)
    assert remember == RememberSendApproval("probe")
    assert isinstance(perform, Perform)
    assert perform.params["room_id"] == ROOM
    [direct] = s.receive(request("send_event", {"type": "m.poll.response", "content": {"m.relates_to": {}}}, "r3"), 0)
    assert isinstance(direct, Perform)


def test_unsolicited_confirmation_sends_nothing() -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    assert s.confirm("never-asked", approved=True, always=True) == []
    assert s.dropped["unexpected_confirmation"] == 1


def test_wrong_token_and_malformed_envelopes_are_dropped_and_counted() -> None:
    s = session()
    hostile = [
        json.dumps({"api": "fromWidget", "widgetId": "another-frames-token", "requestId": "r", "action": "x"}),
        json.dumps({"api": "fromWidget", "requestId": "r", "action": "content_loaded"}),
        "not json", "[1, 2]", json.dumps({"api": "fromWidget", "widgetId": TOKEN, "requestId": 5, "action": "x"}),
        json.dumps({"api": "fromWidget", "widgetId": TOKEN, "requestId": "r", "action": "x" * 500}),
        "[" * 100_000,
        json.dumps({"api": "toWidget", "widgetId": TOKEN, "requestId": "forged", "action": "capabilities",
                    "response": {"capabilities": ["io.kumix.proc_call"]}}),
    ]
    for raw in hostile:
        assert s.receive(raw, now=0.0) == []
    assert sum(s.dropped.values()) == len(hostile)
    assert s.negotiated == frozenset()


def test_oversized_message_gets_an_error_and_is_not_parsed() -> None:
    s = session(size=1024)
    raw = request("content_loaded", {"pad": "x" * 10_000})
    error = error_of(s.receive(raw, now=0.0))
    assert error["io.kumix.code"] == "input_too_large"
    assert s.dropped["too_large"] == 1


def test_flood_gets_one_error_then_unloads_the_frame() -> None:
    s = session(rate=5)
    outcomes = [s.receive(request("content_loaded", request_id=f"r{i}"), now=10.2) for i in range(11)]
    assert all(isinstance(o[0], Reply) and "error" not in o[0].message["response"] for o in outcomes[:5])
    assert error_of(outcomes[5])["io.kumix.code"] == "unavailable"
    assert outcomes[6:10] == [[], [], [], []]
    assert isinstance(outcomes[10][0], Unload)
    assert s.unloaded
    assert s.receive(request("content_loaded", request_id="late"), now=20.0) == []


def test_steady_overrate_for_three_seconds_unloads() -> None:
    s = session(rate=3)
    last: list[Any] = []
    for second in range(3):
        for i in range(4):
            last = s.receive(request("content_loaded", request_id=f"r{second}-{i}"), now=100.0 + second)
    assert isinstance(last[0], Unload)


def test_rate_window_resets_each_second() -> None:
    s = session(rate=2)
    for second in range(10):
        for i in range(2):
            assert "error" not in s.receive(request("content_loaded", request_id=f"{second}{i}"),
                                            now=float(second))[0].message["response"]
    assert not s.unloaded


def test_pushed_events_only_for_negotiated_types_of_this_room() -> None:
    s = session()
    negotiate(s, ["org.matrix.msc2762.receive.event:m.poll.start"])
    assert s.push_event({"type": "m.room.message", "room_id": ROOM, "content": {"body": "x"}}) == []
    assert s.push_event({"type": "m.poll.start", "room_id": "!other:localhost", "content": {}}) == []
    [push] = s.push_event({"type": "m.poll.start", "room_id": ROOM, "content": {}})
    # The frame's acknowledgement is expected once, and a second one is dropped.
    ack = json.dumps({**push.message, "response": {}})
    assert s.receive(ack, now=0.0) == []
    assert s.dropped["unexpected_response"] == 0
    s.receive(ack, now=0.0)
    assert s.dropped["unexpected_response"] == 1
    assert push.message["api"] == "toWidget"
    assert push.message["action"] == "send_event"


def test_errors_from_the_app_keep_their_code() -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    [perform] = s.receive(request("io.kumix.proc_call", {"extension": "markdown-renderer",
                                                         "method": "render.markdown", "params": {}}), now=0.0)
    assert isinstance(perform, Perform)
    error = error_of(s.complete("r1", CallTimeout("too slow")))
    assert error["io.kumix.code"] == "timeout"


def test_navigate_only_to_matrix_to_room_links() -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    for i, uri in enumerate(["https://evil.example/", "javascript:alert(1)", "https://matrix.to.evil/#/!a:b",
                             "https://matrix.to/#/!a:b\nx"]):
        assert error_of(s.receive(request("org.matrix.msc2931.navigate", {"uri": uri}, f"n{i}"), 0))
    [ok] = s.receive(request("org.matrix.msc2931.navigate", {"uri": "https://matrix.to/#/#room:localhost"}), 0)
    assert isinstance(ok, Perform)


def test_duplicate_request_id_while_pending_is_refused() -> None:
    s = session()
    negotiate(s, ALL_CAPS)
    s.receive(request("io.kumix.theme_tokens"), now=0.0)
    error = error_of(s.receive(request("io.kumix.theme_tokens"), now=0.0))
    assert "already" in error["message"]


def test_theme_change_carries_tokens_only_for_frames_that_negotiated_theme_tokens() -> None:
    fresh = session()
    assert fresh.push_theme("dark", {"bg": "#000"}) == [], "nothing pushed before the negotiation"
    s = session()
    negotiate(s, ["org.matrix.msc2762.receive.event:m.room.message"])
    [named] = s.push_theme("dark", {"bg": "#000"})
    assert named.message["action"] == "theme_change"
    assert named.message["data"] == {"name": "dark"}, "the name (in every bootstrap), no tokens"
    t = session()
    negotiate(t, ["io.kumix.theme_tokens"])
    [push] = t.push_theme("dark", {"bg": "#000"})
    assert push.message["action"] == "theme_change"
    assert push.message["data"] == {"name": "dark", "io.kumix.tokens": {"bg": "#000"}}
