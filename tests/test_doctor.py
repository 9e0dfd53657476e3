"""`kumix doctor`: the confinement layers of this machine, and what the policy makes of them."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from kumix.cli.main import main
from kumix.extensions.proc.confinement import LAYERS, SIMULATE_ENV
from tests.conftest import run_kumix

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")


def test_doctor_reports_every_layer_active_under_strict() -> None:
    done = run_kumix("doctor", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["policy"] == "strict"
    assert doc["requireConfinement"] is True
    assert doc["verdict"] == "confined"
    assert doc["layers"] == dict.fromkeys(LAYERS, True)
    assert doc["landlock_abi"] >= 1
    # The probe child really was confined: it tried and was refused.
    assert doc["checks"] == {"socket": "EPERM", "fork": "EPERM", "read_etc": "ENOENT", "write_tmp": "EROFS",
                             "sysv_msgget": "EPERM", "listmount": "ENOSYS", "mounts_visible": "ENOENT"}
    assert sorted(doc["details"]["namespaces"]) == ["ipc", "mount", "net", "pid", "user"]
    assert doc["details"]["max_tasks"] == 32


def test_doctor_text_names_each_layer() -> None:
    done = run_kumix("doctor")
    assert done.returncode == 0, done.stderr
    for layer in LAYERS:
        assert f"active       {layer}" in done.stdout
    assert "proc workers start fully confined" in done.stdout


def test_strict_policy_on_a_machine_without_a_layer_refuses_workers() -> None:
    done = run_kumix("doctor", "--json", env={SIMULATE_ENV: "seccomp"})
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["verdict"] == "refused"
    assert doc["layers"]["seccomp"] is False
    assert SIMULATE_ENV in doc["problems"]["seccomp"]
    # The probe shows the consequence: without the filter a socket can be made.
    assert doc["checks"]["socket"] == "ALLOWED"


def test_dev_policy_on_a_machine_without_a_layer_runs_unconfined_with_a_warning() -> None:
    done = run_kumix("--policy", "dev", "doctor", env={SIMULATE_ENV: "landlock"})
    assert done.returncode == 0, done.stderr
    assert "UNAVAILABLE  landlock" in done.stdout
    assert "warning on every start" in done.stdout


def test_doctor_does_not_confine_the_cli_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "confined"
    # This very process can still do everything a confined worker cannot.
    socket.socket().close()
    assert os.listdir("/")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_strict_policy_without_namespaces_refuses_unless_the_policy_accepts_the_weaker_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run_kumix("doctor", "--json", env={SIMULATE_ENV: "namespaces"})
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["verdict"] == "refused"
    assert doc["layers"]["namespaces"] is False
    # Without the view the probe's reads meet Landlock instead: the file exists for it.
    assert doc["checks"]["read_etc"] == "EACCES"

    policy = json.loads((Path(__file__).resolve().parents[1] / "src/kumix/bundled/policies/strict.json").read_text())
    policy["name"] = "strict-weaker"
    policy["proc"]["allowWithoutNamespaces"] = True
    path = tmp_path / "weaker.json"
    path.write_text(json.dumps(policy))
    done = run_kumix("--policy", str(path), "doctor", "--json", env={SIMULATE_ENV: "namespaces"})
    assert done.returncode == 0, done.stdout
    doc = json.loads(done.stdout)
    assert doc["verdict"] == "weaker"
    assert doc["allowWithoutNamespaces"] is True
    assert {name for name, on in doc["layers"].items() if not on} == {"namespaces"}
    # Only the namespaces layer is accepted missing: any other one still refuses.
    done = run_kumix("--policy", str(path), "doctor", "--json", env={SIMULATE_ENV: "namespaces,seccomp"})
    assert done.returncode == 1
    assert json.loads(done.stdout)["verdict"] == "refused"
