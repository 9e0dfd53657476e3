"""Translation of nio's events into `kumix.core.models`: pure functions, no I/O and no
client state, tested on events recorded from Synapse (tests/matrix/test_translate.py).

Everything in an event is chosen by its sender; a field of the wrong type becomes None or
empty here, never an exception later (one such event once made every later sync fail to store).
"""

from __future__ import annotations

import json
from typing import Any

import nio

from kumix.core.models import (
    MAX_KEPT_CONTENT,
    POLL_EVENT_TYPES,
    Attachment,
    Event,
    HtmlSanitizer,
    Receipt,
    ReceiptsUpdate,
    Room,
    TypingUpdate,
)


def text_or_none(value: Any) -> str | None:
    """A field of untrusted JSON that must be a string, or None when it is anything else."""
    return value if isinstance(value, str) else None


def translate_room(r: Any, membership: str, *, user_id: str, direct_rooms: set[str]) -> Room:
    """A nio room (joined or invited) as a Kumix `Room`."""
    inviter = None
    is_direct = r.room_id in direct_rooms
    if membership == "invite":
        me = getattr(r, "users", {}).get(user_id)
        inviter = getattr(r, "inviter", None)
        is_direct = is_direct or bool(me and getattr(me, "is_direct", False))
    return Room(
        room_id=r.room_id,
        name=str(r.display_name or r.room_id),
        topic=text_or_none(r.topic),
        encrypted=bool(r.encrypted),
        membership=membership,  # type: ignore[arg-type]
        unread_count=int(r.unread_notifications or 0),
        highlight_count=int(r.unread_highlights or 0),
        is_direct=is_direct,
        canonical_alias=text_or_none(r.canonical_alias),
        inviter=text_or_none(inviter),
        avatar_url=mxc_or_none(getattr(r, "room_avatar_url", None)),
        is_space=getattr(r, "room_type", None) == "m.space",
        children=room_ids(getattr(r, "children", ())),
        parents=room_ids(getattr(r, "parents", ())),
    )


def mxc_or_none(value: Any) -> str | None:
    """A content URI from untrusted state: only `mxc://` (never a URL the server would fetch)."""
    return value if isinstance(value, str) and value.startswith("mxc://") and len(value) <= 1024 else None


MAX_SPACE_LINKS = 1000
"""Children (or parents) kept per room: the state keys are chosen by the room's members, and
every room row travels whole in each `rooms` frame of the web server."""


def room_ids(values: Any) -> tuple[str, ...]:
    """Room ids named by space state keys (sorted, so a room's row is stable across syncs)."""
    kept = sorted(v for v in values if isinstance(v, str) and v.startswith("!") and len(v) <= 255)
    return tuple(kept[:MAX_SPACE_LINKS])


def translate_ephemeral(room_id: str, ev: Any, *, user_id: str) -> TypingUpdate | ReceiptsUpdate | None:
    """A typing notice (without our own user) or receipts of a joined room; anything else,
    and fields of the wrong type, dropped."""
    if isinstance(ev, nio.TypingNoticeEvent):
        users = ev.users if isinstance(ev.users, list) else []
        return TypingUpdate(room_id, tuple(sorted({u for u in users if isinstance(u, str) and u != user_id})))
    if isinstance(ev, nio.ReceiptEvent):
        receipts = tuple(
            Receipt(user_id=r.user_id, event_id=r.event_id, receipt_type=r.receipt_type,
                    ts=r.timestamp if isinstance(r.timestamp, int) else 0, thread_id=text_or_none(r.thread_id))
            for r in ev.receipts
            if isinstance(r.user_id, str) and isinstance(r.event_id, str) and isinstance(r.receipt_type, str))
        return ReceiptsUpdate(room_id, receipts) if receipts else None
    return None


