"""The attack suite through the real host: `ExtensionCaller` → `ProcHost` → fork server →
worker hygiene → `confine_worker` → the hostile extension's handlers.

The policy is the bundled strict one (confinement required, strict limits) plus the test
capabilities; the hostile extension is external, granted and enabled like a user would. Every
attack must come back as the extension's own handled failure with the errno of the layer
that stopped it, or as a typed error for the caller, while a second extension keeps
answering. The same attacks succeed through the same host when confinement is simulated away
under a policy that does not require it, which is what makes the refusals meaningful.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.settings import Settings
from kumix.core.errors import ConfinementUnavailable, KumixError
from kumix.extensions.manifest import load_manifest
from kumix.extensions.policy import load_policy
from kumix.extensions.proc import privileges
from kumix.extensions.proc.confinement import SIMULATE_ENV
from kumix.extensions.proc.host import ProcHost
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.confinement_harness import FIXTURES
from tests.conftest import REPO_ROOT
from tests.proc_support import proc_pids_of, wait_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

SECRET = "syt_c2VjcmV0_host-credential-do-not-leak"
TEST_CAPABILITIES = ("test.attack", "test.echo", "fs.scratch")


def _policy_file(tmp_path: Path, *, require: bool, cpu_seconds: int = 60) -> Path:
    doc = json.loads((REPO_ROOT / "src/kumix/bundled/policies/strict.json").read_text())
    doc["name"] = "strict-confinement-test"
    doc["capabilities"] = [*doc["capabilities"], *TEST_CAPABILITIES]
    doc["proc"]["requireConfinement"] = require
    doc["proc"]["maxCpuSeconds"] = cpu_seconds
    path = tmp_path / f"policy-{require}-{cpu_seconds}.json"
    path.write_text(json.dumps(doc))
    return path


class Kumix:
    """One Kumix data directory with the hostile and bystander extensions granted and enabled."""

    def __init__(self, tmp_path: Path, policy_path: Path) -> None:
        root = tmp_path / "extensions"
        for ext in ("hostile", "bystander"):
            shutil.copytree(FIXTURES / ext, root / ext)
        self.hostile_dir = root / "hostile"
        self.settings = Settings(data_dir=tmp_path / "data", policy=str(policy_path), extension_roots=(root,))
        self.settings.ensure_data_dir()
        self.db = Database(self.settings.state_db)
        self.service = ExtensionService(load_policy(str(policy_path)), ExtensionStateStore(self.db), (root,))
        for ext in ("hostile", "bystander"):
            for cap in self.service.get(ext).manifest.capabilities:
                self.service.grant(ext, cap)
            self.service.enable(ext)
        # The host's secrets, next to its state database: a vault file, 0600.
        fd = os.open(self.settings.data_dir / "vault.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"access_token": SECRET}))

    @property
    def log(self) -> str:
        return (self.settings.logs_dir / "hostile.log").read_text(errors="replace")


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[tuple[Kumix, ExtensionCaller]]:
    kumix = Kumix(tmp_path, _policy_file(tmp_path, require=True))
    async with ExtensionCaller(kumix.service, kumix.settings) as caller:
        yield kumix, caller
    kumix.db.close()


async def attack(caller: ExtensionCaller, attack_name: str, **params: Any) -> dict[str, Any]:
    """One attack, with the bystander asked to answer at the same time."""
    hostile, bystander = await asyncio.gather(
        caller.call("hostile", f"attack.{attack_name}", params),
        caller.call("bystander", "echo.say", {"text": attack_name}),
    )
    assert bystander == {"said": attack_name}
    assert isinstance(hostile, dict)
    return hostile


def blocked(answer: dict[str, Any], errno_name: str) -> None:
    assert answer["outcome"] == "blocked", answer
    assert answer["errno"] == errno_name, answer


async def test_every_attack_fails_inside_the_confined_worker(
    strict: tuple[Kumix, ExtensionCaller], tmp_path: Path
) -> None:
    kumix, caller = strict
    identity = await attack(caller, "identity")
    # The extension's own identity (a root host), not a uid shared with other extensions.
    assert identity["uid"] == privileges.extension_identity("hostile")
    assert identity["groups"] == []
    session = await caller.session("hostile")
    pid_before = session.current_pid
    assert "started, confined" in kumix.log

    with socket.socket() as listener, socket.socket(socket.AF_UNIX) as unix_listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        unix_listener.bind(str(tmp_path / "host.sock"))
        unix_listener.listen(4)
        blocked(await attack(caller, "tcp_connect", host="127.0.0.1", port=listener.getsockname()[1]), "EPERM")
        blocked(await attack(caller, "unix_connect", path=str(tmp_path / "host.sock")), "EPERM")
    assert (await attack(caller, "resolve_dns", name="localhost"))["error"] == "gaierror"

    blocked(await attack(caller, "fork"), "EPERM")
    blocked(await attack(caller, "subprocess_sh"), "EPERM")
    assert (await attack(caller, "os_system"))["exit_code"] in (127, -1)
    blocked(await attack(caller, "execv_sh"), "EPERM")
    blocked(await attack(caller, "unshare_user_namespace"), "EPERM")
    blocked(await attack(caller, "become_root"), "EPERM")

    # Outside its own view (runtime, extension dir, scratch dir) nothing exists for the worker.
    data = kumix.settings.data_dir
    for target in (kumix.settings.state_db, data / "vault.json", Path(f"/proc/{os.getpid()}/environ")):
        blocked(await attack(caller, "read_file", path=str(target)), "ENOENT")
    # The data dir is only a mount-point stub of the view (scratch lies beneath it): Landlock
    # refuses listing it.
    blocked(await attack(caller, "list_dir", path=str(data)), "EACCES")
    blocked(await attack(caller, "read_memory", pid=os.getpid()), "ENOENT")
    buffer = ctypes.create_string_buffer(SECRET.encode())
    blocked(await attack(caller, "process_vm_readv", pid=os.getpid(), address=ctypes.addressof(buffer)), "EPERM")
    blocked(await attack(caller, "signal_process", pid=os.getpid()), "EPERM")

    # The extension dir is a read-only bind mount; /tmp is a directory of the read-only root.
    blocked(await attack(caller, "write_file", path=str(kumix.hostile_dir / "planted.py")), "EROFS")
    blocked(await attack(caller, "write_file", path=f"/tmp/kumix-attack-{os.getpid()}"), "EROFS")  # noqa: S108
    assert not (kumix.hostile_dir / "planted.py").exists()
    assert not Path(f"/tmp/kumix-attack-{os.getpid()}").exists()  # noqa: S108

    # Made after the extension was discovered and its worker started.
    (kumix.hostile_dir / "innocent.txt").symlink_to(data / "vault.json")
    blocked(await attack(caller, "read_file", path=str(kumix.hostile_dir / "innocent.txt")), "ENOENT")

    # Resources: the worker's rlimits (strict policy) stop these inside the worker.
    scratch = data / "scratch" / "hostile"
    home = (await attack(caller, "read_env"))["env"]
    # The scratch directory keeps its own path inside the view (no descriptor needed).
    assert home["HOME"] == str(scratch)
    fill = await attack(caller, "fill_disk", path=home["HOME"] + "/fill.bin", max_mb=64)
    blocked(fill, "EFBIG")
    assert (scratch / "fill.bin").stat().st_size == load_policy(str(kumix.settings.policy)).proc.max_log_bytes
    blocked(await attack(caller, "allocate", mb=2048), "ENOMEM")
    blocked(await attack(caller, "open_fds", path=home["HOME"] + "/fill.bin", count=5000), "EMFILE")

    # Every refusal was the extension's own handled failure: the same worker is still serving.
    assert session.current_pid == pid_before
    assert caller.stats("hostile")["crashes"] == 0


async def test_cpu_burn_is_stopped_and_the_neighbour_keeps_answering(tmp_path: Path) -> None:
    kumix = Kumix(tmp_path, _policy_file(tmp_path, require=True, cpu_seconds=1))
    try:
        async with ExtensionCaller(kumix.service, kumix.settings) as caller:
            await caller.warm("hostile")
            burn = asyncio.create_task(caller.call("hostile", "attack.burn_cpu", {}))
            answers = 0
            while not burn.done():
                assert await caller.call("bystander", "echo.say", {"text": "still here"}) == {"said": "still here"}
                answers += 1
                await asyncio.sleep(0.05)
            with pytest.raises(KumixError) as info:
                await burn
            # pid 1 of its PID namespace ignores RLIMIT_CPU's SIGXCPU and dies of the hard
            # limit's SIGKILL; the supervisor reports the CPU limit, so this stays resource_limit.
            assert info.value.code == "resource_limit", info.value
            assert "used up its CPU time" in str(info.value)
            assert answers > 0
            # The host restarts the worker; the hostile extension answers again afterwards.
            assert (await caller.call("hostile", "attack.identity", {}))["outcome"] == "succeeded"
    finally:
        kumix.db.close()


async def test_strict_policy_refuses_to_start_workers_without_a_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_ENV, "landlock")
    kumix = Kumix(tmp_path, _policy_file(tmp_path, require=True))
    try:
        async with ExtensionCaller(kumix.service, kumix.settings) as caller:
            with pytest.raises(ConfinementUnavailable) as info:
                await caller.call("hostile", "attack.identity", {})
            assert info.value.code == "confinement_unavailable"
            assert "landlock" in info.value.message
    finally:
        kumix.db.close()


async def test_unrequired_confinement_runs_unconfined_with_a_warning_and_the_attacks_work_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline through the same spawn path: with every layer simulated away under a policy
    that does not require confinement, the attacks the strict test refuses do succeed."""
    monkeypatch.setenv(SIMULATE_ENV, "all")
    kumix = Kumix(tmp_path, _policy_file(tmp_path, require=False))
    try:
        async with ExtensionCaller(kumix.service, kumix.settings) as caller:
            vault = await caller.call("hostile", "attack.read_file",
                                      {"path": str(kumix.settings.data_dir / "vault.json")})
            assert vault["outcome"] == "succeeded"
            assert SECRET in vault["text"]
            environ = await caller.call("hostile", "attack.read_file", {"path": f"/proc/{os.getpid()}/environ"})
            assert environ["outcome"] == "succeeded"
            assert (await caller.call("hostile", "attack.fork", {}))["outcome"] == "succeeded"
            assert "WARNING proc worker runs without OS confinement layers" in kumix.log
    finally:
        kumix.db.close()


