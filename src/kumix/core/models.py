"""Kumix's own Matrix domain: accounts, rooms, timeline events, attachments, sync batches.

These are what every layer above `kumix.matrix` sees; matrix-nio's types stop at that
adapter. HTML in `Event.formatted_html` is always already sanitized: the adapter is given
the sanitizer and applies it before an `Event` exists, so no caller can forget to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

HtmlSanitizer = Callable[[str], str]
"""Port: turns untrusted HTML into HTML safe to display."""

Membership = Literal["join", "invite", "leave"]

POLL_EVENT_TYPES = frozenset({
    "m.poll.start", "m.poll.response", "m.poll.end",
    # The unstable MSC3381 names clients still send.
    "org.matrix.msc3381.poll.start", "org.matrix.msc3381.poll.response", "org.matrix.msc3381.poll.end",
})
"""Poll events (MSC3381): stored as kind `other` with their type and content in `source`,
so a UI frame with `room.context.read` can read and show them."""
MAX_KEPT_CONTENT = 16_384
"""A poll event's content (as JSON) larger than this is stored without it."""

EventKind = Literal[
    "text",  # m.text, m.notice, m.emote
    "file",  # m.file, m.image, m.audio, m.video
    "reaction",
    "redaction",
    "edit",
    "undecryptable",  # encrypted and no key yet; retried when keys arrive
    "member",
    "state",
    "other",
]


