"""The server half of one frame's bridge: a sans-I/O state machine.

The host page forwards every message its bridge accepted (right window, origin "null",
right token) over the session's WebSocket; this machine checks everything again, because
the page is only a relay. Messages in, effects out: it never sends, reads or waits itself.

For each request the answer is decided in this order, and a refusal names what is missing:
the frame's size and rate limits; an action Kumix supports at all; the manifest declares
the Kumix capability; the policy allows it; the user granted it (external extensions);
the frame negotiated the Widget API capability; the request stays in the frame's room.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kumix.core.errors import KumixError
from kumix.extensions.ui.capabilities import (
    NAVIGATE,
    PROC_CALL,
    PROC_CALL_CAP,
    READABLE_TYPES,
    RECEIVE_EVENT,
    ROOM_CONTEXT_READ,
    ROOM_MESSAGE_SEND,
    ROOM_NAVIGATE,
    SEND_EVENT,
    SENDABLE_TYPES,
    THEME_TOKENS,
    THEME_TOKENS_CAP,
    TIMELINE,
    kumix_capability_for,
)

SUPPORTED_API_VERSIONS = (
    "0.0.1", "0.0.2", "org.matrix.msc2762", "org.matrix.msc2871", "org.matrix.msc2876",
    "org.matrix.msc2931", "org.matrix.msc2974",
)
MAX_READ_EVENTS = 100
"""read_events answers at most this many events: a frame reads context, not history."""
MAX_ID_CHARS = 128
"""requestId and action strings: matrix-widget-api makes ids of ~20 characters."""
MAX_PENDING = 32
"""Requests of one frame waiting for the server or the user; more is a flood."""
UNLOAD_AFTER_WINDOWS = 3
"""Seconds in a row over the message rate before the frame is unloaded."""
CAPABILITIES_REQUEST = "kumix-capabilities"
MAX_OPEN_TO_WIDGET = 256
"""Host requests (pushed events) remembered for the frame's answer; older ones are forgotten."""
MATRIX_TO = re.compile(
    r"https://matrix\.to/#/(?:[!#]|%21|%23)[A-Za-z0-9._=+/\-]{1,255}:[A-Za-z0-9.\-]{1,255}(?::[0-9]{1,5})?"
    r"(?:/\$[A-Za-z0-9._=+/\-:]{1,255})?(?:\?via=[A-Za-z0-9.\-:]{1,255}(?:&via=[A-Za-z0-9.\-:]{1,255}){0,8})?"
)

Code = Literal[
    "bad_request", "capability_not_declared", "policy_denied", "not_granted", "input_too_large", "unavailable",
]


@dataclass(frozen=True)
class Reply:
    """A message for the frame (a response to its request, or a toWidget request)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Perform:
    """Something the app must do, then hand back with `BridgeSession.complete`."""

    request_id: str
    action: Literal["read_events", "send_event", "navigate", "theme_tokens", "proc_call"]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class AskUser:
    """Show this message to the user and report their answer with `BridgeSession.confirm`."""

    request_id: str
    event_type: str
    content: Mapping[str, Any]


@dataclass(frozen=True)
class RememberSendApproval:
    """The user ticked "allow for this extension": keep it in local state."""

    extension_id: str


@dataclass(frozen=True)
class Unload:
    reason: str


Effect = Reply | Perform | AskUser | RememberSendApproval | Unload


@dataclass(frozen=True)
class FrameRights:
    """What the frame may ever have, fixed at mount: Kumix capabilities that the manifest
    declares, the policy allows and (for an external extension) the user granted."""

    declared: frozenset[str]
    allowed_by_policy: frozenset[str]
    granted: frozenset[str] | None
    """None for a bundled extension: the policy's word is enough."""

    def missing(self, capability: str) -> tuple[Code, str] | None:
        if capability not in self.declared:
            return "capability_not_declared", f"the manifest does not declare capability {capability!r}"
        if capability not in self.allowed_by_policy:
            return "policy_denied", f"the policy does not allow capability {capability!r}"
        if self.granted is not None and capability not in self.granted:
            return "not_granted", f"capability {capability!r} is not granted to this extension"
        return None


