"""The vault's OS-keyring path against a real Secret Service (gnome-keyring-daemon on a private
D-Bus session bus, see tests/keyring_session.py), and the rule that only a real OS keyring
ever holds the vault key: never keyring's fail/null backends, never keyrings.alt's files.

Every vault operation runs in its own process with the session's environment and no
terminal (stdin is /dev/null), as `kumix` itself would: the `keyring` package picks its
backend once per process, so the test process never uses it against the session.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import chainer, fail, null
from keyring.backends.SecretService import Keyring as SecretServiceKeyring
from keyrings.alt.file import EncryptedKeyring, PlaintextKeyring
from tests.keyring_session import KeyringSession
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.store.vault import ENV_PASSPHRASE_FILE, KEYRING_SERVICE, _is_os_keyring

TOKEN = "syt_keyring_path_SECRET_TOKEN"
PICKLE = "PICKLE_KEY_keyring_path"
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"

DRIVER = r"""
import json, sys
from pathlib import Path

import keyring

from kumix.core.errors import KumixError
from kumix.store.vault import Vault

def name(obj):
    return type(obj).__module__ + "." + type(obj).__qualname__

backend = keyring.get_keyring()
out = {"backend": name(backend), "members": [name(m) for m in getattr(backend, "backends", [])]}
action, path = sys.argv[1], Path(sys.argv[2])
try:
    vault = Vault(path)
    if action == "create":
        vault.create(json.loads(sys.argv[3]))
    elif action == "load":
        out["secrets"] = vault.load()
    elif action == "destroy":
        vault.destroy()
    out["ok"] = True
except KumixError as exc:
    out["error"] = {"code": exc.code, "message": str(exc)}
