"""Which UI extensions the user lets send messages without confirming each one.

Kept per extension (and, for an external extension, its resolved directory, like grants),
revocable on the extensions page. Without a row, every send is confirmed in the host UI.
"""

from __future__ import annotations

import time

from kumix.store.database import Database, Migrations

MIGRATIONS = Migrations(
    component="ui_send_approvals",
    steps=[
        """
        CREATE TABLE ui_send_approvals (
            extension_id TEXT PRIMARY KEY,
            source_path TEXT,
            approved_at REAL NOT NULL
        );
        """,
    ],
)


class SendApprovalStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def always_allowed(self, extension_id: str, source_path: str | None) -> bool:
        rows = self._db.query("SELECT source_path FROM ui_send_approvals WHERE extension_id = ?", (extension_id,))
        return bool(rows) and rows[0]["source_path"] == source_path

    def allow_always(self, extension_id: str, source_path: str | None) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO ui_send_approvals(extension_id, source_path, approved_at) VALUES (?, ?, ?)"
                " ON CONFLICT(extension_id) DO UPDATE SET source_path = excluded.source_path,"
                " approved_at = excluded.approved_at",
                (extension_id, source_path, time.time()),
            )

    def revoke(self, extension_id: str) -> bool:
        with self._db.transaction() as tx:
            return tx.execute("DELETE FROM ui_send_approvals WHERE extension_id = ?", (extension_id,)).rowcount > 0
