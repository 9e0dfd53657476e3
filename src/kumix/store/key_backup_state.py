"""Which room keys this device has uploaded to which key backup version, and from which
message index: what the backup loop still has to upload survives restarts, and a key
received later with an earlier index is uploaded again (it decrypts more)."""

from __future__ import annotations

from collections.abc import Iterable

from kumix.store.database import Database, Migrations

MIGRATIONS = Migrations(
    component="key_backup_state",
    steps=[
        """
        CREATE TABLE key_backup_uploaded (
            version TEXT NOT NULL,
            session_id TEXT NOT NULL,
            first_index INTEGER NOT NULL,
            PRIMARY KEY (version, session_id)
        );
        """
    ],
)


class KeyBackupState:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def uploaded(self, version: str) -> dict[str, int]:
        rows = self._db.query("SELECT session_id, first_index FROM key_backup_uploaded WHERE version = ?", (version,))
        return {str(r["session_id"]): int(r["first_index"]) for r in rows}

    def mark_uploaded(self, version: str, sessions: Iterable[tuple[str, int]]) -> None:
        with self._db.transaction() as tx:
            tx.executemany(
                "INSERT INTO key_backup_uploaded (version, session_id, first_index) VALUES (?, ?, ?) "
                "ON CONFLICT (version, session_id) DO UPDATE SET first_index = excluded.first_index",
                [(version, sid, idx) for sid, idx in sessions],
            )

    def forget_everything(self) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM key_backup_uploaded")