@dataclass(frozen=True)
class Account:
    """Who we are on which homeserver; holds no secret."""

    user_id: str
    device_id: str
    homeserver: str


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    topic: str | None
    encrypted: bool
    membership: Membership
    unread_count: int = 0
    highlight_count: int = 0
    is_direct: bool = False
    canonical_alias: str | None = None
    inviter: str | None = None
    avatar_url: str | None = None
    """The room's `m.room.avatar` (an mxc:// URI), when it has one."""
    is_space: bool = False
    """A space (creation content `type: m.space`): a room that groups other rooms."""
    children: tuple[str, ...] = ()
    """For a space, the rooms its `m.space.child` state names (with a `via`)."""
    parents: tuple[str, ...] = ()
    """The spaces this room names as its parents (`m.space.parent` with a `via`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "name": self.name,
            "topic": self.topic,
            "encrypted": self.encrypted,
            "membership": self.membership,
            "unread": self.unread_count,
            "highlights": self.highlight_count,
            "direct": self.is_direct,
            "alias": self.canonical_alias,
            "avatar": self.avatar_url,
            "space": self.is_space,
            "children": list(self.children),
            "parents": list(self.parents),
        }


@dataclass(frozen=True)
class Attachment:
    """A file in the content repository. `encryption` is the JSON Web Key + IV + hashes
    an encrypted room needs to decrypt it; it is key material, never logged."""

    url: str
    name: str
    mimetype: str | None
    size: int | None
    encryption: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Event:
    event_id: str
    room_id: str
    sender: str
    origin_ts: int
    kind: EventKind
    body: str = ""
    formatted_html: str | None = None
    msgtype: str | None = None
    encrypted: bool = False
    relates_to: str | None = None
    """Event this one replaces (edit), annotates (reaction), redacts, or replies to."""
    reply_to: str | None = None
    reaction_key: str | None = None
    attachment: Attachment | None = None
    session_id: str | None = None
    """Megolm session of an undecryptable event: which key would unlock it."""
    transaction_id: str | None = None
    source: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """Raw encrypted event of an undecryptable one (so it can be retried), or `{type,
    content}` of a poll event (kind `other`); None for every other event."""
    sender_trust: str | None = None
    """Of a decrypted event: the trust of its sending device when it was decrypted (a
    `kumix.core.trust.SenderTrust`); of a withheld one (`kind` undecryptable), why."""
    sender_device: str | None = None
    sender_keys: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    """Of a decrypted event: the Megolm session's (Curve25519, claimed Ed25519) sender keys,
    what the sender's trust is judged from (`kumix.matrix.sender_trust`); not stored."""
    sender_session: tuple[str, bool] | None = field(default=None, repr=False, compare=False)
    """Of a decrypted event: its Megolm session id, and whether that room key came forwarded
    by another device (rather than from the sender over Olm); not stored."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "event_id": self.event_id,
            "room_id": self.room_id,
            "sender": self.sender,
            "ts": self.origin_ts,
            "kind": self.kind,
            "body": self.body,
            "encrypted": self.encrypted,
        }
        if self.formatted_html is not None:
            doc["html"] = self.formatted_html
        if self.msgtype:
            doc["msgtype"] = self.msgtype
        if self.relates_to:
            doc["relates_to"] = self.relates_to
        if self.reply_to:
            doc["reply_to"] = self.reply_to
        if self.reaction_key:
            doc["key"] = self.reaction_key
        if self.attachment:
            doc["file"] = {"url": self.attachment.url, "name": self.attachment.name,
                           "mimetype": self.attachment.mimetype, "size": self.attachment.size}
        if self.sender_trust:
            doc["sender_trust"] = self.sender_trust
            doc["sender_device"] = self.sender_device
        return doc


@dataclass(frozen=True)
class SyncBatch:
    """One sync response, translated: what changed and where to resume from."""

    next_batch: str
    rooms: list[Room]
    events: list[Event]
    left_rooms: list[str]
    prev_batches: dict[str, str]
    """Per room, the token to paginate backwards from the oldest event of this batch."""
    keys_arrived: frozenset[str]
    """Megolm session ids whose keys came in with this batch (room keys, forwarded keys)."""
    limited: frozenset[str] = frozenset()
    """Rooms whose timeline has a gap before this batch (more happened than was sent)."""
    ephemeral: tuple[TypingUpdate | ReceiptsUpdate, ...] = ()
    """Typing notices and read receipts of joined rooms (live only: never stored)."""


@dataclass(frozen=True)
class Page:
    """A page of older events from backward pagination; `end` continues further back."""

    events: list[Event]
    end: str | None


@dataclass(frozen=True)
class TimelineUpdate:
    """An event stored or changed (decrypted late, edited, redacted). `cursor` grows with
    every change the store records, across rooms: a subscriber that remembers the last
    cursor it handled can ask the store to replay everything after it."""

    cursor: int
    event: Event


@dataclass(frozen=True)
class RoomsUpdate:
    """Rooms whose state changed in a sync (name, membership, counts); the current rows."""

    rooms: list[Room]


@dataclass(frozen=True)
class Resync:
    """The subscriber fell behind and updates after `cursor` were dropped: replay from the
    store (`Kumix.subscribe(since=cursor)` or `Kumix.timeline(after=cursor)`) before
    trusting the live stream again."""

    cursor: int


@dataclass(frozen=True)
class TypingUpdate:
    """Who is typing in a room now (other users; empty: nobody). Live only, never stored:
    a subscriber that resumes from a cursor gets the next notice, not the missed ones."""

    room_id: str
    user_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"room_id": self.room_id, "user_ids": list(self.user_ids)}


@dataclass(frozen=True)
class Receipt:
    """`user_id` has read (`m.read`, or privately `m.read.private`) up to `event_id`."""

    user_id: str
    event_id: str
    receipt_type: str
    ts: int
    thread_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "event_id": self.event_id, "type": self.receipt_type, "ts": self.ts,
                "thread_id": self.thread_id}


@dataclass(frozen=True)
class ReceiptsUpdate:
    """New read receipts in a room (live only, like `TypingUpdate`)."""

    room_id: str
    receipts: tuple[Receipt, ...]

    def to_json(self) -> dict[str, Any]:
        return {"room_id": self.room_id, "receipts": [r.to_json() for r in self.receipts]}


@dataclass(frozen=True)
class FiguresUpdate:
    """An extension's call figures in this process changed (after a call or ping): calls,
    ok, errors by code, timeouts, crashes, restarts, workers, latency percentiles. Live only."""

    extension_id: str
    figures: dict[str, Any]


Update = TimelineUpdate | RoomsUpdate | Resync | TypingUpdate | ReceiptsUpdate | FiguresUpdate
"""What a subscription yields (`kumix.app.kumix.Kumix.subscribe`)."""


@dataclass(frozen=True)
class TimelinePage:
    """A slice of one room's timeline, oldest first. `before`/`after` are the cursors to
    pass for the next older or newer page (None: nothing more held locally or upstream)."""

    room_id: str
    updates: list[TimelineUpdate]
    before: int | None
    after: int | None

    @property
    def events(self) -> list[Event]:
        return [u.event for u in self.updates]


@dataclass(frozen=True)
class SearchHit:
    event_id: str
    room_id: str
    sender: str
    ts: int
    snippet: str

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "room_id": self.room_id, "sender": self.sender, "ts": self.ts,
                "snippet": self.snippet}


@dataclass(frozen=True)
class DeviceHolder:
    """Another Kumix process using this account's device (`pid`, `command`), or an unknown
    one (both None); what this process does instead of using the device is its own choice."""

    pid: int | None
    command: str | None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command} if self.pid is not None else {}
