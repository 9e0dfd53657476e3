"""The Matrix session record, sync token, room list and timeline cache.

The sync token is written in the same transaction as the events of its batch, so after a
crash Kumix resumes from the last batch it fully stored: the server sends that batch
again, and events are keyed by event id, so nothing is lost or stored twice.
Events are ordered per room by `seq`: new ones from sync count up, older ones from
backward pagination count down, so one index gives the timeline in order. Separately,
`change` counts every write of an event row (insert, late decryption, edit, redaction)
across rooms: it is the cursor live subscribers resume from (`changes_since`).
"""

from __future__ import annotations

import json
from typing import Any

from kumix.core.models import Account, Attachment, Event, Room, TimelineUpdate
from kumix.store.database import Database, Migrations, Row, Transaction

MIGRATIONS = Migrations(
    component="timeline",
    steps=[
        """
        CREATE TABLE matrix_session (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE matrix_rooms (
            room_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            topic TEXT,
            encrypted INTEGER NOT NULL,
            membership TEXT NOT NULL,
            unread INTEGER NOT NULL DEFAULT 0,
            highlights INTEGER NOT NULL DEFAULT 0,
            is_direct INTEGER NOT NULL DEFAULT 0,
            alias TEXT,
            inviter TEXT,
            prev_batch TEXT
        );
        CREATE TABLE matrix_events (
            event_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            sender TEXT NOT NULL,
            ts INTEGER NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            html TEXT,
            msgtype TEXT,
            encrypted INTEGER NOT NULL,
            relates_to TEXT,
            reply_to TEXT,
            reaction_key TEXT,
            attachment TEXT,
            session_id TEXT,
            txn_id TEXT,
            source TEXT,
            edited INTEGER NOT NULL DEFAULT 0,
            redacted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX matrix_events_room_seq ON matrix_events(room_id, seq);
        CREATE INDEX matrix_events_seq ON matrix_events(seq);
        CREATE INDEX matrix_events_undecryptable ON matrix_events(session_id) WHERE kind = 'undecryptable';
        """,
        # The change cursor: every insert or change of a row (late decryption, edit,
        # redaction) gives it the next number, so "everything after cursor N" is one query
        # and a live subscriber that fell behind can resume exactly where it was.
        """
        ALTER TABLE matrix_events ADD COLUMN change INTEGER NOT NULL DEFAULT 0;
        UPDATE matrix_events SET change = rowid;
        CREATE INDEX matrix_events_change ON matrix_events(change);
        """,
        # Avatars and spaces (issue 12): children and parents as JSON lists of room ids.
        """
        ALTER TABLE matrix_rooms ADD COLUMN avatar TEXT;
        ALTER TABLE matrix_rooms ADD COLUMN is_space INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE matrix_rooms ADD COLUMN children TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE matrix_rooms ADD COLUMN parents TEXT NOT NULL DEFAULT '[]';
        """,
        # The shield: the trust of a decrypted event's sending device when it was decrypted
        # (kumix.matrix.sender_trust). Rows stored before have NULL: not judged.
        """
        ALTER TABLE matrix_events ADD COLUMN sender_trust TEXT;
        ALTER TABLE matrix_events ADD COLUMN sender_device TEXT;
        """,
    ],
)

_SESSION_KEYS = ("user_id", "device_id", "homeserver")
TEXT_KINDS = ("text", "file")


class TimelineStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    # -- session and token ---------------------------------------------------------------

    def account(self) -> Account | None:
        rows = {r["key"]: r["value"] for r in self._db.query("SELECT key, value FROM matrix_session")}
        if not all(k in rows for k in _SESSION_KEYS):
            return None
        return Account(user_id=rows["user_id"], device_id=rows["device_id"], homeserver=rows["homeserver"])

    def set_account(self, account: Account) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM matrix_session")
            for key in _SESSION_KEYS:
                tx.execute("INSERT INTO matrix_session(key, value) VALUES (?, ?)", (key, getattr(account, key)))

    def forget_everything(self) -> None:
        """Logout: the cache belonged to that session and must not outlive it."""
        with self._db.transaction() as tx:
            for table in ("matrix_session", "matrix_rooms", "matrix_events"):
                tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def sync_token(self) -> str | None:
        rows = self._db.query("SELECT value FROM matrix_session WHERE key = 'next_batch'")
        return str(rows[0]["value"]) if rows else None

    @staticmethod
    def set_sync_token(tx: Transaction, token: str) -> None:
        tx.execute(
            "INSERT INTO matrix_session(key, value) VALUES ('next_batch', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (token,),
        )

    # -- rooms ---------------------------------------------------------------------------

    @staticmethod
    def put_rooms(tx: Transaction, rooms: list[Room], prev_batches: dict[str, str], left: list[str],
                  limited: frozenset[str] = frozenset()) -> None:
        for r in rooms:
            tx.execute(
                "INSERT INTO matrix_rooms(room_id, name, topic, encrypted, membership, unread, highlights,"
                " is_direct, alias, inviter, avatar, is_space, children, parents)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(room_id) DO UPDATE SET name = excluded.name, topic = excluded.topic,"
                " encrypted = MAX(encrypted, excluded.encrypted), membership = excluded.membership,"
                " unread = excluded.unread, highlights = excluded.highlights,"
                " is_direct = MAX(is_direct, excluded.is_direct), alias = excluded.alias,"
                " inviter = excluded.inviter, avatar = excluded.avatar, is_space = excluded.is_space,"
                " children = excluded.children, parents = excluded.parents",
                (r.room_id, r.name, r.topic, int(r.encrypted), r.membership, r.unread_count,
                 r.highlight_count, int(r.is_direct), r.canonical_alias, r.inviter, r.avatar_url,
                 int(r.is_space), json.dumps(list(r.children)), json.dumps(list(r.parents))),
            )
        for room_id, token in prev_batches.items():
            # The first token points before the oldest event we hold; a gap (limited timeline)
            # moves it to the gap, so backward pagination fills the gap first.
            tx.execute(
                "UPDATE matrix_rooms SET prev_batch = ? WHERE room_id = ? AND (prev_batch IS NULL OR ?)",
                (token, room_id, int(room_id in limited)),
            )
        for room_id in left:
            tx.execute("UPDATE matrix_rooms SET membership = 'leave' WHERE room_id = ?", (room_id,))

    def mark_direct(self, room_id: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE matrix_rooms SET is_direct = 1 WHERE room_id = ?", (room_id,))

    def rooms(self, *, include_left: bool = False) -> list[Room]:
        sql = "SELECT * FROM matrix_rooms"
        if not include_left:
            sql += " WHERE membership != 'leave'"
        return [_room(r) for r in self._db.query(sql + " ORDER BY membership, name, room_id")]

    def room(self, room_id: str) -> Room | None:
        rows = self._db.query("SELECT * FROM matrix_rooms WHERE room_id = ?", (room_id,))
        return _room(rows[0]) if rows else None

    def room_by_alias(self, alias: str) -> Room | None:
        rows = self._db.query("SELECT * FROM matrix_rooms WHERE alias = ?", (alias,))
        return _room(rows[0]) if rows else None

    def prev_batch(self, room_id: str) -> str | None:
        rows = self._db.query("SELECT prev_batch FROM matrix_rooms WHERE room_id = ?", (room_id,))
        return rows[0]["prev_batch"] if rows and rows[0]["prev_batch"] else None

    @staticmethod
    def set_prev_batch(tx: Transaction, room_id: str, token: str | None) -> None:
        tx.execute("UPDATE matrix_rooms SET prev_batch = ? WHERE room_id = ?", (token, room_id))

    # -- events --------------------------------------------------------------------------

    @staticmethod
    def put_events(tx: Transaction, events: list[Event], *, older: bool = False) -> list[tuple[Event, bool]]:
        """Store events; returns those whose searchable text is new or changed, each with
        whether an earlier text existed (so the search index replaces instead of adds).

        `older` events (backward pagination) go before everything held for their room."""
        changed: list[tuple[Event, bool]] = []
        next_seq = int(tx.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM matrix_events").fetchone()["s"])
        for ev in events:
            if not ev.event_id:
                continue
            existing = tx.execute(
                "SELECT kind, body, redacted, sender_trust FROM matrix_events WHERE event_id = ?", (ev.event_id,)
            ).fetchone()
            if existing is not None:
                # Seen before (a re-sent batch after a crash, or an overlap with pagination).
                # Only a late decryption changes it.
                if existing["kind"] == "undecryptable" and ev.kind != "undecryptable":
                    tx.execute(
                        "UPDATE matrix_events SET kind = ?, body = ?, html = ?, msgtype = ?, relates_to = ?,"
                        " reply_to = ?, reaction_key = ?, attachment = ?, source = ?, change = ?,"
                        " sender_trust = ?, sender_device = ? WHERE event_id = ?",
                        (ev.kind, ev.body, ev.formatted_html, ev.msgtype, ev.relates_to, ev.reply_to,
                         ev.reaction_key, _attachment_json(ev.attachment), _kept_source(ev), _next_change(tx),
                         ev.sender_trust, ev.sender_device, ev.event_id),
                    )
                    changed.extend(_apply_relation(tx, ev))
                    if ev.kind in TEXT_KINDS:
                        changed.append((ev, False))
                elif existing["kind"] == "undecryptable" and ev.sender_trust is not None \
                        and existing["sender_trust"] != ev.sender_trust:
                    # Decrypted now but withheld (exclude insecure devices): the row stays
                    # undecryptable, with its source kept for a later retry, and says why.
                    tx.execute("UPDATE matrix_events SET sender_trust = ?, sender_device = ?, change = ?"
                               " WHERE event_id = ?",
                               (ev.sender_trust, ev.sender_device, _next_change(tx), ev.event_id))
                continue
            if older:
                seq = int(tx.execute(
                    "SELECT COALESCE(MIN(seq), 0) - 1 AS s FROM matrix_events WHERE room_id = ?", (ev.room_id,)
                ).fetchone()["s"])
            else:
                seq, next_seq = next_seq, next_seq + 1
            tx.execute(
                "INSERT INTO matrix_events(event_id, room_id, seq, sender, ts, kind, body, html, msgtype,"
                " encrypted, relates_to, reply_to, reaction_key, attachment, session_id, txn_id, source, change,"
                " sender_trust, sender_device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ev.event_id, ev.room_id, seq, ev.sender, ev.origin_ts, ev.kind, ev.body,
                 ev.formatted_html, ev.msgtype, int(ev.encrypted), ev.relates_to, ev.reply_to, ev.reaction_key,
                 _attachment_json(ev.attachment), ev.session_id, ev.transaction_id,
                 _kept_source(ev), _next_change(tx),
                 ev.sender_trust, ev.sender_device),
            )
            if ev.kind in TEXT_KINDS:
                changed.append((ev, False))
            changed.extend(_apply_relation(tx, ev))
        return changed

    def events(self, room_id: str, *, limit: int = 50, before_seq: int | None = None) -> list[Event]:
        """The newest `limit` events of a room (older than `before_seq`), oldest first."""
        if before_seq is None:
            rows = self._db.query(
                "SELECT * FROM matrix_events WHERE room_id = ? ORDER BY seq DESC LIMIT ?", (room_id, limit)
            )
        else:
            rows = self._db.query(
                "SELECT * FROM matrix_events WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (room_id, before_seq, limit),
            )
        return [_event(r) for r in reversed(rows)]

    def last_change(self) -> int:
        """The cursor of the newest change held; 0 for an empty timeline."""
        rows = self._db.query("SELECT COALESCE(MAX(change), 0) AS c FROM matrix_events")
        return int(rows[0]["c"])

    def changes_since(self, cursor: int, *, rooms: frozenset[str] | None = None,
                      limit: int = 1000) -> list[TimelineUpdate]:
        """Events written or changed after `cursor`, in the order of their changes."""
        rows = self._db.query(
            "SELECT * FROM matrix_events WHERE change > ? ORDER BY change LIMIT ?", (cursor, limit))
        updates = [TimelineUpdate(int(r["change"]), _event(r)) for r in rows]
        if rooms is not None:
            updates = [u for u in updates if u.event.room_id in rooms]
        return updates

    def page(self, room_id: str, *, before_seq: int | None = None, after_seq: int | None = None,
             limit: int = 50) -> list[tuple[int, TimelineUpdate]]:
        """Up to `limit` events of a room in timeline order, each with its `seq` (position)."""
        if after_seq is not None:
            rows = self._db.query(
                "SELECT * FROM matrix_events WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (room_id, after_seq, limit))
        else:
            rows = list(reversed(self._db.query(
                "SELECT * FROM matrix_events WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (room_id, before_seq if before_seq is not None else 2**62, limit))))
        return [(int(r["seq"]), TimelineUpdate(int(r["change"]), _event(r))) for r in rows]

    def set_homeserver(self, url: str) -> None:
        """The same homeserver (same account, same device) answers at a new address."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE matrix_session SET value = ? WHERE key = 'homeserver'", (url,))

    def event(self, event_id: str) -> Event | None:
        rows = self._db.query("SELECT * FROM matrix_events WHERE event_id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    def undecryptable(self, session_ids: frozenset[str] | None = None) -> list[Event]:
        rows = self._db.query("SELECT * FROM matrix_events WHERE kind = 'undecryptable' ORDER BY seq")
        evs = [_event(r) for r in rows]
        if session_ids is not None:
            evs = [e for e in evs if e.session_id in session_ids]
        return evs

    def count_events(self, room_id: str, body: str) -> int:
        rows = self._db.query(
            "SELECT COUNT(*) AS n FROM matrix_events WHERE room_id = ? AND body = ? AND kind = 'text'", (room_id, body)
        )
        return int(rows[0]["n"])


def _apply_relation(tx: Transaction, ev: Event) -> list[tuple[Event, bool]]:
    """Edits replace the text of their target; redactions erase it."""
    if ev.kind == "edit" and ev.relates_to:
        # Relations only count inside their own room (the spec's rule; Synapse enforces it for
        # what it can see, but not for the relation inside an encrypted payload).
        target = tx.execute(
            "SELECT * FROM matrix_events WHERE event_id = ? AND room_id = ? AND redacted = 0",
            (ev.relates_to, ev.room_id),
        ).fetchone()
        # Only the original sender may edit: a forged edit from someone else is ignored.
        if target is not None and target["sender"] == ev.sender and target["kind"] == "text":
            tx.execute(
                "UPDATE matrix_events SET body = ?, html = ?, edited = 1, change = ? WHERE event_id = ?",
                (ev.body, ev.formatted_html, _next_change(tx), ev.relates_to),
            )
            edited = _event(target)
            return [(Event(**{**edited.__dict__, "body": ev.body, "formatted_html": ev.formatted_html}), True)]
    if ev.kind == "redaction" and ev.relates_to:
        # Same room only: a redaction arriving in one room must not erase a message of another.
        tx.execute(
            "UPDATE matrix_events SET body = '', html = NULL, attachment = NULL, redacted = 1, change = ?"
            " WHERE event_id = ? AND room_id = ?",
            (_next_change(tx), ev.relates_to, ev.room_id),
        )
        target_row = tx.execute(
            "SELECT * FROM matrix_events WHERE event_id = ? AND room_id = ?", (ev.relates_to, ev.room_id)
        ).fetchone()
        if target_row is not None:
            return [(_event(target_row), True)]
    return []


def _kept_source(ev: Event) -> str | None:
    """An undecryptable event's raw source (for a retry) or a poll's `{type, content}`."""
    return json.dumps(ev.source) if ev.kind in ("undecryptable", "other") and ev.source else None


def _next_change(tx: Transaction) -> int:
    return int(tx.execute("SELECT COALESCE(MAX(change), 0) + 1 AS c FROM matrix_events").fetchone()["c"])


def _attachment_json(a: Attachment | None) -> str | None:
    if a is None:
        return None
    return json.dumps({"url": a.url, "name": a.name, "mimetype": a.mimetype, "size": a.size,
                       "encryption": a.encryption})


def _room(r: Row) -> Room:
    return Room(
        room_id=r["room_id"], name=r["name"], topic=r["topic"], encrypted=bool(r["encrypted"]),
        membership=r["membership"], unread_count=int(r["unread"]), highlight_count=int(r["highlights"]),
        is_direct=bool(r["is_direct"]), canonical_alias=r["alias"], inviter=r["inviter"],
        avatar_url=r["avatar"], is_space=bool(r["is_space"]),
        children=tuple(json.loads(r["children"])), parents=tuple(json.loads(r["parents"])),
    )


def _event(r: Row) -> Event:
    att: Attachment | None = None
    if r["attachment"]:
        doc: dict[str, Any] = json.loads(r["attachment"])
        att = Attachment(url=doc["url"], name=doc["name"], mimetype=doc.get("mimetype"), size=doc.get("size"),
                         encryption=doc.get("encryption"))
    return Event(
        event_id=r["event_id"], room_id=r["room_id"], sender=r["sender"], origin_ts=int(r["ts"]), kind=r["kind"],
        body=r["body"], formatted_html=r["html"], msgtype=r["msgtype"], encrypted=bool(r["encrypted"]),
        relates_to=r["relates_to"], reply_to=r["reply_to"], reaction_key=r["reaction_key"], attachment=att,
        session_id=r["session_id"], transaction_id=r["txn_id"],
        source=json.loads(r["source"]) if r["source"] else None,
        sender_trust=r["sender_trust"], sender_device=r["sender_device"],
    )


def event_seq(db: Database, event_id: str) -> int | None:
    rows = db.query("SELECT seq FROM matrix_events WHERE event_id = ?", (event_id,))
    return int(rows[0]["seq"]) if rows else None