async def test_bundled_extensions_work_confined_under_the_strict_policy(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    bundled = REPO_ROOT / "src/kumix/bundled/extensions/proc"
    async with ProcHost(load_policy("strict"), logs_dir=logs) as host:
        md = host.session("markdown-renderer", bundled / "markdown-renderer",
                          load_manifest(bundled / "markdown-renderer"))
        source = "# Hi\n\n| a | b |\n|---|---|\n| ~~x~~ | https://example.org |"
        result = await md.call("render.markdown", {"source": source})
        assert "<h1>Hi</h1>" in result["html"]
        assert "<s>x</s>" in result["html"]
        assert 'href="https://example.org"' in result["html"]
        theme = host.session("theme-default", bundled / "theme-default", load_manifest(bundled / "theme-default"))
        assert await theme.call("theme.tokens.provide", {})
    for name in ("markdown-renderer", "theme-default"):
        assert "started, confined" in (logs / f"{name}.log").read_text()


async def test_worker_at_its_thread_limit_fails_only_its_own_call(strict: tuple[Kumix, ExtensionCaller]) -> None:
    """2049 tiny-stack threads held at once worked before; now the worker's own call fails at
    the policy's maxTasksPerWorker, the neighbour answers and the same worker serves on."""
    kumix, caller = strict
    session = await caller.session("hostile")
    assert (await attack(caller, "identity"))["outcome"] == "succeeded"
    pid_before = session.current_pid
    answer = await attack(caller, "many_threads", count=2049)
    blocked(answer, "EAGAIN")
    limit = load_policy(str(kumix.settings.policy)).proc.max_tasks_per_worker
    assert int(answer["message"].rsplit("after ", 1)[1].split()[0]) < limit
    assert (await attack(caller, "many_threads", count=4))["threads"] == 4
    assert session.current_pid == pid_before
    assert caller.stats("hostile")["crashes"] == 0


def _ppid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


async def test_worker_dies_when_its_fork_server_is_sigkilled(strict: tuple[Kumix, ExtensionCaller]) -> None:
    """The worker switched to its extension's uid and entered its namespaces after PDEATHSIG was
    first set; it still dies with the fork server (it used to live on as an orphan)."""
    _kumix, caller = strict
    assert (await attack(caller, "identity"))["outcome"] == "succeeded"
    worker = (await caller.session("hostile")).current_pid
    assert worker is not None
    status = Path(f"/proc/{worker}/status").read_text()
    # The pid the host holds is the process running the extension: pid 1 of its own namespace.
    assert next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")) == [str(worker), "1"]
    # Its parent is the supervisor the PID namespace's fork left behind; that one's is the server.
    supervisor = _ppid(worker)
    server = _ppid(supervisor)
    assert worker in proc_pids_of(server)
    assert supervisor in proc_pids_of(server)
    os.kill(server, signal.SIGKILL)
    assert await wait_gone([worker, supervisor]) == []
