"""The proc host against real worker processes, including hostile ones.

Every hostile case ends with a typed error for the caller, no hung task (asyncio.timeout is
only a safety net), no process left behind, and other extensions still answering.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumix.core.errors import (
    BadRequest,
    CallTimeout,
    CapabilityNotDeclared,
    ConfinementUnavailable,
    Crashed,
    Disabled,
    InputTooLarge,
    KumixError,
    OutputTooLarge,
    PolicyDenied,
    ResourceLimit,
    Unavailable,
)
from kumix.extensions.proc.host import ProcHost
from tests.proc_support import pid_of, proc_pids_of, records, running, session, wait_gone, write_policy

SAFETY_S = 30


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[ProcHost]:
    policy = write_policy(tmp_path / "policy.json")
    async with ProcHost(policy, logs_dir=tmp_path / "logs", scratch_root=tmp_path / "scratch") as h:
        yield h


async def assert_no_leftovers(host: ProcHost, *extension_ids: str) -> None:
    pids = [pid for ext in extension_ids if (s := host.existing(ext)) for pid in s.worker_pids]
    forkserver = host.forkserver_pid
    await host.aclose()
    leftover = await wait_gone([*pids, *([forkserver] if forkserver else [])])
    assert leftover == [], f"processes survived the host: {leftover}"


async def assert_echo_answers(host: ProcHost) -> None:
    result = await session(host, "friendly-echo").call("echo.sync", {"still": "here"})
    assert result["echo"] == {"still": "here"}


# ------------------------------------------------------------------ basics


async def test_sync_and_async_handlers_answer(host: ProcHost) -> None:
    echo = session(host, "friendly-echo")
    async with asyncio.timeout(SAFETY_S):
        assert (await echo.call("echo.sync", {"a": [1, "b"]}))["echo"] == {"a": [1, "b"]}
        assert await echo.call("echo.async", {"x": 1}) == {"echo": {"x": 1}, "async": True}
        rtt = await echo.ping()
    assert rtt > 0
    stats = echo.stats.snapshot()
    assert stats["calls"] == 2
    assert stats["ok"] == 2
    assert "latency_ms" in stats
    await assert_no_leftovers(host, "friendly-echo")


async def test_warm_calls_do_not_ask_asyncio_for_the_loop(host: ProcHost, monkeypatch: pytest.MonkeyPatch) -> None:
    # On Python 3.11 every asyncio.get_running_loop() is a getpid(2) system call; the session
    # keeps the loop of its first call instead (three such calls per round trip before).
    echo = session(host, "friendly-echo")
    async with asyncio.timeout(SAFETY_S):
        await echo.call("echo.sync", {})
        while len(echo.live_pids) < 1 + echo.limits.spare_workers:
            await asyncio.sleep(0.01)
        await echo.ping()
    asked: list[str] = []
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        asked.append(sys._getframe(1).f_code.co_filename)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counting)
    async with asyncio.timeout(SAFETY_S):
        for n in range(20):
            assert (await echo.call("echo.sync", {"n": n}))["echo"] == {"n": n}
            await echo.ping()
    monkeypatch.undo()
    assert [path for path in asked if "kumix" in path] == []
    await assert_no_leftovers(host, "friendly-echo")


async def test_worker_is_its_own_process_with_clean_environment_and_fds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hygiene alone, without confinement's own descriptors, so the fd set is exact.
    monkeypatch.setenv("KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE", "all")
    monkeypatch.setenv("KUMIX_TEST_SECRET", "hunter2")
    host = ProcHost(write_policy(tmp_path / "p.json"), logs_dir=tmp_path / "logs")
    try:
        echo = session(host, "friendly-echo")
        async with asyncio.timeout(SAFETY_S):
            env = await echo.call("echo.env", {})
            fds = await echo.call("echo.fds", {})
            limits = await echo.call("echo.limits", {})
    finally:
        await host.aclose()
    assert env["pid"] != os.getpid()
    assert env["pgid"] == env["pid"], "worker leads its own process group"
    assert env["sid"] == env["pid"], "worker leads its own session"
    assert "KUMIX_TEST_SECRET" not in env["env"]
    assert set(env["env"]) <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONIOENCODING", "KUMIX_EXTENSION_ID"}
    assert fds["fds"] == [0, 1, 2, 3, 4], "stdin, log twice, channel twice; nothing inherited"
    assert limits["RLIMIT_AS"] == [256 * 1024 * 1024] * 2
    assert limits["RLIMIT_CPU"][0] == 30
    assert limits["RLIMIT_CORE"] == [0, 0]
    assert limits["RLIMIT_FSIZE"] == [65536, 65536]
    assert limits["RLIMIT_NOFILE"][0] <= 64


async def test_worker_context_and_call_deadline_are_set(host: ProcHost) -> None:
    async with asyncio.timeout(SAFETY_S):
        info = await session(host, "friendly-echo").call("echo.deadline", {})
    assert info["extension_id"] == "friendly-echo"
    assert info["max_memory_mb"] == 256
    assert 0 < info["remaining_s"] <= 5.0


async def test_handler_errors_keep_their_code_and_the_worker(host: ProcHost) -> None:
    echo = session(host, "friendly-echo")
    async with asyncio.timeout(SAFETY_S):
        with pytest.raises(BadRequest, match="you asked for it"):
            await echo.call("echo.fail", {"kind": "bad_request"})
        with pytest.raises(KumixError, match="ValueError: plain bug") as info:
            await echo.call("echo.fail", {})
        assert info.value.code == "extension_error"
        await echo.call("echo.sync", {})
    assert len(echo.worker_pids) == 1, "a handler exception is not a crash"


async def test_html_results_are_sanitized_for_any_method(host: ProcHost) -> None:
    async with asyncio.timeout(SAFETY_S):
        result = await session(host, "friendly-echo").call(
            "echo.html", {"html": '<p onclick="x()">hi<script>alert(1)</script><a href="javascript:x">l</a></p>'}
        )
    assert result["html"] == '<p>hi<a rel="noopener noreferrer nofollow">l</a></p>'


# ------------------------------------------------------------------ governance


async def test_undeclared_method_is_refused_before_any_worker_starts(host: ProcHost) -> None:
    echo = session(host, "friendly-echo")
    with pytest.raises(CapabilityNotDeclared) as info:
        await echo.call("echo.not_in_manifest", {})
    assert info.value.code == "capability_not_declared"
    with pytest.raises(CapabilityNotDeclared):
        await echo.call("ping", {})  # the reserved method is not a callable capability
    assert echo.worker_pids == []


async def test_capability_the_policy_does_not_allow_is_refused(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json")
    narrowed = type(policy)(
        name="narrow", capabilities=frozenset({"test.hostile"}), source="test", proc=policy.proc
    )
    async with ProcHost(narrowed, logs_dir=tmp_path / "logs") as host:
        echo = session(host, "friendly-echo")
        with pytest.raises(PolicyDenied):
            await echo.call("echo.sync", {})
        assert echo.worker_pids == []


async def test_input_too_large_is_refused_before_sending(host: ProcHost) -> None:
    echo = session(host, "friendly-echo")
    with pytest.raises(InputTooLarge):
        await echo.call("echo.sync", {"blob": "x" * 70_000})
    assert echo.worker_pids == []
    with pytest.raises(BadRequest):
        await echo.call("echo.sync", {"not_json": object()})


async def test_disposed_session_answers_disabled(host: ProcHost) -> None:
    echo = session(host, "friendly-echo")
    async with asyncio.timeout(SAFETY_S):
        await echo.call("echo.sync", {})
        pid = echo.worker_pids[-1]
        await host.dispose("friendly-echo")
        with pytest.raises(Disabled):
            await echo.call("echo.sync", {})
        assert await wait_gone([pid]) == []


async def test_strict_confinement_unavailable_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE", "all")
    policy = write_policy(tmp_path / "p.json", requireConfinement=True)
    async with ProcHost(policy, logs_dir=tmp_path / "logs") as host:
        echo = session(host, "friendly-echo")
        async with asyncio.timeout(SAFETY_S):
            for _ in range(2):  # every attempt refuses; no restart loop, no circuit trip
                with pytest.raises(ConfinementUnavailable):
                    await echo.call("echo.sync", {})
        assert echo.stats.crashes == 0
        await assert_no_leftovers(host, "friendly-echo")


# ------------------------------------------------------------------ hostile workers


async def test_infinite_loop_times_out_kills_and_replaces_the_worker(host: ProcHost) -> None:
    loop_ext = session(host, "hostile-loop")
    async with asyncio.timeout(SAFETY_S):
        # Started first: on a loaded machine a cold start can use up the short deadline.
        await loop_ext.warm()
        await loop_ext.call("loop.echo", {})
        first = loop_ext.worker_pids[-1]
        spinning = asyncio.ensure_future(loop_ext.call("loop.forever", {}))
        await asyncio.sleep(0.05)
        await assert_echo_answers(host)  # another extension answers while this one spins
        with pytest.raises(CallTimeout):
            await spinning
        assert await wait_gone([first]) == []
        assert await loop_ext.call("loop.echo", {"again": 1}) == {"again": 1}
    assert loop_ext.worker_pids[-1] != first
    stats = loop_ext.stats.snapshot()
    assert stats["timeouts"] == 1
    assert stats["restarts"] == 1
    assert stats["errors"] == {"timeout": 1}
    await assert_no_leftovers(host, "hostile-loop", "friendly-echo")


async def test_memory_growth_hits_the_cap_as_resource_limit(host: ProcHost) -> None:
    memory = session(host, "hostile-memory")
    async with asyncio.timeout(SAFETY_S):
        with pytest.raises(ResourceLimit):
            await memory.call("memory.grow", {})
        await assert_echo_answers(host)
        assert await memory.call("memory.echo", {"ok": 1}) == {"ok": 1}
    assert len(memory.worker_pids) == 2, "the exhausted worker was replaced"
    await assert_no_leftovers(host, "hostile-memory", "friendly-echo")


async def test_huge_result_is_refused_as_output_too_large(host: ProcHost) -> None:
    output = session(host, "hostile-output")
    async with asyncio.timeout(SAFETY_S):
        with pytest.raises(OutputTooLarge):
            await output.call("output.huge", {"bytes": 300_000})
        assert await output.call("output.echo", {"a": 1}) == {"a": 1}
    assert len(output.worker_pids) == 1, "the runtime refused the result itself; no crash"


async def test_oversized_raw_frame_is_cut_at_the_header(host: ProcHost) -> None:
    output = session(host, "hostile-output")
    async with asyncio.timeout(SAFETY_S):
        await output.call("output.echo", {})
        first = output.worker_pids[-1]
        with pytest.raises(OutputTooLarge, match="1073741824"):
            await output.call("output.raw_oversized", {})
        assert await wait_gone([first]) == []
        await assert_echo_answers(host)
        assert await output.call("output.echo", {"b": 2}) == {"b": 2}
    await assert_no_leftovers(host, "hostile-output", "friendly-echo")


async def test_crash_mid_request_fails_only_that_call(host: ProcHost) -> None:
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        await crash.call("crash.echo", {})
        first = crash.worker_pids[-1]
        calls = [
            asyncio.ensure_future(crash.call("crash.exit", {"after": 0.1})),
            asyncio.ensure_future(crash.call("crash.slow", {"seconds": 0.1})),
            asyncio.ensure_future(crash.call("crash.slow", {"seconds": 0.1})),
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[0], Crashed), results
        assert "status 42" in str(results[0])
        assert results[1:] == [{"slept": True}] * 2, "calls on the other workers are not touched"
        assert await wait_gone([first]) == []
        again = await crash.call("crash.echo", {})
    assert pid_of(crash, again) != first
    await assert_no_leftovers(host, "hostile-crash")


async def test_worker_killed_by_a_signal_is_crashed(host: ProcHost) -> None:
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        with pytest.raises(Crashed, match="SIGSEGV"):
            await crash.call("crash.segfault", {})
        await crash.call("crash.echo", {})


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 1 :].split()[1])


def _state_of(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rfind(b")") + 1 :].split()[0].decode()


async def test_a_crashed_workers_call_fails_before_the_exit_report(host: ProcHost) -> None:
    """The call a worker was running fails as soon as the worker is a zombie, with its own
    status, read from /proc (early_exit.py): its supervisor, stopped here, neither reaps it nor
    reports, so the fork server's `exited` report cannot have come. The report still comes
    afterwards and reaps it."""
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        pid = pid_of(crash, await crash.call("crash.echo", {}))
        parent = _parent_of(pid)  # the PID namespace's supervisor, or the fork server without one
        call = asyncio.ensure_future(crash.call("crash.slow", {"seconds": 20}))
        while crash.busy_workers == 0:
            await asyncio.sleep(0.01)
        os.kill(parent, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(Crashed, match="SIGKILL"):
                await asyncio.wait_for(call, 10)
            assert _state_of(pid) == "Z", "not reaped: no exit report could have been sent"
        finally:
            os.kill(parent, signal.SIGCONT)
        assert crash.stats.crashes == 1, "counted when the call failed, as with the report"
        assert await wait_gone([pid]) == []
        await crash.call("crash.echo", {})
    await assert_no_leftovers(host, "hostile-crash")
    assert crash.stats.crashes == 1, "and not again when the report came"


async def test_a_worker_over_its_cpu_time_is_a_resource_limit_before_the_exit_report(tmp_path: Path) -> None:
    """pid 1 of a PID namespace ignores the CPU soft limit's SIGXCPU and dies of the hard
    limit's SIGKILL; read from its zombie alone (the supervisor, stopped, cannot report), that
    death is still the CPU limit, as the supervisor would report it, not a crash."""
    policy = write_policy(tmp_path / "p.json", maxCpuSeconds=1)
    async with ProcHost(policy, logs_dir=tmp_path / "logs", scratch_root=tmp_path / "scratch") as host:
        crash = session(host, "hostile-crash")
        async with asyncio.timeout(SAFETY_S):
            pid = pid_of(crash, await crash.call("crash.echo", {}))
            parent = _parent_of(pid)
            os.kill(parent, signal.SIGSTOP)
            try:
                with pytest.raises(ResourceLimit, match="maxCpuSeconds 1"):
                    await crash.call("crash.burn", {})
                assert _state_of(pid) == "Z", "not reaped: the answer came from the zombie"
            finally:
                os.kill(parent, signal.SIGCONT)
        await assert_no_leftovers(host, "hostile-crash")


async def test_a_closing_host_leaves_its_fork_server_to_reap_every_child(tmp_path: Path) -> None:
    """A worker's `exited` report goes out once its supervisor has reaped it, while the
    supervisor itself may still be on its way out. So a host that closes does not kill a fork
    server that has spawned: the server kills and reaps every child it still has when its control
    socket closes, and ends by itself. Killed instead, it would leave orphans (seen: a
    supervisor still there after `kumix serve` had exited)."""
    policy = write_policy(tmp_path / "p.json")
    host = ProcHost(policy, logs_dir=tmp_path / "logs", scratch_root=tmp_path / "scratch")
    async with host:
        crash = session(host, "hostile-crash")
        async with asyncio.timeout(SAFETY_S):
            await crash.call("crash.echo", {})
        server = host.forkserver_pid
        assert server is not None
        below = proc_pids_of(server)
        assert below, "the worker (and its supervisor, with a PID namespace)"
    assert host.forkserver.returncode == 0, "the server ended by itself"
    left = []
    for pid in [server, *below]:
        try:
            os.kill(pid, 0)  # a zombie counts: nobody reaped it
            left.append(pid)
        except ProcessLookupError:
            pass
    assert left == [], "every process of the host is reaped"


def test_a_zombie_status_is_read_only_from_a_zombie_and_never_as_0() -> None:
    from kumix.extensions.proc.early_exit import ZombieExit, parse_zombie_stat

    def line(comm: bytes, state: bytes, exit_code: int, utime: int = 7, stime: int = 5) -> bytes:
        fields = [state, *[b"0"] * 48, str(exit_code).encode()]  # fields 3..52
        fields[14 - 3], fields[15 - 3] = str(utime).encode(), str(stime).encode()
        return b"123 (" + comm + b") " + b" ".join(fields) + b"\n"

    assert parse_zombie_stat(line(b"python", b"Z", 9)) == ZombieExit(9, 12)
    assert parse_zombie_stat(line(b"py) Z 1 2 (x", b"Z", 256 * 42)) == ZombieExit(256 * 42, 12), "a name with ')'"
    assert parse_zombie_stat(line(b"python", b"R", 9)) is None, "alive: nothing to read yet"
    assert parse_zombie_stat(line(b"python", b"Z", 0)) is None, "0 may be a denied read"
    assert parse_zombie_stat(line(b"python", b"Z", 9, utime=-1)) is None
    assert parse_zombie_stat(b"123 (python) Z 1 2") is None, "too short"
    assert parse_zombie_stat(b"no parenthesis") is None


def test_a_zombies_sigkill_past_its_cpu_soft_limit_reads_as_sigxcpu_and_near_it_as_unknown() -> None:
    from kumix.extensions.proc.early_exit import ZombieExit, reported_status

    kill, xcpu = int(signal.SIGKILL), int(signal.SIGXCPU)
    assert reported_status(ZombieExit(kill, 200), 1, 100) == xcpu, "2 s of CPU, soft limit 1 s"
    assert reported_status(ZombieExit(kill, 100), 1, 100) == xcpu, "at the limit: the kernel's SIGXCPU came first"
    assert reported_status(ZombieExit(kill, 99), 1, 100) is None, "rounded down: may be at the limit"
    assert reported_status(ZombieExit(kill, 97), 1, 100) == kill, "short of it even rounded up: a kill"
    assert reported_status(ZombieExit(256 * 42, 500), 1, 100) == 256 * 42, "only a SIGKILL is read again"
    assert reported_status(ZombieExit(int(signal.SIGSEGV), 500), 1, 100) == int(signal.SIGSEGV)


async def test_worker_cannot_kill_itself_as_pid_one_but_the_host_can(host: ProcHost) -> None:
    """A worker is pid 1 of its own PID namespace: its own SIGKILL is ignored (the kernel
    delivers a default-action signal to a namespace's init only from an ancestor namespace),
    while the host's, by the pid the fork server reported, ends it."""
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        assert await crash.call("crash.sigkill", {}) == {"survived": True}
        pid = pid_of(crash, await crash.call("crash.echo", {}))
        os.kill(pid, signal.SIGKILL)
        assert await wait_gone([pid]) == []
        # The host notices the death by itself; a call sent before it has would go to the
        # dead worker and fail as `crashed` (its own call only, as designed).
        while host.stats("hostile-crash")["crashes"] < 1:
            await asyncio.sleep(0.01)
        assert pid_of(crash, await crash.call("crash.echo", {})) != pid


async def test_worker_that_closes_its_channel_is_killed(host: ProcHost) -> None:
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        await crash.call("crash.echo", {})
        first = crash.worker_pids[-1]
        with pytest.raises(Crashed, match="closed its channel but kept running"):
            await crash.call("crash.close_channel", {})
        assert await wait_gone([first]) == []
    await assert_no_leftovers(host, "hostile-crash")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("frames.garbage", "malformed frame"),
        ("frames.unknown_id", "unknown id 999999"),
        ("frames.duplicate", "duplicate reply for id 1"),
        ("frames.forged_code", "may not answer with error code 'policy_denied'"),
    ],
)
async def test_garbage_and_spoofed_frames_end_the_worker(
    host: ProcHost, caplog: pytest.LogCaptureFixture, method: str, expected: str
) -> None:
    frames = session(host, "hostile-frames")
    async with asyncio.timeout(SAFETY_S):
        # id 1 is the first request a worker sees; the spoofing handlers rely on it.
        first_call = asyncio.ensure_future(frames.call(method, {"my_id": 1}))
        await asyncio.sleep(0)
        if method == "frames.duplicate":
            # The early, well-formed reply answered the call and made its worker idle until the
            # runtime's second reply arrives: a call sent in between would share its fate, so
            # this case has no bystander.
            assert await first_call == {"first": True}
            broken = frames.worker_pids[0]
        else:
            # The violating worker never becomes idle, so the bystander runs on a second worker.
            bystander = asyncio.ensure_future(frames.call("frames.slow", {"seconds": 0.05}))
            results = await asyncio.gather(first_call, bystander, return_exceptions=True)
            assert isinstance(results[0], Crashed), results[0]
            assert expected in str(results[0])
            assert isinstance(results[1], dict), results[1]
            assert results[1]["slept"] is True
            assert len(frames.worker_pids) == 2
            (broken,) = [pid for pid in frames.worker_pids if pid != pid_of(frames, results[1])]
        assert await wait_gone([broken]) == []
        assert await frames.call("frames.echo", {"ok": True}) == {"ok": True}
        await assert_echo_answers(host)
    assert any(expected in r.getMessage() for r in caplog.records if r.name == "kumix.proc"), caplog.text
    await assert_no_leftovers(host, "hostile-frames", "friendly-echo")


