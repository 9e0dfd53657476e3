"""`Vault.locked` / `Vault.unlock`: the passphrase given by the web page's unlock form, checked
against a vault sealed with it, without ever writing the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kumix.core.errors import VaultCorrupt, WrongPassphrase
from kumix.store.vault import Vault

SECRETS = {"access_token": "syt_UNLOCK_TOKEN", "pickle_key": "PICKLE"}


def sealed(tmp_path: Path) -> Path:
    path = tmp_path / "vault.json"
    Vault(path, {}, interactive=False).create(SECRETS, passphrase="right one")
    return path


def test_a_passphrase_vault_without_a_key_source_is_locked_until_the_right_passphrase(tmp_path: Path) -> None:
    path = sealed(tmp_path)
    raw = path.read_bytes()
    vault = Vault(path, {}, interactive=False)
    assert vault.locked()
    assert not Vault(tmp_path / "absent.json", {}, interactive=False).locked()
    assert not Vault(path, {}, interactive=True).locked(), "a terminal can ask"
    for wrong in ("right on", "right one ", ""):
        with pytest.raises(WrongPassphrase):
            vault.unlock(wrong)
        assert vault.locked()
    assert path.read_bytes() == raw
    vault.unlock("right one")
    assert not vault.locked()
    assert vault.load() == SECRETS
    assert path.read_bytes() == raw


def test_unlock_refuses_a_tampered_vault_as_such(tmp_path: Path) -> None:
    path = sealed(tmp_path)
    doc = json.loads(path.read_bytes())
    doc["kdf"]["m"] = 2**40  # a hostile cost: refused before any key derivation
    path.write_text(json.dumps(doc))
    with pytest.raises(VaultCorrupt):
        Vault(path, {}, interactive=False).unlock("right one")
    path.write_text("{not json")
    vault = Vault(path, {}, interactive=False)
    assert not vault.locked(), "an unreadable vault is not locked: loading it says what is wrong"
    with pytest.raises(VaultCorrupt):
        vault.unlock("right one")
