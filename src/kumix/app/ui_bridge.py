"""What a UI frame's accepted requests do for the signed-in account: the `BridgeActions` of
`kumix.app.ui_frames`, carried out by `Kumix`'s use cases.

A frame sees events in the Matrix client-server shape the Widget API uses (`type`,
`event_id`, `room_id`, `sender`, `origin_server_ts`, `content`), rebuilt from what Kumix
stores: text and files as `m.room.message` (HTML already sanitized), polls as stored.
The session (`bridge_session.py`) has already decided that the frame may ask.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from kumix.core.errors import KumixError, Unavailable
from kumix.core.models import Event

if TYPE_CHECKING:
    from kumix.app.kumix import Kumix

SCAN_EVENTS = 500
"""How far back read_events looks in the room's stored timeline for matching events."""


def matrix_event(event: Event) -> dict[str, Any] | None:
    """A stored event as the Widget API shows it, or None for what frames never see
    (membership, state, reactions, redactions, undecryptable events)."""
    base: dict[str, Any] = {"event_id": event.event_id, "room_id": event.room_id, "sender": event.sender,
                            "origin_server_ts": event.origin_ts}
    if event.kind in ("text", "file", "edit"):
        content: dict[str, Any] = {"msgtype": event.msgtype or "m.text", "body": event.body}
        if event.formatted_html is not None:
            content |= {"format": "org.matrix.custom.html", "formatted_body": event.formatted_html}
        if event.kind == "edit" and event.relates_to:
            content = {**content, "body": f"* {event.body}", "m.new_content": dict(content),
                       "m.relates_to": {"rel_type": "m.replace", "event_id": event.relates_to}}
        elif event.reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": event.reply_to}}
        if event.attachment is not None:
            content["info"] = {"mimetype": event.attachment.mimetype, "size": event.attachment.size}
        return base | {"type": "m.room.message", "content": content}
    source = event.source
    if event.kind == "other" and isinstance(source, dict) and isinstance(source.get("type"), str):
        kept = source.get("content")
        return base | {"type": source["type"], "content": dict(kept) if isinstance(kept, dict) else {}}
    return None


class AccountBridgeActions:
    """`BridgeActions` for one front end's connection: `navigate` is that connection's own
    (the web server tells the page that asked)."""

    def __init__(self, k: Kumix, navigate: Callable[[str], Awaitable[None]]) -> None:
        self._k = k
        self._navigate = navigate

    async def read_events(self, room_id: str, event_type: str, msgtype: str | None,
                          limit: int) -> list[Mapping[str, Any]]:
        page = await self._k.timeline(room_id, limit=SCAN_EVENTS)
        out: list[Mapping[str, Any]] = []
        for update in reversed(page.updates):  # newest first, as the Widget API reads
            shown = matrix_event(update.event)
            if shown is None or shown["type"] != event_type:
                continue
            if msgtype is not None and shown["content"].get("msgtype") != msgtype:
                continue
            out.append(shown)
            if len(out) >= limit:
                break
        return out

    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        result = await self._k.send_event(room_id, event_type, dict(content))
        event_id = result.entry.event_id
        if event_id is None:
            raise Unavailable("the homeserver is not reachable; the event is queued and will be sent later")
        return event_id

    async def navigate(self, room_link: str) -> None:
        await self._navigate(room_link)

    async def theme_tokens(self) -> Mapping[str, Any]:
        return await self._k.theme_tokens()

    async def proc_call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        return await self._k.call(extension_id, method, params)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        unstable = value.get("org.matrix.msc1767.text")
        if isinstance(unstable, str):
            return unstable
        texts = value.get("m.text")
        if isinstance(texts, list) and texts and isinstance(texts[0], dict) and isinstance(texts[0].get("body"), str):
            return str(texts[0]["body"])
    return ""


def vote_summary(k: Kumix, content: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a vote a frame wants to send means, from the poll as the room holds it (not as
    the frame claims): `{question, answers: [chosen answer texts]}`, or None when the poll
    is not known here."""
    relates = content.get("m.relates_to")
    poll_id = relates.get("event_id") if isinstance(relates, dict) else None
    unstable = content.get("org.matrix.msc3381.poll.response")
    chosen = content.get("m.selections") or (unstable.get("answers") if isinstance(unstable, dict) else None)
    if not isinstance(poll_id, str) or not isinstance(chosen, list):
        return None
    try:
        start = k.event(poll_id)
    except KumixError:
        return None
    source = start.source
    kept = source.get("content") if isinstance(source, dict) else None
    if not isinstance(kept, dict):
        return None
    body = kept.get("m.poll") or kept.get("org.matrix.msc3381.poll.start")
    if not isinstance(body, dict) or not isinstance(body.get("answers"), list):
        return None
    texts = {str(a.get("m.id") or a.get("id") or ""): _text_of(a) for a in body["answers"][:20] if isinstance(a, dict)}
    return {"question": _text_of(body.get("question"))[:500],
            "answers": [texts.get(str(c), str(c))[:200] for c in chosen[:20]]}
