"""The one module that talks to sqlite3.

Every change runs in one `BEGIN IMMEDIATE` transaction, so a crash mid-write leaves the
previous committed state (WAL journal, `synchronous=FULL`). Two Kumix processes writing at
once serialise on SQLite's lock; one that waits longer than `BUSY_TIMEOUT_MS` gets a
`StateBusy` error instead of a hang. Each store component owns its tables and migrates
them itself through `Migrations`, so components never edit each other's schema.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kumix.core.errors import KumixError, StateBusy, StateCorrupt

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

BUSY_TIMEOUT_MS = 10_000
"""Long enough for any Kumix write (all are small) to finish in another process."""

Row = sqlite3.Row


@dataclass(frozen=True)
class Migrations:
    """Ordered schema steps of one component; step N brings it to version N+1."""

    component: str
    steps: Sequence[str]


def _map_error(exc: sqlite3.Error) -> KumixError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StateBusy(f"local state is locked by another Kumix process: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "file is not a database" in text
    ):
        return StateCorrupt(f"local state database is unreadable: {text}")
    return KumixError(f"local state error: {text}")


class Database:
    """A connection to one SQLite file, opened with the durability settings Kumix needs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file 0600 before SQLite does, so no window exists where it is world-readable.
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise StateCorrupt(f"local state file {str(path)!r} cannot be opened: {exc.strerror}") from None
        try:
            # A FIFO or device in its place would make SQLite block or fail obscurely.
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateCorrupt(f"local state file {str(path)!r} is not a regular file")
        finally:
            os.close(fd)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise _map_error(exc) from None
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self, migrations: Migrations) -> None:
        with self.transaction() as tx:
            row = tx.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (migrations.component,)
            ).fetchone()
            current = int(row["version"]) if row else 0
            if current > len(migrations.steps):
                raise StateCorrupt(
                    f"state for {migrations.component!r} is version {current}, newer than this Kumix"
                )
            for step in migrations.steps[current:]:
                tx.executescript_in_tx(step)
            tx.execute(
                "INSERT INTO schema_versions(component, version) VALUES (?, ?)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (migrations.component, len(migrations.steps)),
            )

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of change: committed on success, rolled back on any error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _map_error(exc) from None
            try:
                yield Transaction(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise _map_error(exc) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise _map_error(exc) from None


class Transaction:
    """Statements inside one open transaction; errors arrive as Kumix errors."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _map_error(exc) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        try:
            return self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _map_error(exc) from None

    def executescript_in_tx(self, script: str) -> None:
        """Run several `;`-separated statements inside the current transaction.

        sqlite3.executescript would COMMIT first, breaking atomicity of a migration.
        """
        for statement in _split_statements(script):
            self.execute(statement)


def _split_statements(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
