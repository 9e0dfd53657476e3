"""Sans-I/O parts driven with hostile input: backoff policy, outbox life cycle, vault, search queries."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kumix.core.errors import Unauthorized
from kumix.core.outbox import IllegalTransition, OutboxSignal, OutboxState, transition
from kumix.matrix.backoff import MAX_DELAY_S, MAX_RETRY_AFTER_S, Backoff
from kumix.store.database import Database
from kumix.store.search import SearchIndex
from kumix.store.vault import ENV_PASSPHRASE_FILE, Vault, VaultCorrupt


@given(st.lists(st.one_of(st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                          st.text(max_size=5)), max_size=40), st.integers(0, 2**32))
def test_backoff_stays_within_bounds_whatever_the_server_says(retry_afters: list[object], seed: int) -> None:
    b = Backoff(rng=random.Random(seed))
    for ra in retry_afters:
        d = b.next_delay(ra)  # type: ignore[arg-type]
        assert 0 <= d <= max(MAX_DELAY_S, MAX_RETRY_AFTER_S)


def test_backoff_grows_honours_retry_after_and_resets() -> None:
    b = Backoff(rng=random.Random(1))
    ceilings = [min(MAX_DELAY_S, 0.5 * 2**i) for i in range(10)]
    delays = [b.next_delay() for _ in range(10)]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True))
    assert b.next_delay(retry_after_ms=7000) >= 7.0
    b.reset()
    assert b.next_delay() <= 0.5


def test_outbox_life_cycle_allows_only_its_transitions() -> None:
    assert transition("pending", "attempt") is OutboxState.SENDING
    assert transition("sending", "transient") is OutboxState.PENDING
    assert transition("sending", "recover") is OutboxState.PENDING
    assert transition("sending", "acked") is OutboxState.SENT
    for state, signal in [("sent", "attempt"), ("failed", "attempt"), ("pending", "acked"), ("bogus", "attempt"),
                          ("sent", "transient")]:
        with pytest.raises(IllegalTransition):
            transition(state, signal)
    assert {s.value for s in OutboxSignal} == {"attempt", "acked", "transient", "permanent", "recover"}


@given(st.text(max_size=200))
def test_any_search_text_is_a_valid_fts_query(text: str) -> None:
    db = Database(Path(os.environ.get("TMPDIR", "/tmp")) / f"kumix-fts-{os.getpid()}.db")
    try:
        SearchIndex(db).search(text)  # never an FTS5 syntax error, whatever the user typed
    finally:
        db.close()


def _passfile(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / f"pass-{random.random()}"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_vault_seals_secrets_and_opens_only_with_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "vault.json"
    env = {ENV_PASSPHRASE_FILE: str(_passfile(tmp_path, "right passphrase\n"))}
    Vault(path, env, interactive=False).create({"access_token": "syt_SECRET_TOKEN", "pickle_key": "PICKLEKEY"})
    raw = path.read_bytes()
    assert b"syt_SECRET_TOKEN" not in raw
    assert b"PICKLEKEY" not in raw
    assert path.stat().st_mode & 0o777 == 0o600
    assert Vault(path, env, interactive=False).load()["access_token"] == "syt_SECRET_TOKEN"

    wrong = {ENV_PASSPHRASE_FILE: str(_passfile(tmp_path, "wrong passphrase"))}
    with pytest.raises(Unauthorized):
        Vault(path, wrong, interactive=False).load()
    with pytest.raises(Unauthorized):
        Vault(path, {}, interactive=False).load()  # no key source, no terminal: a clear refusal
    loose = {ENV_PASSPHRASE_FILE: str(_passfile(tmp_path, "right passphrase", 0o644))}
    with pytest.raises(Unauthorized, match="readable by others"):
        Vault(path, loose, interactive=False).load()

    doc = json.loads(raw)
    doc["ciphertext"] = doc["ciphertext"][:-4] + "AAAA"
    path.write_text(json.dumps(doc))
    with pytest.raises(Unauthorized):
        Vault(path, env, interactive=False).load()  # tampering fails authentication
    doc["kdf"]["m"] = 2**40
    path.write_text(json.dumps(doc))
    with pytest.raises(VaultCorrupt):
        Vault(path, env, interactive=False).load()  # hostile KDF cost refused before any work


def test_vault_without_any_key_source_explains_how_to_supply_one(tmp_path: Path) -> None:
    with pytest.raises(Unauthorized, match=ENV_PASSPHRASE_FILE):
        Vault(tmp_path / "v.json", {}, interactive=False).create({"access_token": "x"})
    assert not (tmp_path / "v.json").exists()


def test_vault_refuses_a_passphrase_path_that_is_no_text_file_with_a_typed_error(tmp_path: Path) -> None:
    """A directory, a FIFO or undecodable bytes are the user's to fix: `unauthorized` with
    the reason, never an IsADirectoryError, a hang or a UnicodeDecodeError."""
    path = tmp_path / "vault.json"
    with pytest.raises(Unauthorized, match="not a regular file"):
        Vault(path, {ENV_PASSPHRASE_FILE: str(tmp_path)}, interactive=False).create({"access_token": "x"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(Unauthorized, match="not a regular file"):
        Vault(path, {ENV_PASSPHRASE_FILE: str(fifo)}, interactive=False).create({"access_token": "x"})
    binary = tmp_path / "binary-pass"
    binary.write_bytes(b"\xff\xfe passphrase")
    binary.chmod(0o600)
    with pytest.raises(Unauthorized, match="not UTF-8"):
        Vault(path, {ENV_PASSPHRASE_FILE: str(binary)}, interactive=False).create({"access_token": "x"})
    assert not path.exists()


def test_vault_prompt_ended_with_ctrl_d_is_unauthorized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-D at the terminal prompt makes getpass raise EOFError: a refusal, not a crash."""
    import getpass

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", eof)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    with pytest.raises(Unauthorized, match="no vault passphrase entered"):
        Vault(tmp_path / "v.json", {}, interactive=True).create({"access_token": "x"})
    assert not (tmp_path / "v.json").exists()


def test_room_avatars_and_space_links_survive_the_migration_and_a_reopen(tmp_path: Path) -> None:
    from kumix.core.models import Room
    from kumix.store.database import Migrations
    from kumix.store.timeline import MIGRATIONS, TimelineStore

    path = tmp_path / "state.db"
    old = Database(path)
    old.migrate(Migrations(MIGRATIONS.component, MIGRATIONS.steps[:2]))  # a store from before spaces
    with old.transaction() as tx:
        tx.execute("INSERT INTO matrix_rooms(room_id, name, encrypted, membership) VALUES ('!old:x', 'Old', 0, 'join')")
    old.close()
    db = Database(path)
    store = TimelineStore(db)
    assert store.room("!old:x") == Room("!old:x", "Old", None, False, "join")
    space = Room("!s:x", "S", None, False, "join", avatar_url="mxc://x/a", is_space=True,
                 children=("!a:x", "!b:x"))
    child = Room("!a:x", "A", None, False, "join", parents=("!s:x",))
    with db.transaction() as tx:
        TimelineStore.put_rooms(tx, [space, child], {}, [])
    with db.transaction() as tx:  # a later sync: the link removed, the avatar gone
        TimelineStore.put_rooms(tx, [Room("!s:x", "S", None, False, "join", is_space=True, children=("!b:x",))],
                                {}, [])
    db.close()
    db = Database(path)
    store = TimelineStore(db)
    assert store.room("!s:x") == Room("!s:x", "S", None, False, "join", is_space=True, children=("!b:x",))
    assert store.room("!a:x") == child
    db.close()