class Refused(Exception):
    def __init__(self, code: Code, message: str, capability: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.capability = capability


def _error_response(code: str, message: str, capability: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "io.kumix.code": code}
    if capability is not None:
        error["io.kumix.capability"] = capability
    return {"error": error}


@dataclass
class BridgeSession:
    widget_id: str
    extension_id: str
    room_id: str
    rights: FrameRights
    max_message_bytes: int
    max_messages_per_second: int
    send_always_allowed: bool = False
    negotiated: frozenset[str] = frozenset()
    has_negotiated: bool = False
    """The first capability negotiation is done: the frame takes toWidget pushes from now on."""
    dropped: Counter[str] = field(default_factory=Counter)
    unloaded: bool = False
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    _awaiting_user: dict[str, dict[str, Any]] = field(default_factory=dict)
    _window: int = -1
    _count: int = 0
    _over_windows: int = 0
    _capability_rounds: int = 0
    _open_to_widget: set[str] = field(default_factory=set)
    _push_rounds: int = 0

    # -- the host starts the negotiation --------------------------------------------

    def start(self) -> list[Effect]:
        """The toWidget `capabilities` request the host sends once the frame has loaded."""
        return [Reply(self._to_widget("capabilities", {}))]

    def _to_widget(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        self._capability_rounds += 1
        request_id = f"{CAPABILITIES_REQUEST}-{self._capability_rounds}"
        self._open_to_widget.add(request_id)
        return {"api": "toWidget", "widgetId": self.widget_id, "requestId": request_id, "action": action,
                "data": data}

    def approvable(self, requested: list[str]) -> frozenset[str]:
        approved = set()
        for capability in requested:
            needed = kumix_capability_for(capability, self.room_id)
            if needed is not None and self.rights.missing(needed) is None:
                approved.add(capability)
        return frozenset(approved)

    def _negotiate(self, requested: list[str]) -> list[Effect]:
        self.negotiated = self.approvable(requested)
        self.has_negotiated = True
        notify = self._to_widget("notify_capabilities",
                                 {"requested": requested, "approved": sorted(self.negotiated)})
        return [Reply(notify)]

    # -- messages from the frame ------------------------------------------------------

    def receive(self, raw: str, now: float) -> list[Effect]:
        """One message the host page forwarded, as the JSON text it sent; `now` in seconds."""
        if self.unloaded:
            self.dropped["unloaded"] += 1
            return []
        over_limit = self._rate(now)
        if over_limit and self.unloaded:
            return [Unload(f"more than ui.maxMessagesPerSecond ({self.max_messages_per_second}) messages a second")]
        if over_limit and self._count > self.max_messages_per_second + 1:
            return []  # only the first message over the limit is answered: no amplification
        if len(raw.encode("utf-8", "surrogatepass")) > self.max_message_bytes:
            self.dropped["too_large"] += 1
            return self._reply_if_possible(raw, "input_too_large",
                                           f"message larger than ui.maxMessageBytes ({self.max_message_bytes})")
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            self.dropped["not_json"] += 1
            return []
        if not isinstance(message, dict) or message.get("widgetId") != self.widget_id:
            self.dropped["wrong_token"] += 1
            return []
        request_id = message.get("requestId")
        action = message.get("action")
        if not (isinstance(request_id, str) and 0 < len(request_id) <= MAX_ID_CHARS
                and isinstance(action, str) and 0 < len(action) <= MAX_ID_CHARS):
            self.dropped["bad_envelope"] += 1
            return []
        if over_limit:
            return [self._refuse(message, Refused(
                "unavailable", f"over ui.maxMessagesPerSecond ({self.max_messages_per_second}); "
                "a frame that keeps this up is unloaded"))]
        if message.get("api") == "toWidget":
            return self._widget_answered(message)
        if message.get("api") != "fromWidget" or "response" in message:
            self.dropped["bad_envelope"] += 1
            return []
        data = message.get("data", {})
        if not isinstance(data, dict):
            return [self._refuse(message, Refused("bad_request", "data must be an object"))]
        if request_id in self._pending or request_id in self._awaiting_user:
            return [self._refuse(message, Refused("bad_request", "requestId is already in use"))]
        try:
            return self._request(message, action, data)
        except Refused as refusal:
            return [self._refuse(message, refusal)]

    def _rate(self, now: float) -> bool:
        """Count one message in its one-second window; True when it is over the limit.
        Far over (twice the rate), or over for UNLOAD_AFTER_WINDOWS seconds in a row,
        unloads the frame: a flood costs the host page even when every message is dropped."""
        window = int(now)
        if window != self._window:
            over = self._count > self.max_messages_per_second
            self._over_windows = self._over_windows + 1 if over and window == self._window + 1 else 0
            self._window, self._count = window, 0
        self._count += 1
        if self._count <= self.max_messages_per_second:
            return False
        self.dropped["rate"] += 1
        if self._count > 2 * self.max_messages_per_second or self._over_windows + 1 >= UNLOAD_AFTER_WINDOWS:
            self.unloaded = True
            self._pending.clear()
            self._awaiting_user.clear()
        return True

    def _reply_if_possible(self, raw: str, code: Code, text: str) -> list[Effect]:
        """An oversized message still gets an error, built from its envelope only."""
        match = re.match(r'\s*\{\s*"api"\s*:\s*"fromWidget"\s*,\s*"widgetId"\s*:\s*"([^"\\]{1,128})"\s*,'
                         r'\s*"requestId"\s*:\s*"([^"\\]{1,128})"', raw[:600])
        if match is None or match.group(1) != self.widget_id:
            return []
        return [Reply({"api": "fromWidget", "widgetId": self.widget_id, "requestId": match.group(2),
                       "action": "", "data": {}, "response": _error_response(code, text)})]

    def _refuse(self, message: dict[str, Any], refusal: Refused) -> Effect:
        self.dropped["refused"] += 1
        return Reply({**message, "response": _error_response(refusal.code, refusal.message, refusal.capability)})

    def _widget_answered(self, message: dict[str, Any]) -> list[Effect]:
        """The frame's response to one of the host's toWidget requests."""
        request_id = message["requestId"]
        if request_id not in self._open_to_widget or not isinstance(message.get("response"), dict):
            self.dropped["unexpected_response"] += 1
            return []
        self._open_to_widget.discard(request_id)
        if message["action"] == "capabilities":
            requested = message["response"].get("capabilities")
            if not isinstance(requested, list) or not all(isinstance(c, str) and len(c) <= 512 for c in requested):
                requested = []
            return self._negotiate(requested[:256])
        return []

    def _need(self, capability: str, widget_capability: str) -> None:
        missing = self.rights.missing(capability)
        if missing is not None:
            raise Refused(missing[0], f"{missing[1]} (needed for {widget_capability})", capability)
        if widget_capability not in self.negotiated:
            raise Refused("not_granted", f"capability {widget_capability!r} was not negotiated by this frame",
                          widget_capability)

    def _request(self, message: dict[str, Any], action: str, data: dict[str, Any]) -> list[Effect]:
        request_id: str = message["requestId"]
        if action == "supported_api_versions":
            return [Reply({**message, "response": {"supported_versions": list(SUPPORTED_API_VERSIONS)}})]
        if action == "content_loaded":
            return [Reply({**message, "response": {}})]
        if action == "org.matrix.msc2974.request_capabilities":
            requested = data.get("capabilities")
            if not isinstance(requested, list) or not all(isinstance(c, str) and len(c) <= 512 for c in requested):
                raise Refused("bad_request", "capabilities must be a list of strings")
            # Renegotiation can only ever reach what the frame's rights allow.
            merged = sorted(set(self.negotiated) | set(requested[:256]))
            return [Reply({**message, "response": {}}), *self._negotiate(merged)]
        if len(self._pending) + len(self._awaiting_user) >= MAX_PENDING:
            raise Refused("unavailable", f"more than {MAX_PENDING} requests of this frame are pending")
        if action == "org.matrix.msc2876.read_events":
            return self._read_events(message, data)
        if action == "send_event":
            return self._send_event(message, data)
        if action == NAVIGATE:
            self._need(ROOM_NAVIGATE, NAVIGATE)
            uri = data.get("uri")
            if not isinstance(uri, str) or MATRIX_TO.fullmatch(uri) is None:
                raise Refused("bad_request", "navigate accepts matrix.to room links only")
            return self._perform(message, "navigate", {"uri": uri})
        if action == THEME_TOKENS_CAP:
            self._need(THEME_TOKENS, THEME_TOKENS_CAP)
            return self._perform(message, "theme_tokens", {})
        if action == PROC_CALL_CAP:
            self._need(PROC_CALL, PROC_CALL_CAP)
            target, method, params = data.get("extension"), data.get("method"), data.get("params", {})
            if not (isinstance(target, str) and isinstance(method, str) and isinstance(params, dict)):
                raise Refused("bad_request", "proc_call needs extension, method (strings) and params (object)")
            return self._perform(message, "proc_call", {"extension": target, "method": method, "params": params})
        del request_id
        raise Refused("policy_denied", _unsupported(action), _capability_named_by(action))

    def _room_of(self, data: dict[str, Any], key: str) -> None:
        rooms = data.get(key)
        if rooms is None:
            return
        wanted = rooms if isinstance(rooms, list) else [rooms]
        for room in wanted:
            if room != self.room_id:
                text = room if isinstance(room, str) else "?"
                raise Refused("policy_denied",
                              f"a Kumix frame reaches only the room it is shown with; missing capability "
                              f"{TIMELINE + text[:200]!r}", TIMELINE + text[:200])

    def _read_events(self, message: dict[str, Any], data: dict[str, Any]) -> list[Effect]:
        kind, msgtype = data.get("type"), data.get("msgtype")
        if "state_key" in data:
            raise Refused("policy_denied", "state events are never readable by a frame; missing capability "
                          "'org.matrix.msc2762.receive.state_event'", "org.matrix.msc2762.receive.state_event")
        if not isinstance(kind, str) or kind not in READABLE_TYPES:
            text = kind[:200] if isinstance(kind, str) else "?"
            raise Refused("policy_denied", f"Kumix never lets a frame read events of type {text!r}; missing "
                          f"capability {RECEIVE_EVENT + text!r}", RECEIVE_EVENT + text)
        self._room_of(data, "room_ids")
        wanted = RECEIVE_EVENT + kind
        if isinstance(msgtype, str) and RECEIVE_EVENT + f"{kind}#{msgtype}" in self.negotiated:
            wanted = RECEIVE_EVENT + f"{kind}#{msgtype}"
        self._need(ROOM_CONTEXT_READ, wanted)
        limit = data.get("limit", MAX_READ_EVENTS)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise Refused("bad_request", "limit must be a positive integer")
        params = {"room_id": self.room_id, "type": kind, "limit": min(limit, MAX_READ_EVENTS)}
        if isinstance(msgtype, str):
            params["msgtype"] = msgtype
        return self._perform(message, "read_events", params)

    def _send_event(self, message: dict[str, Any], data: dict[str, Any]) -> list[Effect]:
        kind, content = data.get("type"), data.get("content")
        if "state_key" in data:
            raise Refused("policy_denied", "a frame never sends state events; missing capability "
                          "'org.matrix.msc2762.send.state_event'", "org.matrix.msc2762.send.state_event")
        if not isinstance(kind, str) or kind not in SENDABLE_TYPES:
            text = kind[:200] if isinstance(kind, str) else "?"
            raise Refused("policy_denied", f"Kumix never lets a frame send events of type {text!r}; missing "
                          f"capability {SEND_EVENT + text!r}", SEND_EVENT + text)
        self._room_of(data, "room_id")
        if not isinstance(content, dict):
            raise Refused("bad_request", "content must be an object")
        wanted = SEND_EVENT + kind
        msgtype = content.get("msgtype")
        if kind == "m.room.message":
            if not isinstance(msgtype, str) or not isinstance(content.get("body"), str):
                raise Refused("bad_request", "an m.room.message needs msgtype and body strings")
            if SEND_EVENT + f"{kind}#{msgtype}" in self.negotiated:
                wanted = SEND_EVENT + f"{kind}#{msgtype}"
        self._need(ROOM_MESSAGE_SEND, wanted)
        request_id: str = message["requestId"]
        params = {"room_id": self.room_id, "type": kind, "content": content}
        if self.send_always_allowed:
            return self._perform(message, "send_event", params)
        self._awaiting_user[request_id] = message
        return [AskUser(request_id, kind, content)]

    def _perform(self, message: dict[str, Any], action: Any, params: dict[str, Any]) -> list[Effect]:
        self._pending[message["requestId"]] = message
        return [Perform(message["requestId"], action, params)]

    # -- answers from the app and the user -------------------------------------------

    def confirm(self, request_id: str, *, approved: bool, always: bool = False) -> list[Effect]:
        """The user's answer to an AskUser; only a request still waiting counts."""
        message = self._awaiting_user.pop(request_id, None)
        if message is None:
            self.dropped["unexpected_confirmation"] += 1
            return []
        if not approved:
            declined = _error_response("not_granted", "the user declined to send this message", ROOM_MESSAGE_SEND)
            return [Reply({**message, "response": declined})]
        effects: list[Effect] = []
        if always and not self.send_always_allowed:
            self.send_always_allowed = True
            effects.append(RememberSendApproval(self.extension_id))
        data = message["data"]
        effects += self._perform(message, "send_event",
                                 {"room_id": self.room_id, "type": data["type"], "content": data["content"]})
        return effects

    def complete(self, request_id: str, result: Mapping[str, Any] | KumixError) -> list[Effect]:
        """The app finished a Perform; the frame gets the result or the error's code."""
        message = self._pending.pop(request_id, None)
        if message is None:
            self.dropped["unexpected_completion"] += 1
            return []
        if isinstance(result, KumixError):
            return [Reply({**message, "response": _error_response(result.code, result.message)})]
        return [Reply({**message, "response": dict(result)})]

    def push_theme(self, name: str, tokens: Mapping[str, str]) -> list[Effect]:
        """The user changed the theme: toWidget `theme_change` (Widget API) with the theme's
        name — which every frame's bootstrap carries already, so every negotiated frame gets
        it — and Kumix's design tokens only for a frame that negotiated io.kumix.theme_tokens."""
        if self.unloaded or not self.has_negotiated:
            return []
        data: dict[str, Any] = {"name": name}
        if THEME_TOKENS_CAP in self.negotiated:
            data["io.kumix.tokens"] = dict(tokens)
        self._push_rounds += 1
        request_id = f"kumix-theme-{self._push_rounds}"
        self._open_to_widget.add(request_id)
        return [Reply({"api": "toWidget", "widgetId": self.widget_id, "requestId": request_id,
                       "action": "theme_change", "data": data})]

    def push_event(self, event: Mapping[str, Any]) -> list[Effect]:
        """A new event of the frame's room: pushed (toWidget send_event) if negotiated."""
        kind = event.get("type")
        if self.unloaded or event.get("room_id") != self.room_id or not isinstance(kind, str):
            return []
        if self.rights.missing(ROOM_CONTEXT_READ) is not None:
            return []
        msgtype = event.get("content", {}).get("msgtype") if isinstance(event.get("content"), dict) else None
        wanted = {RECEIVE_EVENT + kind, RECEIVE_EVENT + f"{kind}#{msgtype}"}
        if kind not in READABLE_TYPES or not (wanted & self.negotiated):
            return []
        self._push_rounds += 1
        request_id = f"kumix-event-{self._push_rounds}"
        self._open_to_widget.add(request_id)
        if len(self._open_to_widget) > MAX_OPEN_TO_WIDGET:  # a frame that never answers
            self._open_to_widget.discard(f"kumix-event-{self._push_rounds - MAX_OPEN_TO_WIDGET}")
        return [Reply({"api": "toWidget", "widgetId": self.widget_id,
                       "requestId": request_id, "action": "send_event", "data": dict(event)})]


def _capability_named_by(action: str) -> str:
    return {
        "get_openid": "openid (OpenID tokens are never given to a frame)",
        "send_to_device": "org.matrix.msc3819.send.to_device",
        "watch_turn_servers": "town.robin.msc3846.turn_servers",
        "set_always_on_screen": "m.always_on_screen",
        "update_state": "org.matrix.msc2762.receive.state_event",
    }.get(action, f"io.kumix.action:{action[:100]}")


def _unsupported(action: str) -> str:
    return f"Kumix UI frames have no capability for action {action[:100]!r}; missing capability " \
           f"{_capability_named_by(action)!r}"
