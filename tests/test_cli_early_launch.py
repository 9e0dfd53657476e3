"""`kumix ext call` launches its fork server before parsing its command line: the scan that
decides it reads the data directory as argparse will, declines what it cannot follow, and a
server launched for another data directory than the settings name is replaced, not used."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kumix.app.settings import Settings
from kumix.cli.context import CliContext
from kumix.cli.early_launch import ext_call_data_dir, is_doctor, launch_for, probe_for
from kumix.extensions.proc.launch import launch_server
from tests.proc_support import running

CALL = ["ext", "call", "markdown-renderer", "render.markdown"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (CALL, (True, None)),
        (["--json", *CALL, "--params", "{}"], (True, None)),
        (["--data-dir", "/d", *CALL], (True, "/d")),
        ([*CALL, "--data-dir=/e"], (True, "/e")),
        (["--data-dir", "/d", *CALL, "--data-dir", "/f"], (True, "/f")),  # the last one, as argparse
        (["--policy", "dev", "--extensions-dir", "/x", *CALL], (True, None)),
        (["ext", "list"], (False, None)),
        (["call", "ext"], (False, None)),
        (["--policy", "ext", "call", "a", "b"], (False, None)),  # "ext" is the policy's value
        (["--data", "/d", *CALL], (False, None)),  # an abbreviation argparse accepts: not followed
        (["--d=/d", *CALL], (False, None)),
        (["ext", "--", "call"], (True, None)),
    ],
)
def test_the_scan_reads_ext_call_and_its_data_directory(argv: list[str], expected: tuple[bool, str | None]) -> None:
    assert ext_call_data_dir(argv) == expected


def test_nothing_is_launched_for_other_commands_or_an_empty_data_directory(tmp_path: Path) -> None:
    assert launch_for(["ext", "list"]) is None
    assert launch_for(["--data-dir", "", *CALL]) is None


def test_the_launch_logs_in_the_data_directory_the_settings_will_name(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUMIX_DATA_DIR", str(tmp_path / "from-env"))
    for argv, data_dir in ((CALL, None), (["--data-dir", str(tmp_path / "option"), *CALL], str(tmp_path / "option"))):
        Settings.resolve(data_dir=data_dir).ensure_data_dir()
        early = launch_for(argv)
        assert early is not None
        try:
            assert early.logs_dir == Settings.resolve(data_dir=data_dir).logs_dir
            assert (early.logs_dir / "forkserver.log").exists()
        finally:
            early.close()


def test_a_data_directory_that_does_not_exist_yet_is_left_to_the_command(tmp_path: Path) -> None:
    # The command line is not checked yet: a mistyped one must leave nothing behind.
    missing = tmp_path / "new" / "data"
    assert launch_for(["--data-dir", str(missing), "ext", "call", "x"]) is None
    assert not (tmp_path / "new").exists()


def test_a_data_directory_the_scan_cannot_resolve_launches_nothing_and_raises_nothing() -> None:
    # Path.expanduser raises RuntimeError for an unknown user; main reports it, typed.
    assert launch_for(["--data-dir", "~nosuchuser-kumix-test/x", *CALL]) is None


def test_an_unresolvable_data_directory_is_a_typed_error_of_ext_call(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kumix", "--json", "ext", "call", "--data-dir",
                             "~nosuchuser-kumix-test/x", "markdown-renderer", "render.markdown"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    doc = json.loads(result.stdout or result.stderr)
    assert doc["error"]["code"], doc


def test_the_fork_server_launch_creates_a_missing_data_directory_private(tmp_path: Path) -> None:
    early = launch_server(tmp_path / "data" / "logs")
    try:
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "data" / "logs").stat().st_mode & 0o777 == 0o700
    finally:
        early.close()


def test_a_server_launched_for_another_data_directory_is_closed_and_replaced(tmp_path: Path) -> None:
    wrong = launch_server(tmp_path / "elsewhere" / "logs")
    settings = Settings(data_dir=tmp_path / "data")
    ctx = CliContext(args=argparse.Namespace(command="ext call"), settings=settings, early_fork_server=wrong)

    async def use(k: object) -> int:
        return 0

    assert ctx.run(use, extensions=True) == 0  # type: ignore[arg-type]
    assert wrong.process.returncode is not None, "the misplaced server is ended, not adopted"
    assert not running(wrong.process.pid)
    assert (settings.logs_dir / "forkserver.log").exists(), "another server was launched where the settings say"


ENTRY_PROBE = """
import json, sys
import kumix.extensions.proc.launch as launch
real = launch.launch_server
seen = []
def counting(logs_dir):
    # typing too (~8 ms): nothing on the way to the launch needs it at run time.
    seen.append(sorted(m for m in ("argparse", "typing", "kumix.cli.main", "kumix.cli.output", "kumix.app.settings")
                       if m in sys.modules))
    return real(logs_dir)