async def test_stdout_spam_goes_to_a_capped_log_never_the_channel(host: ProcHost, tmp_path: Path) -> None:
    spam = session(host, "hostile-stdout")
    async with asyncio.timeout(SAFETY_S):
        assert await spam.call("spam.print", {"lines": 400}) == {"done": True}
        assert await spam.call("spam.print", {"lines": 10}) == {"done": True}
    log = tmp_path / "logs" / "hostile-stdout.log"
    assert log.exists()
    assert log.stat().st_size <= 65536, "RLIMIT_FSIZE caps the log"
    assert "spam at import" in log.read_text()
    assert len(spam.worker_pids) == 1
    await assert_no_leftovers(host, "hostile-stdout")


async def test_worker_that_never_answers_ping_times_out(host: ProcHost) -> None:
    silent = session(host, "hostile-silent")
    async with asyncio.timeout(SAFETY_S):
        # Started first: on a loaded machine a cold start can use up the 500 ms deadline, and
        # the ping would then expire in the queue instead of on the silent worker.
        await silent.warm()
        first = silent.worker_pids[0]
        with pytest.raises(CallTimeout):
            await silent.ping()
        assert await wait_gone([first]) == []
        await assert_echo_answers(host)
    await assert_no_leftovers(host, "hostile-silent", "friendly-echo")


