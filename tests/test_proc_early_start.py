"""A fork server launched before the host opens: adopted by the host (one server, not two),
ended by its owner when nothing adopted it, replaced when it died first; and `kumix ext call`
launches it before importing the rest of Kumix, while its own process never imports the
confinement machinery only workers run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.launch import launch_server
from tests.proc_support import running, session, wait_gone, write_policy

SAFETY_S = 60


async def test_the_host_adopts_a_server_launched_before_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    launched = launch_server(logs)
    policy = write_policy(tmp_path / "policy.json")
    async with asyncio.timeout(SAFETY_S):
        async with ProcHost(policy, logs_dir=logs, launched=launched) as host:
            echo = session(host, "friendly-echo")
            assert (await echo.call("echo.sync", {"a": 1}))["echo"] == {"a": 1}
            assert host.forkserver_pid == launched.process.pid, "the launched server serves, no second one"
            assert host.forkserver.starts == 1
            assert launched.adopted
            launched.close()  # the host owns it now: its former owner's close is a no-op
            assert running(launched.process.pid)
            worker = echo.current_pid
            assert worker is not None
        assert await wait_gone([launched.process.pid, worker]) == []


async def test_a_launched_server_that_died_first_is_replaced(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    launched = launch_server(logs)
    launched.process.kill()
    launched.process.wait()
    policy = write_policy(tmp_path / "policy.json")
    async with asyncio.timeout(SAFETY_S):
        async with ProcHost(policy, logs_dir=logs, launched=launched) as host:
            assert (await session(host, "friendly-echo").call("echo.sync", {}))["echo"] == {}
            assert host.forkserver_pid not in (None, launched.process.pid)


def test_a_launched_server_nobody_adopted_is_ended_by_close(tmp_path: Path) -> None:
    launched = launch_server(tmp_path / "logs")
    pid = launched.process.pid
    assert running(pid)
    launched.close()
    launched.close()  # idempotent
    assert not running(pid)
    assert launched.process.returncode is not None


EXT_CALL_PROBE = """
import json, sys
import kumix.extensions.proc.launch as launch
real = launch.launch_server
seen = []
def counting(logs_dir):
    # What the command had imported when it launched the server.
    seen.append(sorted(m for m in WATCHED if m in sys.modules))
    return real(logs_dir)
launch.launch_server = counting
from kumix.cli.main import main
code = main(["--json", "ext", "call", "markdown-renderer", "render.markdown", "--params", '{"source": "*x*"}'])
heavy = sorted(m for m in sys.modules if m in HOST_NEVER or m.split(".")[0] in HOST_NEVER)
print("PROBE", json.dumps({"code": code, "launches": seen, "heavy": heavy}))
"""

WATCHED = ("asyncio", "kumix.app.kumix", "kumix.extensions.proc.session", "kumix.extensions.registry",
           # Launched before the command line is parsed (cli/early_launch.py): no parser, no settings.
           "kumix.cli.ext_commands", "kumix.app.settings", "dataclasses")
HOST_NEVER = ("kumix.extensions.proc.confinement", "pyprctl", "landlockpy", "pyseccomp", "kumix.extensions.proc.worker")


def _run_probe(probe: str, data_dir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run `probe` in a fresh interpreter; its output and the document of its PROBE line."""
    import json

    env = {**os.environ, "KUMIX_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("PROBE")), None)
    assert line is not None, result.stderr
    return result, json.loads(line.split(" ", 1)[1])


def test_ext_call_launches_its_fork_server_first_and_never_imports_confinement(data_dir: Path) -> None:
    probe = EXT_CALL_PROBE.replace("WATCHED", repr(WATCHED)).replace("HOST_NEVER", repr(HOST_NEVER))
    result, doc = _run_probe(probe, data_dir)
    assert doc["code"] == 0, result.stderr
    assert "<em>x</em>" in result.stdout
    assert doc["launches"] == [[]], "one server, launched before asyncio, the app core or the host were imported"
    assert doc["heavy"] == [], "the host process needs none of the workers' confinement machinery"


def test_the_fork_server_is_ready_without_asyncio_or_jsonschema() -> None:
    """The essentials a worker needs before its entry file: not the event loop (the SDK imports
    it on first use), not the schema validator (workers rebuild the host's manifest) and not
    what reading a schema file needs (importlib.resources, hashlib)."""
    probe = ("import sys; import kumix.extensions.proc.forkserver as f; f._preload_essentials(); "
             "print(sorted(m for m in ('asyncio', 'jsonschema', 'uvloop', 'importlib.resources', 'hashlib') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_worker_rebuilds_the_hosts_manifest_and_still_checks_across_fields() -> None:
    import pytest

    from kumix.core.errors import InvalidManifest
    from kumix.extensions.manifest import manifest_from_host
    from tests.proc_support import records

    proc = [r.manifest for r in records().values() if r.manifest is not None and r.manifest.kind == "proc"]
    assert len(proc) > 3
    for manifest in proc:
        assert manifest_from_host(manifest.to_json(), display="x") == manifest
    doc = proc[0].to_json()
    doc["methods"] = {"ping": doc["capabilities"][0]}  # the runtime's own method
    with pytest.raises(InvalidManifest, match="reserved"):
        manifest_from_host(doc, display="x")
    doc["methods"] = {"x.y": "not-declared"}
    with pytest.raises(InvalidManifest, match="not listed"):
        manifest_from_host(doc, display="x")


ENTRY_PROBE = """
import sys
from kumix.cli.early_launch import launch_for
launched = launch_for(["ext", "call", "markdown-renderer", "render.markdown"])
loaded = sorted(m for m in SLOW if m in sys.modules)
pid = launched.process.pid if launched is not None else None
if launched is not None:
    launched.close()
import json
print("PROBE", json.dumps({"loaded": loaded, "pid": pid, "reaped": launched.process.returncode is not None}))
"""

SLOW_BEFORE_LAUNCH = ("typing", "pathlib", "subprocess", "socket", "contextlib", "enum", "signal", "re",
                      "dataclasses", "asyncio")
"""What `kumix ext call` must not wait for before its fork server starts: 10-25 ms each with
what they bring, on a slow machine, between the interpreter's start and the launch."""


def test_ext_call_launches_its_fork_server_before_typing_pathlib_or_subprocess(data_dir: Path) -> None:
    _result, doc = _run_probe(ENTRY_PROBE.replace("SLOW", repr(SLOW_BEFORE_LAUNCH)), data_dir)
    assert doc["pid"] is not None, "the server was launched"
    assert doc["reaped"], "closing a server nobody adopted reaps it"
    assert doc["loaded"] == [], "imported before the launch"


def test_the_fork_server_closes_descriptors_its_launcher_left_open(tmp_path: Path) -> None:
    """posix_spawn (launch.py) passes on every descriptor of the launching process that is not
    close-on-exec; the server keeps only 0-2 and its control socket."""
    stray_r, stray_w = os.pipe()  # inheritable: os.pipe() descriptors are not, so make them so
    os.set_inheritable(stray_r, True)
    os.set_inheritable(stray_w, True)
    try:
        launched = launch_server(tmp_path / "logs")
        try:
            os.close(stray_w)
            stray_w = -1
            # The server holds the write end only until it closes it; then the read end sees EOF.
            import select

            ready, _, _ = select.select([stray_r], [], [], 20)
            assert ready, "the server kept the stray descriptor open"
            assert os.read(stray_r, 1) == b""
            assert launched.process.poll() is None, "it is running, not dead"
        finally:
            launched.close()
    finally:
        os.close(stray_r)
        if stray_w != -1:
            os.close(stray_w)
