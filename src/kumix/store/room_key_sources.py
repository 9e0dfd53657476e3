"""Which room keys this device holds from a source that cannot vouch for their sender: a
key backup (anyone who knows the backup's public key, the homeserver included, can write
an entry claiming any sender). A message decrypted with such a key cannot be `verified`
(`kumix.matrix.sender_trust.from_insecure_source`); the mark survives restarts, since a
held event may be decrypted with the key much later."""

from __future__ import annotations

from collections.abc import Iterable

from kumix.store.database import Database, Migrations

MIGRATIONS = Migrations(
    component="room_key_sources",
    steps=[
        """
        CREATE TABLE insecure_room_keys (
            session_id TEXT PRIMARY KEY,
            source TEXT NOT NULL
        );
        """
    ],
)


class RoomKeySources:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def mark_insecure(self, session_ids: Iterable[str], source: str) -> None:
        with self._db.transaction() as tx:
            tx.executemany("INSERT INTO insecure_room_keys (session_id, source) VALUES (?, ?) "
                           "ON CONFLICT (session_id) DO NOTHING", [(sid, source) for sid in session_ids])

    def insecure(self, session_ids: Iterable[str]) -> set[str]:
        """Those of `session_ids` whose room key came from an insecure source."""
        wanted = sorted(set(session_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self._db.query(f"SELECT session_id FROM insecure_room_keys WHERE session_id IN "  # noqa: S608
                                  f"({','.join('?' * len(chunk))})", tuple(chunk))
            found.update(str(r["session_id"]) for r in rows)
        return found

    def forget_everything(self) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM insecure_room_keys")