async def test_broken_entry_file_fails_with_its_reason(host: ProcHost) -> None:
    broken = session(host, "hostile-import")
    async with asyncio.timeout(SAFETY_S):
        with pytest.raises(KumixError, match="broken on purpose"):
            await broken.call("import.anything", {})
    await assert_no_leftovers(host, "hostile-import")
    # A worker that never became ready is one failed start, counted once: its zombie (read
    # while the start is wound up) is not counted again.
    assert broken.stats.crashes == 1


# ------------------------------------------------------------------ concurrency and crash policy


async def test_queue_is_bounded_and_overflow_is_unavailable(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", maxConcurrency=1, maxQueue=1)
    async with ProcHost(policy, logs_dir=tmp_path / "logs") as host:
        crash = session(host, "hostile-crash")
        async with asyncio.timeout(SAFETY_S):
            await crash.call("crash.echo", {})
            running_call = asyncio.ensure_future(crash.call("crash.slow", {"seconds": 0.2}))
            await asyncio.sleep(0)
            queued = asyncio.ensure_future(crash.call("crash.slow", {"seconds": 0.01}))
            await asyncio.sleep(0)
            with pytest.raises(Unavailable, match="busy"):
                await crash.call("crash.echo", {})
            assert await running_call == {"slept": True}
            assert await queued == {"slept": True}


async def test_crash_loop_opens_the_circuit_until_reset(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", maxCrashes=3)
    async with ProcHost(policy, logs_dir=tmp_path / "logs") as host:
        crash = session(host, "hostile-crash")
        async with asyncio.timeout(SAFETY_S):
            for _ in range(3):
                with pytest.raises(Crashed):
                    await crash.call("crash.exit", {})
            with pytest.raises(Unavailable, match="crashed 3 times"):
                await crash.call("crash.echo", {})
            await assert_echo_answers(host)
            await crash.reset()
            assert (await crash.call("crash.echo", {"back": 1}))["back"] == 1
        assert crash.stats.crashes == 3
        await assert_no_leftovers(host, "hostile-crash", "friendly-echo")


async def test_host_close_fails_pending_calls_and_reaps_everything(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json")
    host = ProcHost(policy, logs_dir=tmp_path / "logs")
    crash = session(host, "hostile-crash")
    async with asyncio.timeout(SAFETY_S):
        await crash.call("crash.echo", {})
        pending = asyncio.ensure_future(crash.call("crash.slow", {"seconds": 5}))
        await asyncio.sleep(0.05)
        pids = list(crash.worker_pids)
        forkserver = host.forkserver_pid
        await host.aclose()
        with pytest.raises(Unavailable):
            await pending
    assert forkserver is not None
    assert await wait_gone([*pids, forkserver]) == []
    assert not any(running(pid) for pid in pids)


def test_fixture_records_are_valid() -> None:
    assert "hostile-loop" in records()
