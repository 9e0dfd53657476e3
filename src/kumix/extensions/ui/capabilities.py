"""Widget API capability strings (MSC2762, MSC2931, Kumix's `io.kumix.*`) and the Kumix
capability each one needs.

A frame negotiates Widget API strings; the manifest and the policy speak Kumix
capabilities. A string Kumix does not map (state events, to-device, OpenID, other rooms'
timelines, TURN servers, …) is never approved, whatever the manifest or policy says.
"""

from __future__ import annotations

ROOM_CONTEXT_READ = "room.context.read"
ROOM_MESSAGE_SEND = "room.message.send"
ROOM_NAVIGATE = "room.navigate"
THEME_TOKENS = "theme.tokens"
PROC_CALL = "proc.call"
UI_CAPABILITIES = frozenset({ROOM_CONTEXT_READ, ROOM_MESSAGE_SEND, ROOM_NAVIGATE, THEME_TOKENS, PROC_CALL})

SEND_EVENT = "org.matrix.msc2762.send.event:"
RECEIVE_EVENT = "org.matrix.msc2762.receive.event:"
TIMELINE = "org.matrix.msc2762.timeline:"
NAVIGATE = "org.matrix.msc2931.navigate"
THEME_TOKENS_CAP = "io.kumix.theme_tokens"
PROC_CALL_CAP = "io.kumix.proc_call"

POLL_TYPES = frozenset(
    {
        "m.poll.start", "m.poll.response", "m.poll.end",
        # The unstable MSC3381 names clients still send.
        "org.matrix.msc3381.poll.start", "org.matrix.msc3381.poll.response", "org.matrix.msc3381.poll.end",
    }
)
READABLE_TYPES = frozenset({"m.room.message"}) | POLL_TYPES
SENDABLE_TYPES = frozenset({"m.room.message", "m.poll.response", "org.matrix.msc3381.poll.response"})


def _event_type(suffix: str) -> str:
    """`m.room.message#m.text` → `m.room.message`; a msgtype is only meaningful on messages."""
    base, hash_sign, msgtype = suffix.partition("#")
    if hash_sign and (base != "m.room.message" or not msgtype):
        return ""
    return base


def kumix_capability_for(widget_capability: str, room_id: str) -> str | None:
    """The Kumix capability a Widget API capability needs in the frame's room, or None
    when Kumix never grants it."""
    if widget_capability.startswith(RECEIVE_EVENT):
        kind = _event_type(widget_capability.removeprefix(RECEIVE_EVENT))
        return ROOM_CONTEXT_READ if kind in READABLE_TYPES else None
    if widget_capability.startswith(SEND_EVENT):
        kind = _event_type(widget_capability.removeprefix(SEND_EVENT))
        return ROOM_MESSAGE_SEND if kind in SENDABLE_TYPES else None
    if widget_capability == TIMELINE + room_id:
        return ROOM_CONTEXT_READ  # only the room the frame is shown with, never `*`
    return {NAVIGATE: ROOM_NAVIGATE, THEME_TOKENS_CAP: THEME_TOKENS, PROC_CALL_CAP: PROC_CALL}.get(widget_capability)


def widget_capabilities_for(kumix_capabilities: frozenset[str], room_id: str) -> tuple[str, ...]:
    """Every Widget API string the given Kumix capabilities cover in that room."""
    out: list[str] = []
    if ROOM_CONTEXT_READ in kumix_capabilities:
        out += [RECEIVE_EVENT + t for t in sorted(READABLE_TYPES)] + [TIMELINE + room_id]
    if ROOM_MESSAGE_SEND in kumix_capabilities:
        out += [SEND_EVENT + t for t in sorted(SENDABLE_TYPES)]
    if ROOM_NAVIGATE in kumix_capabilities:
        out.append(NAVIGATE)
    if THEME_TOKENS in kumix_capabilities:
        out.append(THEME_TOKENS_CAP)
    if PROC_CALL in kumix_capabilities:
        out.append(PROC_CALL_CAP)
    return tuple(out)
