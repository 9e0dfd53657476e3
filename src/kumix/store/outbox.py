"""Durable outbox: every outgoing event is written here before any byte goes to the network.

An entry is created with its transaction id in one transaction, then moved through the
life cycle of `kumix.core.outbox` by the sender. Nothing is deleted on success: a `sent`
row records the event id the homeserver gave, which is what tests and `kumix send --json`
report, and what lets a later run see that a message is already delivered.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from kumix.core.errors import KumixError
from kumix.core.outbox import OutboxEntry, OutboxSignal, OutboxState, transition
from kumix.store.database import Database, Migrations, Row

MIGRATIONS = Migrations(
    component="outbox",
    steps=[
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            txn_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            content TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            event_id TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX outbox_open ON outbox(state, seq) WHERE state IN ('pending', 'sending');
        """,
        # An error's code, message and details as fields. Rows written before keep their
        # `error` text (nothing local is dropped) and get fields parsed from it: a failure
        # was stored as "code: message", a retry as the message alone (always transient).
        """
        ALTER TABLE outbox ADD COLUMN error_code TEXT;
        ALTER TABLE outbox ADD COLUMN error_message TEXT;
        ALTER TABLE outbox ADD COLUMN error_details TEXT;
        UPDATE outbox SET
            error_code = CASE
                WHEN state = 'failed' AND instr(error, ': ') > 1 THEN substr(error, 1, instr(error, ': ') - 1)
                WHEN state = 'failed' THEN 'internal'
                ELSE 'unavailable' END,
            error_message = CASE
                WHEN state = 'failed' AND instr(error, ': ') > 1 THEN substr(error, instr(error, ': ') + 2)
                ELSE error END
            WHERE error IS NOT NULL;
        """,
    ],
)


def new_txn_id() -> str:
    # Random, so two Kumix processes of one device never pick the same id.
    return "kumix-" + uuid.uuid4().hex


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def enqueue(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str | None = None) -> OutboxEntry:
        txn = txn_id or new_txn_id()
        now = time.time()
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO outbox(txn_id, room_id, event_type, content, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (txn, room_id, event_type, json.dumps(content), now, now),
            )
        entry = self.get(txn)
        assert entry is not None
        return entry

    def get(self, txn_id: str) -> OutboxEntry | None:
        rows = self._db.query("SELECT * FROM outbox WHERE txn_id = ?", (txn_id,))
        return _entry(rows[0]) if rows else None

    def open_entries(self) -> list[OutboxEntry]:
        """Pending or mid-send entries, oldest first: delivery keeps the order they were written."""
        return [_entry(r) for r in self._db.query(
            "SELECT * FROM outbox WHERE state IN ('pending', 'sending') ORDER BY seq")]

    def all_entries(self) -> list[OutboxEntry]:
        return [_entry(r) for r in self._db.query("SELECT * FROM outbox ORDER BY seq")]

    def recover(self) -> int:
        """At start-up: entries left `sending` by a run that died go back to `pending`."""
        with self._db.transaction() as tx:
            rows = tx.execute("SELECT txn_id, state FROM outbox WHERE state = 'sending'").fetchall()
            for r in rows:
                tx.execute("UPDATE outbox SET state = ?, updated_at = ? WHERE txn_id = ?",
                           (transition(r["state"], OutboxSignal.RECOVER), time.time(), r["txn_id"]))
            return len(rows)

    def _move(self, txn_id: str, signal: OutboxSignal, **fields: Any) -> OutboxState:
        with self._db.transaction() as tx:
            row = tx.execute("SELECT state FROM outbox WHERE txn_id = ?", (txn_id,)).fetchone()
            if row is None:
                raise KeyError(txn_id)
            new = transition(row["state"], signal)
            sets = ["state = ?", "updated_at = ?"]
            params: list[Any] = [str(new), time.time()]
            for name, value in fields.items():
                sets.append(f"{name} = ?")
                params.append(value)
            if signal is OutboxSignal.ATTEMPT:
                sets.append("attempts = attempts + 1")
            tx.execute(f"UPDATE outbox SET {', '.join(sets)} WHERE txn_id = ?", (*params, txn_id))  # noqa: S608
            return new

    def mark_sending(self, txn_id: str) -> None:
        self._move(txn_id, OutboxSignal.ATTEMPT)

    def mark_sent(self, txn_id: str, event_id: str) -> None:
        self._move(txn_id, OutboxSignal.ACKED, event_id=event_id, error=None, error_code=None, error_message=None,
                   error_details=None)

    def mark_retry(self, txn_id: str, error: KumixError) -> None:
        self._move(txn_id, OutboxSignal.TRANSIENT, **_error_fields(error))

    def mark_failed(self, txn_id: str, error: KumixError) -> None:
        self._move(txn_id, OutboxSignal.PERMANENT, **_error_fields(error))

    def forget_everything(self) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM outbox")


MAX_ERROR_MESSAGE_CHARS = 500


def _error_fields(error: KumixError) -> dict[str, Any]:
    return {"error_code": error.code, "error_message": error.message[:MAX_ERROR_MESSAGE_CHARS],
            "error_details": json.dumps(error.details, default=str) if error.details else None}


def _entry(r: Row) -> OutboxEntry:
    details = json.loads(r["error_details"]) if r["error_details"] else None
    return OutboxEntry(
        seq=int(r["seq"]), txn_id=r["txn_id"], room_id=r["room_id"], event_type=r["event_type"],
        content=json.loads(r["content"]), state=OutboxState(r["state"]), attempts=int(r["attempts"]),
        event_id=r["event_id"], error_code=r["error_code"], error_message=r["error_message"],
        error_details=details if isinstance(details, dict) else None,
    )
