"""The data directory's end-to-end trust settings: "exclude insecure devices" (MSC4153: room
keys are shared only with devices their owner cross-signed), and the master key of each user
this device verified (pinned: a later change is an identity change, never silently trusted).

Default: on for a new data directory (the direction Element has taken); a data directory
that already had an account when this setting appeared keeps the old behaviour (off) until
the user turns it on, so an upgrade does not silently stop messages reaching someone."""

from __future__ import annotations

from kumix.store.database import Database, Migrations

MIGRATIONS = Migrations(
    component="trust_settings",
    steps=[
        """
        CREATE TABLE trust_settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE pinned_identities (
            user_id TEXT PRIMARY KEY,
            master_key TEXT NOT NULL
        );
        """
    ],
)

EXCLUDE_INSECURE = "exclude_insecure_devices"


class TrustSettings:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def exclude_insecure_devices(self, *, had_account: bool) -> bool:
        """The setting; on first read it is fixed to the default for this data directory."""
        rows = self._db.query("SELECT value FROM trust_settings WHERE name = ?", (EXCLUDE_INSECURE,))
        if rows:
            return str(rows[0]["value"]) == "on"
        self.set_exclude_insecure_devices(not had_account)
        return not had_account

    def set_exclude_insecure_devices(self, on: bool) -> None:
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO trust_settings (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                       (EXCLUDE_INSECURE, "on" if on else "off"))

    def pinned(self, user_id: str) -> str | None:
        rows = self._db.query("SELECT master_key FROM pinned_identities WHERE user_id = ?", (user_id,))
        return str(rows[0]["master_key"]) if rows else None

    def pin(self, user_id: str, master_key: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO pinned_identities (user_id, master_key) VALUES (?, ?) "
                       "ON CONFLICT (user_id) DO UPDATE SET master_key = excluded.master_key", (user_id, master_key))