def translate_event(room_id: str, ev: Any, sanitize: HtmlSanitizer) -> Event:
    """One nio event as a Kumix `Event`; untrusted fields of the wrong type are dropped."""
    source: dict[str, Any] = ev.source if isinstance(getattr(ev, "source", None), dict) else {}
    content: dict[str, Any] = source.get("content") if isinstance(source.get("content"), dict) else {}  # type: ignore[assignment]
    unsigned = source.get("unsigned") if isinstance(source.get("unsigned"), dict) else {}
    base: dict[str, Any] = {
        "event_id": str(getattr(ev, "event_id", "") or source.get("event_id", "")),
        "room_id": room_id,
        "sender": str(getattr(ev, "sender", "") or ""),
        "origin_ts": int(getattr(ev, "server_timestamp", 0) or 0),
        "encrypted": bool(getattr(ev, "decrypted", False)),
        "transaction_id": text_or_none(
            (unsigned or {}).get("transaction_id") or getattr(ev, "transaction_id", None)),
    }
    if isinstance(ev, nio.MegolmEvent):
        return Event(**base | {"encrypted": True}, kind="undecryptable", body="** unable to decrypt **",
                     session_id=ev.session_id, source=ev.source)
    relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
    assert isinstance(relates, dict)
    reply = relates.get("m.in_reply_to")
    # Relation ids are whatever the sender put there: the homeserver accepts a list or
    # an object (it is then simply not a relation). Anything but text is dropped here;
    # passed on, one such event made every later sync of every member fail to store.
    reply_to = text_or_none(reply.get("event_id")) if isinstance(reply, dict) else None
    if isinstance(ev, nio.RedactionEvent):
        return Event(**base, kind="redaction", relates_to=text_or_none(ev.redacts))
    if isinstance(ev, nio.ReactionEvent):
        key = text_or_none(ev.key)
        return Event(**base, kind="reaction", relates_to=text_or_none(ev.reacts_to), reaction_key=key,
                     body=key or "")
    if isinstance(ev, nio.RoomMemberEvent):
        return Event(**base, kind="member", body=f"{ev.state_key} {ev.membership}")
    msgtype = content.get("msgtype") if isinstance(content.get("msgtype"), str) else None
    if isinstance(ev, nio.RoomMessage) or (msgtype and source.get("type") == "m.room.message"):
        if relates.get("rel_type") == "m.replace" and isinstance(content.get("m.new_content"), dict):
            new = content["m.new_content"]
            body, html = text_of(new, sanitize)
            return Event(**base, kind="edit", body=body, formatted_html=html, msgtype=msgtype,
                         relates_to=text_or_none(relates.get("event_id")))
        if isinstance(ev, nio.RoomEncryptedMedia | nio.RoomMessageMedia):
            return Event(**base, kind="file", body=str(content.get("body", "")), msgtype=msgtype,
                         attachment=attachment_of(content), reply_to=reply_to)
        body, html = text_of(content, sanitize)
        return Event(**base, kind="text", body=body, formatted_html=html, msgtype=msgtype,
                     reply_to=reply_to, relates_to=reply_to)
    if getattr(ev, "state_key", None) is not None or "state_key" in source:
        return Event(**base, kind="state", body=str(source.get("type", "")))
    kind = source.get("type")
    if kind in POLL_EVENT_TYPES:
        # Kept whole (bounded) for UI frames that show polls; never rendered as HTML.
        kept = content if len(json.dumps(content)) <= MAX_KEPT_CONTENT else {}
        return Event(**base, kind="other", body=str(kind), source={"type": kind, "content": kept})
    return Event(**base, kind="other", body=str(source.get("type", type(ev).__name__)))

def text_of(content: dict[str, Any], sanitize: HtmlSanitizer) -> tuple[str, str | None]:
    """Plain body and, when the content has HTML, that HTML sanitized."""
    body = content.get("body")
    body = body if isinstance(body, str) else ""
    html = content.get("formatted_body")
    if content.get("format") == "org.matrix.custom.html" and isinstance(html, str):
        return body, sanitize(html)
    return body, None

def attachment_of(content: dict[str, Any]) -> Attachment:
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    assert isinstance(info, dict)
    file_info = content.get("file") if isinstance(content.get("file"), dict) else None
    url = (file_info or {}).get("url") or content.get("url") or ""
    size = info.get("size")
    return Attachment(
        url=str(url),
        name=str(content.get("body", "file")),
        mimetype=info.get("mimetype") if isinstance(info.get("mimetype"), str) else None,
        size=size if isinstance(size, int) else None,
        encryption=file_info,
    )