launch.launch_server = counting
sys.argv = ["kumix", "--json", "ext", "call", "markdown-renderer", "render.markdown", "--params", '{"source": "*x*"}']
from kumix.cli.entry import run
try:
    run()
except SystemExit as exit:
    print("PROBE", json.dumps({"code": exit.code, "launches": seen}))
"""


def test_the_command_launches_its_fork_server_before_importing_the_command_line_code(data_dir: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUMIX_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-c", ENTRY_PROBE], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("PROBE")), None)
    assert line is not None, result.stderr
    doc = json.loads(line.split(" ", 1)[1])
    assert doc["code"] == 0, result.stderr
    assert "<em>x</em>" in result.stdout
    assert doc["launches"] == [[]], "launched once, before argparse and the command modules were imported"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["doctor"], True),
        (["--json", "--policy", "dev", "doctor"], True),
        (["--data-dir", "/d", "doctor", "--json"], True),
        (["--policy", "doctor", "ext", "list"], False),  # "doctor" is the policy's value
        (["ext", "list"], False),
        (["--data", "/d", "doctor"], False),  # not followed: the command forks its own probe
        ([], False),
    ],
)
def test_the_scan_reads_doctor(argv: list[str], expected: bool) -> None:
    assert is_doctor(argv) is expected


def test_no_probe_is_forked_for_other_commands() -> None:
    assert probe_for(["ext", "list"]) is None


DOCTOR_PROBE = """
import json, os, sys
import kumix.app.confinement_report as report
real = report.start_probe
seen, probes = [], []
def counting(*args):
    seen.append(sorted(m for m in ("argparse", "kumix.cli.main", "kumix.app.settings", "kumix.extensions.policy")
                       if m in sys.modules))
    probes.append(real(*args))
    return probes[-1]
report.start_probe = counting
sys.argv = ["kumix", *sys.argv[1:]]
from kumix.cli.entry import run
try:
    run()
except SystemExit as exit:
    def reaped(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # no such child left: waited for already
        return False
    print("PROBE", json.dumps({"code": exit.code, "forks": seen, "reaped": [reaped(p._pid) for p in probes]}))
"""


def _doctor_probe(data_dir: Path, *argv: str) -> dict[str, object]:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUMIX_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-c", DOCTOR_PROBE, *argv], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("PROBE")), None)
    assert line is not None, result.stderr
    doc: dict[str, object] = json.loads(line.split(" ", 1)[1])
    return doc


def test_doctor_forks_its_probe_before_importing_the_command_line_code(data_dir: Path) -> None:
    doc = _doctor_probe(data_dir, "--json", "doctor")
    assert doc["code"] == 0
    assert doc["forks"] == [[]], "forked once, before argparse, the settings and the policy were imported"
    assert doc["reaped"] == [True]


def test_a_probe_forked_for_a_command_line_argparse_refuses_is_ended(data_dir: Path) -> None:
    doc = _doctor_probe(data_dir, "doctor", "--no-such-option")
    assert doc["code"] == 2
    assert doc["forks"] == [[]]
    assert doc["reaped"] == [True], "the probe child is killed and reaped, not left behind"
