"""`kumix keys cross-signing status|bootstrap` and `kumix devices` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_kumix
from tests.synapse_harness import SynapseHarness, TestUser


def _login(synapse: SynapseHarness, user: TestUser, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    r = run_kumix("login", "--homeserver", synapse.url, "--user", user.localpart, "--password-stdin",
                  env=env, input=user.password + "\n")
    assert r.returncode == 0, r.stderr
    return r


def test_cross_signing_and_devices_commands(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    one = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "one")}
    r = _login(synapse, alice_user, one)
    assert "this device is cross-signed" in r.stderr
    assert alice_user.password not in r.stdout + r.stderr
    st = json.loads(run_kumix("keys", "cross-signing", "status", "--json", env=one).stdout)
    assert st["device_verified"] is True
    assert st["private_keys"] == ["master", "self_signing", "user_signing"]

    two = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "two")}
    r = _login(synapse, alice_user, two)
    assert "not verified yet" in r.stderr
    text = run_kumix("keys", "cross-signing", "status", env=two)
    assert "NOT verified" in text.stdout
    boot = json.loads(run_kumix("keys", "cross-signing", "bootstrap", "--json", env=two).stdout)
    assert boot["signed"] is False  # another device's identity is never replaced without --reset
    assert boot["master_key"] == st["master_key"]

    listing = json.loads(run_kumix("devices", "--json", env=one).stdout)
    trust = {d["device_id"]: d["trust"] for d in listing["devices"]}
    assert trust[st["device_id"]] == "verified"
    assert trust[boot["device_id"]] == "not_cross_signed"
    table = run_kumix("devices", env=one).stdout
    assert "NOT cross-signed" in table
    assert "(this device)" in table

    # --reset with a wrong password: refused with a typed error, nothing replaced.
    bad = run_kumix("keys", "cross-signing", "bootstrap", "--reset", "--password-stdin", "--json",
                    env=one, input="wrong password\n")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "unauthorized"
    again = json.loads(run_kumix("keys", "cross-signing", "status", "--json", env=one).stdout)
    assert again["master_key"] == st["master_key"]


def test_the_trust_commands_module_does_not_import_nio() -> None:
    code = "import sys, kumix.cli.trust_commands; assert 'nio' not in sys.modules and 'vodozemac' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recovery_set_up_in_kumix_verifies_a_second_kumix_device(
    synapse: SynapseHarness, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    user = synapse.user("carol")
    one = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "one")}
    _login(synapse, user, one)
    assert json.loads(run_kumix("keys", "recovery", "show-status", "--json", env=one).stdout)["set_up"] is False
    made = run_kumix("keys", "recovery", "setup", "--json", env=one)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["recovery_key"]
    assert key not in made.stderr
    # Kept nowhere on disk: not in the vault (sealed anyway), the database or the crypto store.
    compact = key.replace(" ", "").encode()
    for f in (tmp_path / "one").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert key.encode() not in data
            assert compact not in data
    st = json.loads(run_kumix("keys", "recovery", "show-status", "--json", env=one).stdout)
    assert st["set_up"] is True
    assert set(st["stored_secrets"]) == {"m.cross_signing.master", "m.cross_signing.self_signing",
                                         "m.cross_signing.user_signing", "m.megolm_backup.v1"}
    backup = json.loads(run_kumix("keys", "backup", "status", "--json", env=one).stdout)
    assert backup["version"] is not None
    assert backup["trusted"] is True
    assert backup["have_key"] is True

    two = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "two")}
    _login(synapse, user, two)
    wrong = run_kumix("keys", "recovery", "use", "--recovery-key-stdin", "--json", env=two,
                      input=key[:-2] + ("1" if key[-1] != "1" else "2") + key[-1] + "\n")
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["error"]["code"] == "wrong_recovery_key"
    ok = run_kumix("keys", "recovery", "use", "--recovery-key-stdin", "--json", env=two, input=key + "\n")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["device_verified"] is True
    assert key not in ok.stderr
    backup2 = json.loads(run_kumix("keys", "backup", "status", "--json", env=two).stdout)
    assert backup2["version"] == backup["version"]
    assert backup2["have_key"] is True  # the backup key came out of secret storage
    restored = run_kumix("keys", "backup", "restore", "--json", env=two)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["refused"] == []


def test_exclude_insecure_devices_setting(tmp_path: Path, vault_env: dict[str, str]) -> None:
    env = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "fresh")}
    assert json.loads(run_kumix("keys", "exclude-insecure-devices", "--json", env=env).stdout) == {
        "exclude_insecure_devices": True}  # a new data directory: on
    assert "off" in run_kumix("keys", "exclude-insecure-devices", "off", env=env).stdout
    assert json.loads(run_kumix("keys", "exclude-insecure-devices", "--json", env=env).stdout) == {
        "exclude_insecure_devices": False}
    assert run_kumix("keys", "exclude-insecure-devices", "maybe", env=env).returncode == 2
