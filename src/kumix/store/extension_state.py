"""What the user decided about extensions: enabled or disabled, and granted capabilities.

Only explicit decisions are stored; an extension without a row takes its default
(bundled: enabled when the policy allows it; external: disabled).
"""

from __future__ import annotations

import time

from kumix.store.database import Database, Migrations

MIGRATIONS = Migrations(
    component="extension_state",
    steps=[
        """
        CREATE TABLE extension_enabled (
            extension_id TEXT PRIMARY KEY,
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            changed_at REAL NOT NULL
        );
        CREATE TABLE extension_grants (
            extension_id TEXT NOT NULL,
            capability TEXT NOT NULL,
            source_path TEXT NOT NULL,
            granted_at REAL NOT NULL,
            PRIMARY KEY (extension_id, capability)
        );
        """,
        # An external extension's enable choice is bound to its resolved directory, like
        # its grants: another directory claiming the same id later must not inherit it.
        # NULL (bundled extensions, and rows written before this step) binds to no path.
        """
        ALTER TABLE extension_enabled ADD COLUMN source_path TEXT;
        """,
    ],
)


class ExtensionStateStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def enabled_choice(self, extension_id: str, source_path: str | None = None) -> bool | None:
        """The user's choice, or None when there is none. With `source_path` (external
        extensions) a choice made for another directory does not count."""
        rows = self._db.query(
            "SELECT enabled, source_path FROM extension_enabled WHERE extension_id = ?", (extension_id,)
        )
        if not rows:
            return None
        if source_path is not None and rows[0]["source_path"] != source_path:
            return None
        return bool(rows[0]["enabled"])

    def set_enabled(self, extension_id: str, enabled: bool, source_path: str | None = None) -> None:
        """Record a choice; pass `source_path` (the resolved directory) for an external
        extension so that the choice stays with that directory."""
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO extension_enabled(extension_id, enabled, changed_at, source_path)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(extension_id) DO UPDATE SET"
                " enabled = excluded.enabled, changed_at = excluded.changed_at,"
                " source_path = excluded.source_path",
                (extension_id, int(enabled), time.time(), source_path),
            )

    def grants(self, extension_id: str, source_path: str) -> frozenset[str]:
        """Grants count only for the directory they were given to: moving another
        extension under the same id elsewhere does not inherit them."""
        rows = self._db.query(
            "SELECT capability FROM extension_grants WHERE extension_id = ? AND source_path = ?",
            (extension_id, source_path),
        )
        return frozenset(str(r["capability"]) for r in rows)

    def grant(self, extension_id: str, capability: str, source_path: str) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO extension_grants(extension_id, capability, source_path, granted_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(extension_id, capability) DO UPDATE SET"
                " source_path = excluded.source_path, granted_at = excluded.granted_at",
                (extension_id, capability, source_path, time.time()),
            )

    def revoke(self, extension_id: str, capability: str) -> bool:
        with self._db.transaction() as tx:
            cur = tx.execute(
                "DELETE FROM extension_grants WHERE extension_id = ? AND capability = ?",
                (extension_id, capability),
            )
            return cur.rowcount > 0
