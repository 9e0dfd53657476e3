"""Local full-text search (SQLite FTS5) over messages Kumix has decrypted.

The homeserver cannot search encrypted rooms (it never sees the text), so Kumix indexes
what it decrypts, locally. Edits replace the indexed text; redactions remove it.
"""

from __future__ import annotations

from typing import Any

from kumix.core.models import Event, SearchHit
from kumix.store.database import Database, Migrations, Transaction

MIGRATIONS = Migrations(
    component="search",
    steps=[
        """
        CREATE VIRTUAL TABLE message_search USING fts5(
            body,
            event_id UNINDEXED,
            room_id UNINDEXED,
            sender UNINDEXED,
            ts UNINDEXED,
            tokenize = 'unicode61 remove_diacritics 2'
        );
        """
    ],
)

MAX_QUERY_CHARS = 1000
"""A search box, not a document: longer input is a mistake or an attempt to make FTS5
build a huge query plan."""


def fts_query(text: str) -> str:
    """Every word must appear; each is quoted so FTS5 operators in user input are just text."""
    # NUL ends a C string inside SQLite's FTS5 parser; other control characters are noise.
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text[:MAX_QUERY_CHARS])
    words = cleaned.split()
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


class SearchIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    @staticmethod
    def index(tx: Transaction, changed: list[tuple[Event, bool]]) -> None:
        for ev, replace in changed:
            if replace:
                tx.execute("DELETE FROM message_search WHERE event_id = ?", (ev.event_id,))
            if ev.body and ev.kind in ("text", "file"):
                tx.execute(
                    "INSERT INTO message_search(body, event_id, room_id, sender, ts) VALUES (?, ?, ?, ?, ?)",
                    (ev.body, ev.event_id, ev.room_id, ev.sender, ev.origin_ts),
                )

    def search(self, text: str, *, room_id: str | None = None, limit: int = 50) -> list[SearchHit]:
        query = fts_query(text)
        if not query:
            return []
        sql = (
            "SELECT event_id, room_id, sender, ts, snippet(message_search, 0, '[', ']', '…', 12) AS snip"
            " FROM message_search WHERE message_search MATCH ?"
        )
        params: list[Any] = [query]
        if room_id is not None:
            sql += " AND room_id = ?"
            params.append(room_id)
        sql += " ORDER BY rank LIMIT ?"
        params.append(limit)
        return [
            SearchHit(event_id=r["event_id"], room_id=r["room_id"], sender=r["sender"], ts=int(r["ts"]),
                      snippet=r["snip"])
            for r in self._db.query(sql, params)
        ]

    def forget_everything(self) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM message_search")
