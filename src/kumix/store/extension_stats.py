"""Call figures of each proc extension, saved in the data directory across processes.

A host keeps live figures in memory (`extensions/proc/stats.py`); when an extension's session
ends (disable, host shutdown) the figures recorded since the last save are added here, so
`kumix ext info` — a process that made no call itself — shows what every Kumix process using
this data directory observed. Adding happens in one transaction, so two processes saving
at once both count.
"""

from __future__ import annotations

import json
import time

from kumix.store.database import Database, Migrations

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

LATENCY_WINDOW = 1_024
"""Percentiles describe the most recent calls across processes, as the live figures do."""

COUNTERS = ("calls", "ok", "timeouts", "crashes", "restarts")

MIGRATIONS = Migrations(
    component="extension_stats",
    steps=[
        """
        CREATE TABLE extension_stats (
            extension_id TEXT PRIMARY KEY,
            figures TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        """
    ],
)


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTERS, 0), "errors": {}, "latencies": []}


class ExtensionStatsStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(MIGRATIONS)

    def add(self, extension_id: str, delta: dict[str, Any]) -> None:
        """Add counts and latencies recorded since the previous save."""
        if not any(delta.get(key) for key in (*COUNTERS, "errors", "latencies")):
            return
        with self._db.transaction() as tx:
            row = tx.execute(
                "SELECT figures FROM extension_stats WHERE extension_id = ?", (extension_id,)
            ).fetchone()
            figures = _parse(row["figures"]) if row else _empty()
            for key in COUNTERS:
                figures[key] = int(figures[key]) + int(delta.get(key, 0))
            errors: dict[str, int] = figures["errors"]
            for code, count in dict(delta.get("errors", {})).items():
                errors[str(code)] = int(errors.get(str(code), 0)) + int(count)
            latencies = [*figures["latencies"], *(float(x) for x in delta.get("latencies", ()))]
            figures["latencies"] = latencies[-LATENCY_WINDOW:]
            tx.execute(
                "INSERT INTO extension_stats(extension_id, figures, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(extension_id) DO UPDATE SET figures = excluded.figures,"
                " updated_at = excluded.updated_at",
                (extension_id, json.dumps(figures), time.time()),
            )

    def load(self, extension_id: str) -> dict[str, Any]:
        """Saved figures: counters, errors by code and the latest latencies (seconds)."""
        rows = self._db.query("SELECT figures FROM extension_stats WHERE extension_id = ?", (extension_id,))
        return _parse(rows[0]["figures"]) if rows else _empty()


def _parse(text: str) -> dict[str, Any]:
    """Saved figures are Kumix's own writing; anything unexpected starts them afresh rather
    than failing `ext info`."""
    try:
        doc = json.loads(text)
    except ValueError:
        return _empty()
    if not isinstance(doc, dict):
        return _empty()
    figures = _empty()
    for key in COUNTERS:
        value = doc.get(key)
        figures[key] = value if isinstance(value, int) and value >= 0 else 0
    errors = doc.get("errors")
    if isinstance(errors, dict):
        figures["errors"] = {str(k): v for k, v in errors.items() if isinstance(v, int) and v >= 0}
    latencies = doc.get("latencies")
    if isinstance(latencies, list):
        figures["latencies"] = [float(x) for x in latencies if isinstance(x, int | float) and x >= 0]
    return figures
