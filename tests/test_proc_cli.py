"""`kumix ext call` through a real subprocess, the ExtensionCaller use case, and the
guarantee that workers never outlive a SIGKILLed host."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.settings import Settings
from kumix.core.errors import Disabled, NotGranted
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.conftest import run_kumix
from tests.proc_support import FIXTURES, wait_gone, write_policy


def test_cli_call_prints_sanitized_result(data_dir: Path) -> None:
    out = run_kumix(
        "--data-dir", str(data_dir), "--policy", "dev", "ext", "call", "markdown-renderer", "render.markdown",
        "--params", json.dumps({"source": "# T\n\n<img src=x onerror=alert(1)> [l](javascript:alert(1))"}),
    )
    assert out.returncode == 0, out.stderr
    html = json.loads(out.stdout)["html"]
    assert "<h1>T</h1>" in html
    assert "<img" not in html, "raw HTML in markdown is escaped, never rendered"
    assert "href" not in html, "a javascript: link is not linked"
    assert (data_dir / "logs" / "markdown-renderer.log").exists()


def test_cli_call_failure_is_json_with_exit_1(data_dir: Path) -> None:
    out = run_kumix("--data-dir", str(data_dir), "--policy", "dev", "ext", "call", "markdown-renderer",
                    "render.nothing", "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "capability_not_declared"


def test_cli_bad_params_is_bad_request(data_dir: Path) -> None:
    out = run_kumix("--data-dir", str(data_dir), "--policy", "dev", "ext", "call", "markdown-renderer",
                    "render.markdown", "--params", "{not json", "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "bad_request"
    out = run_kumix("--data-dir", str(data_dir), "--policy", "dev", "ext", "call", "markdown-renderer",
                    "render.markdown", "--params", "[1]", "--json")
    assert json.loads(out.stdout)["error"]["code"] == "bad_request"


def test_cli_disabled_extension_answers_disabled(data_dir: Path) -> None:
    base = ("--data-dir", str(data_dir), "--policy", "dev")
    assert run_kumix(*base, "ext", "disable", "theme-default").returncode == 0
    out = run_kumix(*base, "ext", "call", "theme-default", "theme.tokens.provide", "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "disabled"


def test_cli_external_extension_needs_grant_and_enable(data_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    write_policy(policy)
    base = ("--data-dir", str(data_dir), "--policy", str(policy), "--extensions-dir", str(FIXTURES))
    out = run_kumix(*base, "ext", "call", "friendly-echo", "echo.sync", "--json")
    assert json.loads(out.stdout)["error"]["code"] == "not_granted"
    assert run_kumix(*base, "ext", "grant", "friendly-echo", "test.echo").returncode == 0
    out = run_kumix(*base, "ext", "call", "friendly-echo", "echo.sync", "--json")
    assert json.loads(out.stdout)["error"]["code"] == "disabled"
    assert run_kumix(*base, "ext", "enable", "friendly-echo").returncode == 0
    out = run_kumix(*base, "ext", "call", "friendly-echo", "echo.sync", "--params", '{"a": 1}', "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["echo"] == {"a": 1}
    info = run_kumix(*base, "ext", "info", "friendly-echo", "--json")
    stats = json.loads(info.stdout)["stats"]
    assert stats["limits"]["maxConcurrency"] == 4
    # Refusals by the governance check never reached a session; the one real call did.
    assert (stats["calls"], stats["ok"], stats["latency_ms"]["samples"]) == (1, 1, 1)


def test_ext_info_shows_figures_saved_by_earlier_processes(data_dir: Path) -> None:
    base = ("--data-dir", str(data_dir), "--policy", "dev")
    for source in ("# one", "*two*"):
        ok = run_kumix(*base, "ext", "call", "markdown-renderer", "render.markdown", "--params",
                       json.dumps({"source": source}))
        assert ok.returncode == 0, ok.stderr
    bad = run_kumix(*base, "ext", "call", "markdown-renderer", "render.markdown", "--params", '{"source": 5}',
                    "--json")
    assert json.loads(bad.stdout)["error"]["code"] == "bad_request"
    stats = json.loads(run_kumix(*base, "ext", "info", "markdown-renderer", "--json").stdout)["stats"]
    assert (stats["calls"], stats["ok"], stats["errors"]) == (3, 2, {"bad_request": 1})
    assert stats["latency_ms"]["samples"] == 2
    assert stats["latency_ms"]["p50"] > 0
    text = run_kumix(*base, "ext", "info", "markdown-renderer").stdout
    assert "calls: 3" in text
    assert "errors: bad_request 1" in text
    assert "samples 2" in text
    assert "{" not in text, "maps are shown as name value pairs, not Python reprs"


def test_cli_strict_policy_without_confinement_refuses(data_dir: Path) -> None:
    out = run_kumix("--data-dir", str(data_dir), "ext", "call", "markdown-renderer", "render.markdown",
                    "--params", '{"source": "x"}', "--json",
                    env={"KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE": "all"})
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "confinement_unavailable"


async def test_caller_checks_state_on_every_call(data_dir: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.json")
    settings = Settings(data_dir=data_dir, policy=str(tmp_path / "policy.json"), extension_roots=(FIXTURES,))
    with Database(settings.state_db) as db:
        service = ExtensionService(policy, ExtensionStateStore(db), settings.extension_roots)
        async with ExtensionCaller(service, settings) as caller:
            with pytest.raises(NotGranted):
                await caller.call("friendly-echo", "echo.sync", {})
            service.grant("friendly-echo", "test.echo")
            await caller.enable("friendly-echo")
            async with asyncio.timeout(30):
                assert (await caller.call("friendly-echo", "echo.sync", {"n": 1}))["echo"] == {"n": 1}
                assert (await caller.call("markdown-renderer", "render.markdown", {"source": "*a*"})) == {
                    "html": "<p><em>a</em></p>\n"
                }
            pid = caller.host.existing("friendly-echo").current_pid  # type: ignore[union-attr]
            assert caller.stats("friendly-echo")["ok"] == 1
            await caller.disable("friendly-echo")
            with pytest.raises(Disabled):
                await caller.call("friendly-echo", "echo.sync", {})
            assert pid is not None
            assert await wait_gone([pid]) == []


HOST_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from kumix.extensions.policy import load_policy
    from kumix.extensions.proc.host import ProcHost
    from kumix.extensions.registry import discover

    async def main():
        records = {r.id: r for r in discover()}
        host = ProcHost(load_policy("dev"), logs_dir=Path(sys.argv[1]))
        pids = []
        for ext in ("markdown-renderer", "theme-default"):
            r = records[ext]
            s = host.session(r.id, r.path, r.manifest)
            await s.ping()
            pids.append(s.current_pid)
        print(json.dumps({"forkserver": host.forkserver_pid, "workers": pids}), flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


async def test_workers_never_outlive_a_sigkilled_host(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path / "logs")], stdout=subprocess.PIPE, text=True
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(host.stdout.readline), 60)  # type: ignore[union-attr]
        pids = json.loads(line)
        everyone = [pids["forkserver"], *pids["workers"]]
        assert all(os.path.exists(f"/proc/{pid}") for pid in everyone)
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
        assert await wait_gone(everyone) == [], "a worker or the fork server outlived its host"
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
