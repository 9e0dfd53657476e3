"""Enable/disable state: WAL, atomic changes, crash safety and concurrent writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kumix.core.errors import StateBusy
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.conftest import run_kumix


def test_database_uses_wal_and_private_files(data_dir: Path) -> None:
    with Database(data_dir / "state.db") as db:
        ExtensionStateStore(db).set_enabled("x", True)
        mode = db.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    assert (data_dir / "state.db").stat().st_mode & 0o777 == 0o600


def test_failed_transaction_leaves_previous_state(data_dir: Path) -> None:
    with Database(data_dir / "state.db") as db:
        store = ExtensionStateStore(db)
        store.set_enabled("x", True)
        with pytest.raises(RuntimeError), db.transaction() as tx:
            tx.execute("UPDATE extension_enabled SET enabled = 0 WHERE extension_id = 'x'")
            raise RuntimeError("crash in the middle")
        assert store.enabled_choice("x") is True


def test_killed_writer_never_corrupts_or_half_applies(data_dir: Path) -> None:
    """A process SIGKILLed between the write and COMMIT leaves the committed state intact."""
    db_path = data_dir / "state.db"
    with Database(db_path) as db:
        ExtensionStateStore(db).set_enabled("x", True)
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from kumix.store.database import Database
        from kumix.store.extension_state import ExtensionStateStore
        db = Database(Path({str(db_path)!r}))
        ExtensionStateStore(db)
        with db.transaction() as tx:
            tx.execute("UPDATE extension_enabled SET enabled = 0")
            tx.execute("INSERT INTO extension_enabled(extension_id, enabled, changed_at) VALUES ('y', 1, 0)")
            sys.stdout.write("written\\n"); sys.stdout.flush()
            sys.stdin.readline()  # wait here, mid-transaction, until killed
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "written\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with Database(db_path) as db:
        store = ExtensionStateStore(db)
        assert store.enabled_choice("x") is True
        assert store.enabled_choice("y") is None
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"


def test_writer_blocked_too_long_gets_state_busy(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kumix.store.database as database

    db_path = data_dir / "state.db"
    holder = Database(db_path)
    ExtensionStateStore(holder)
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)
    other = Database(db_path)
    with holder.transaction(), pytest.raises(StateBusy) as info:
        ExtensionStateStore(other).set_enabled("x", True)
    assert info.value.code == "state_busy"
    holder.close()
    other.close()


def test_two_kumix_processes_changing_state_at_once_both_succeed(data_dir: Path) -> None:
    def toggle(args: tuple[str, str]) -> list[int]:
        verb, ext = args
        codes = []
        for _ in range(5):
            codes.append(run_kumix("--data-dir", str(data_dir), "ext", verb, ext).returncode)
        return codes

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(toggle, [("disable", "markdown-renderer"), ("disable", "theme-default")]))
    assert results == [[0] * 5, [0] * 5]
    conn = sqlite3.connect(data_dir / "state.db")
    rows = dict(conn.execute("SELECT extension_id, enabled FROM extension_enabled").fetchall())
    conn.close()
    assert rows == {"markdown-renderer": 0, "theme-default": 0}


def test_newer_schema_is_refused_not_downgraded(data_dir: Path) -> None:
    with Database(data_dir / "state.db") as db:
        ExtensionStateStore(db)
        with db.transaction() as tx:
            tx.execute("UPDATE schema_versions SET version = 99 WHERE component = 'extension_state'")
    result = run_kumix("--data-dir", str(data_dir), "--json", "ext", "list")
    assert result.returncode == 1
    assert '"state_corrupt"' in result.stdout


def test_outbox_rows_of_the_first_schema_keep_their_error_as_fields(data_dir: Path) -> None:
    """Outbox migration 2: errors were stored as "code: message" (a failure) or the message
    alone (a retry); existing rows get code, message and details fields, and nothing is lost."""
    from kumix.core.errors import Forbidden, NotFound
    from kumix.store.database import Migrations
    from kumix.store.outbox import MIGRATIONS, Outbox

    path = data_dir / "state.db"
    with Database(path) as db:
        db.migrate(Migrations("outbox", MIGRATIONS.steps[:1]))
        with db.transaction() as tx:
            for txn, state, error in (("t1", "failed", "forbidden: not allowed in this room"),
                                      ("t2", "pending", "homeserver unreachable (ClientError)"),
                                      ("t3", "sent", None), ("t4", "failed", "no code here")):
                tx.execute("INSERT INTO outbox(txn_id, room_id, event_type, content, state, error, created_at,"
                           " updated_at) VALUES (?, '!r:x', 'm.room.message', '{}', ?, ?, 0, 0)", (txn, state, error))
    with Database(path) as db:
        outbox = Outbox(db)
        failed, retried, sent, odd = (outbox.get(t) for t in ("t1", "t2", "t3", "t4"))
        assert failed is not None
        assert retried is not None
        assert sent is not None
        assert odd is not None
        assert (failed.error_code, failed.error_message) == ("forbidden", "not allowed in this room")
        assert isinstance(failed.error(), Forbidden)
        assert (retried.error_code, retried.error_message) == ("unavailable", "homeserver unreachable (ClientError)")
        assert sent.error() is None
        assert (odd.error_code, odd.error_message) == ("internal", "no code here")
        assert db.query("SELECT error FROM outbox WHERE txn_id = 't1'")[0]["error"] == \
            "forbidden: not allowed in this room"  # the original text is kept
        # New failures are stored as fields, details included, and read back typed.
        entry = outbox.enqueue("!r:x", "m.room.message", {"body": "x"})
        outbox.mark_sending(entry.txn_id)
        outbox.mark_failed(entry.txn_id, NotFound("no such room", details={"errcode": "M_NOT_FOUND"}))
        again = outbox.get(entry.txn_id)
        assert again is not None
        error = again.error()
        assert isinstance(error, NotFound)
        assert error.details == {"errcode": "M_NOT_FOUND"}
        assert again.to_json()["error"] == {"code": "not_found", "message": "no such room",
                                            "details": {"errcode": "M_NOT_FOUND"}}


def test_timeline_rows_of_earlier_schemas_survive_the_shield_migration(data_dir: Path) -> None:
    """Timeline migration 4 adds each event's shield: events stored before keep everything
    and have none (not judged); new ones store and read theirs back, withheld ones too."""
    from kumix.core.models import Event
    from kumix.store.database import Migrations
    from kumix.store.timeline import MIGRATIONS, TimelineStore

    path = data_dir / "state.db"
    with Database(path) as db:
        db.migrate(Migrations("timeline", MIGRATIONS.steps[:3]))
        with db.transaction() as tx:
            tx.execute("INSERT INTO matrix_events(event_id, room_id, seq, sender, ts, kind, body, encrypted, change)"
                       " VALUES ('$old', '!r:x', 1, '@a:x', 5, 'text', 'kept as it was', 1, 1)")
    with Database(path) as db:
        store = TimelineStore(db)
        old = store.event("$old")
        assert old is not None
        assert (old.body, old.encrypted, old.sender_trust, old.sender_device) == ("kept as it was", True, None, None)
        assert "sender_trust" not in old.to_json()
        new = Event(event_id="$new", room_id="!r:x", sender="@b:x", origin_ts=6, kind="text", body="hi",
                    encrypted=True, sender_trust="unverified_identity", sender_device="DEV")
        held = Event(event_id="$held", room_id="!r:x", sender="@c:x", origin_ts=7, kind="undecryptable",
                     body="** withheld **", encrypted=True, sender_trust="not_cross_signed", sender_device="NIO")
        with db.transaction() as tx:
            TimelineStore.put_events(tx, [new, held])
        got, withheld = store.event("$new"), store.event("$held")
        assert got is not None
        assert withheld is not None
        assert got.to_json()["sender_trust"] == "unverified_identity"
        assert got.to_json()["sender_device"] == "DEV"
        assert (withheld.kind, withheld.sender_trust) == ("undecryptable", "not_cross_signed")