print(json.dumps(out))
"""


def _env(session: KeyringSession, *, bus: bool = True, **extra: str) -> dict[str, str]:
    env = session.env
    if not bus:
        del env["DBUS_SESSION_BUS_ADDRESS"]
    env.update(extra)
    return env


def _vault(action: str, path: Path, env: dict[str, str], doc: dict[str, str] | None = None) -> dict[str, Any]:
    args = [sys.executable, "-c", DRIVER, action, str(path)] + ([json.dumps(doc)] if doc is not None else [])
    r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _kumix(env: dict[str, str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kumix", *args], env=env, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, check=False)


def _header(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes())
    return doc


def _key_items(session: KeyringSession, vault_id: str) -> list[tuple[dict[str, str], bytes]]:
    return session.items({"service": KEYRING_SERVICE, "username": vault_id})


def _all_files(*roots: Path) -> list[Path]:
    return [f for root in roots for f in root.rglob("*") if f.is_file()]


def _assert_nowhere_on_disk(needles: dict[str, bytes], *roots: Path) -> None:
    for f in _all_files(*roots):
        data = f.read_bytes()
        for what, needle in needles.items():
            assert needle not in data, f"{what} found in {f}"


def _no_plaintext_keyring_files(session: KeyringSession) -> None:
    # keyrings.alt keeps its files under XDG_DATA_HOME/python_keyring (keyring_pass.cfg,
    # crypted_pass.cfg); neither may ever be created.
    assert not (session.data_home / "python_keyring").exists()
    assert not [f for f in _all_files(session.root) if f.name.endswith("_pass.cfg")]


# -- the rule, on the backend classes themselves ----------------------------------------------


class LoudPlaintext(PlaintextKeyring):
    """A plaintext file keyring that claims to be the best keyring there is."""

    priority = 100


def test_only_recommended_os_keyrings_count() -> None:
    for backend in (fail.Keyring(), null.Keyring(), PlaintextKeyring(), EncryptedKeyring(), LoudPlaintext(),
                    chainer.ChainerBackend()):
        assert not _is_os_keyring(backend), backend
    # The test process has no session bus: Secret Service reports itself not viable here,
    # and a backend that cannot say its priority is refused rather than trusted.
    assert not _is_os_keyring(SecretServiceKeyring())


# -- the real Secret Service -------------------------------------------------------------------


def test_a_vault_without_passphrase_file_or_terminal_keeps_its_key_in_the_secret_service(
    keyring_session: KeyringSession, tmp_path: Path
) -> None:
    path = tmp_path / "vault.json"
    env = _env(keyring_session)
    out = _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE})
    assert out.get("ok"), out
    # keyrings.alt is installed in this environment: keyring chains it behind Secret Service.
    assert out["backend"] == "keyring.backends.chainer.ChainerBackend", out
    assert out["members"][0] == SECRET_SERVICE, out
    assert any(m.startswith("keyrings.alt.") for m in out["members"]), out

    header = _header(path)
    assert header["mode"] == "keyring"
    assert "kdf" not in header
    assert header["keyring"]["service"] == KEYRING_SERVICE
    vault_id = header["keyring"]["username"]
    assert path.stat().st_mode & 0o777 == 0o600

    items = _key_items(keyring_session, vault_id)  # read over D-Bus, not through `keyring`
    assert len(items) == 1, items
    key_text = items[0][1]
    key = base64.b64decode(key_text, validate=True)
    assert len(key) == 32
    raw = path.read_bytes()
    for needle in (key, key_text, TOKEN.encode(), PICKLE.encode()):
        assert needle not in raw
    # Not in the vault, and not in clear anywhere else either (gnome-keyring's own files included).
    _assert_nowhere_on_disk({"vault key": key, "vault key (base64)": key_text, "token": TOKEN.encode()},
                            tmp_path, keyring_session.root)
    _no_plaintext_keyring_files(keyring_session)

    again = _vault("load", path, env)  # a new process, nothing cached
    assert again.get("secrets") == {"access_token": TOKEN, "pickle_key": PICKLE}, again


def test_a_key_removed_from_the_keyring_makes_opening_fail_unauthorized(
    keyring_session: KeyringSession, tmp_path: Path
) -> None:
    path = tmp_path / "vault.json"
    env = _env(keyring_session)
    assert _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE}).get("ok")
    vault_id = _header(path)["keyring"]["username"]
    assert keyring_session.delete_items({"service": KEYRING_SERVICE, "username": vault_id}) == 1
    before = path.read_bytes()
    out = _vault("load", path, env)
    assert out.get("error", {}).get("code") == "unauthorized", out
    assert "missing from the OS keyring" in out["error"]["message"], out
    assert path.read_bytes() == before  # left untouched

    # The same vault with no OS keyring at all is refused as unauthorized too, with the reason.
    out = _vault("load", path, _env(keyring_session, bus=False))
    assert out.get("error", {}).get("code") == "unauthorized", out
    assert "not available" in out["error"]["message"], out


def test_destroying_a_vault_removes_its_keyring_entry(keyring_session: KeyringSession, tmp_path: Path) -> None:
    path = tmp_path / "vault.json"
    env = _env(keyring_session)
    assert _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE}).get("ok")
    vault_id = _header(path)["keyring"]["username"]
    assert len(_key_items(keyring_session, vault_id)) == 1
    assert _vault("destroy", path, env).get("ok")
    assert not path.exists()
    assert _key_items(keyring_session, vault_id) == []


@pytest.mark.parametrize("backend", [
    "keyring.backends.null.Keyring",
    "keyring.backends.fail.Keyring",
    "keyrings.alt.file.PlaintextKeyring",
    "keyrings.alt.file.EncryptedKeyring",
])
def test_a_configured_non_os_keyring_is_never_used(
    keyring_session: KeyringSession, tmp_path: Path, passphrase_file: Path, backend: str
) -> None:
    """PYTHON_KEYRING_BACKEND picks the backend; a real Secret Service is on the bus all along."""
    env = _env(keyring_session, PYTHON_KEYRING_BACKEND=backend)
    path = tmp_path / "vault.json"
    in_secret_service = len(keyring_session.items({"service": KEYRING_SERVICE}))
    out = _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE})
    assert out["backend"] == backend, out  # keyring really did select that backend
    assert out.get("error", {}).get("code") == "unauthorized", out  # no terminal, no file: refused
    assert ENV_PASSPHRASE_FILE in out["error"]["message"], out
    assert not path.exists()

    env[ENV_PASSPHRASE_FILE] = str(passphrase_file)
    out = _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE})
    assert out.get("ok"), out
    assert _header(path)["mode"] == "passphrase"
    assert "keyring" not in _header(path)
    assert len(keyring_session.items({"service": KEYRING_SERVICE})) == in_secret_service
    _no_plaintext_keyring_files(keyring_session)
    _assert_nowhere_on_disk({"token": TOKEN.encode(), "pickle key": PICKLE.encode()}, tmp_path, keyring_session.root)


def test_keyrings_alt_being_installed_changes_no_key_source(
    keyring_session: KeyringSession, tmp_path: Path, passphrase_file: Path
) -> None:
    """Without a session bus, keyring's own pick is the keyrings.alt file chain; Kumix refuses it."""
    env = _env(keyring_session, bus=False)
    path = tmp_path / "vault.json"
    out = _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE})
    members = out["members"] or [out["backend"]]
    assert members, out
    assert all(m.startswith("keyrings.alt.file.") for m in members), out
    assert out.get("error", {}).get("code") == "unauthorized", out
    assert "no OS keyring" in out["error"]["message"], out
    assert ENV_PASSPHRASE_FILE in out["error"]["message"], out
    assert not path.exists()
    _no_plaintext_keyring_files(keyring_session)

    # With a passphrase file the passphrase path is taken, exactly as without keyrings.alt.
    env[ENV_PASSPHRASE_FILE] = str(passphrase_file)
    assert _vault("create", path, env, {"access_token": TOKEN, "pickle_key": PICKLE}).get("ok")
    assert _header(path)["mode"] == "passphrase"
    assert _vault("load", path, env).get("secrets") == {"access_token": TOKEN, "pickle_key": PICKLE}
    _no_plaintext_keyring_files(keyring_session)


# -- the command line --------------------------------------------------------------------------


def test_cli_login_uses_the_keyring_non_interactively(
    synapse: SynapseHarness, keyring_session: KeyringSession, tmp_path: Path
) -> None:
    user: TestUser = synapse.user("kr")
    data = tmp_path / "data"
    env = _env(keyring_session, KUMIX_DATA_DIR=str(data))
    assert ENV_PASSPHRASE_FILE not in env
    r = _kumix(env, "login", "--homeserver", synapse.url, "--user", user.user_id, "--password-stdin", "--json",
               input=user.password + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    vaults = list(data.rglob("vault.json"))
    assert len(vaults) == 1, vaults
    header = _header(vaults[0])
    assert header["mode"] == "keyring", header
    vault_id = header["keyring"]["username"]
    assert len(_key_items(keyring_session, vault_id)) == 1

    r = _kumix(env, "whoami", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert user.user_id in r.stdout

    r = _kumix(env, "logout")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not vaults[0].exists()
    assert _key_items(keyring_session, vault_id) == []
    _no_plaintext_keyring_files(keyring_session)
