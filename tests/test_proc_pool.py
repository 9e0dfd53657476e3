"""A session's worker pool: real concurrency, and one bad call costs only itself.

Real workers from the fork server, under the same test policy (and the same confinement) as
`test_proc_host.py`. `pool-probe` lets a test steer calls without timing: `probe.gather`
succeeds only when N calls run at once, `probe.hold` runs until the test creates a flag
file in the extension's scratch directory. `asyncio.timeout(SAFETY_S)` and `until` are
safety nets; no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kumix.core.errors import CallTimeout, Crashed, Disabled, OutputTooLarge, Unavailable
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.session import ProcSession
from tests.proc_support import pid_of, running, session, wait_gone, write_policy

SAFETY_S = 60


@asynccontextmanager
async def probe_host(
    tmp_path: Path, *, deadline_ms: int | None = None, **limits: Any
) -> AsyncIterator[tuple[ProcHost, ProcSession, Path]]:
    """A host with the given policy limits, the probe's session and its scratch directory."""
    if deadline_ms is not None:  # the probe's manifest asks for 20 s; the policy caps it
        limits.update(defaultTimeoutMs=deadline_ms, maxTimeoutMs=deadline_ms)
    policy = write_policy(tmp_path / "policy.json", **limits)
    async with ProcHost(policy, logs_dir=tmp_path / "logs", scratch_root=tmp_path / "scratch") as host:
        yield host, session(host, "pool-probe"), tmp_path / "scratch" / "pool-probe"


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state of the pool (the enclosing asyncio.timeout is the net)."""
    while not condition():
        await asyncio.sleep(0.005)


def start(probe: ProcSession, method: str, **params: Any) -> asyncio.Future[Any]:
    return asyncio.ensure_future(probe.call(method, params))


def session_tasks(extension_id: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"kumix-proc-{extension_id}")]


async def test_calls_run_concurrently_up_to_max_concurrency(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=3, maxQueue=8) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            # Each gather answers only once 3 calls are inside a worker at the same time; the
            # last 3 queue behind the first 3 and find their peers' marks already there.
            results = await asyncio.gather(*(start(probe, "probe.gather", tag="a", peers=3) for _ in range(6)))
        pids = {pid_of(probe, r) for r in results}
        assert len(pids) == 3, "three calls ran at once, each in its own worker"
        assert sorted(probe.worker_pids) == sorted(pids), "never more workers than maxConcurrency"
        stats = probe.stats.snapshot()
        assert (stats["ok"], stats["errors"], stats["crashes"]) == (6, {}, 0)
        assert (stats["workers"], stats["busy"], stats["queued"]) == (3, 0, 0)
        leftover = list(probe.worker_pids)
    assert await wait_gone(leftover) == []


async def test_a_spinning_call_times_out_while_running_and_queued_siblings_succeed(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, maxQueue=8, deadline_ms=4000) as (host, probe, scratch):
        async with asyncio.timeout(SAFETY_S):
            spin = start(probe, "probe.spin")
            held = start(probe, "probe.hold", flag="go")
            queued = [start(probe, "probe.echo", n=i) for i in range(3)]
            await until(lambda: probe.busy_workers == 2)
            assert probe.queue_depth == 3, "both workers are busy, so the echoes wait in the host"
            (scratch / "go").touch()
            held_result = await held
            echoes = await asyncio.gather(*queued)
            assert not spin.done(), "the siblings finished while the spinner still ran"
            with pytest.raises(CallTimeout):
                await spin
        assert [e["n"] for e in echoes] == [0, 1, 2]
        held_pid = pid_of(probe, held_result)
        assert {pid_of(probe, e) for e in echoes} == {held_pid}, "queued calls went to the other worker"
        (spinner,) = [pid for pid in probe.worker_pids[:2] if pid != held_pid]
        assert await wait_gone([spinner]) == []
        assert running(held_pid), "killing the spinner touched no other worker"
        stats = probe.stats.snapshot()
        assert (stats["ok"], stats["errors"], stats["timeouts"]) == (4, {"timeout": 1}, 1)


async def test_the_call_right_after_a_timeout_kill_waits_for_a_worker(tmp_path: Path) -> None:
    # The echo's deadline also covers starting the replacement worker: on a machine loaded
    # far beyond its cores that start alone took over 1.5 s, so the deadline leaves room.
    async with probe_host(tmp_path, maxConcurrency=1, deadline_ms=4000) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            previous = pid_of(probe, await probe.call("probe.echo", {}))
            for round_ in range(2):
                with pytest.raises(CallTimeout):
                    await probe.call("probe.spin", {})
                # No await in between: the killed worker may not even be reaped yet.
                answer = await probe.call("probe.echo", {"round": round_})
                assert answer["round"] == round_
                assert pid_of(probe, answer) != previous, "served by the replacement, never the killed worker"
                assert await wait_gone([previous]) == []
                previous = pid_of(probe, answer)
        stats = probe.stats.snapshot()
        assert stats["errors"] == {"timeout": 2}, "no call failed as crashed"
        assert stats["restarts"] == 2


async def test_queue_overflow_is_unavailable_at_once_and_nothing_hangs(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=1, maxQueue=2) as (host, probe, scratch):
        async with asyncio.timeout(SAFETY_S):
            held = start(probe, "probe.hold", flag="go")
            queued = [start(probe, "probe.echo", n=i) for i in range(2)]
            await until(lambda: probe.busy_workers == 1)
            snapshot = probe.stats.snapshot()
            assert (snapshot["workers"], snapshot["busy"], snapshot["queued"]) == (1, 1, 2)
            with pytest.raises(Unavailable, match="busy"):
                await probe.call("probe.echo", {})
            with pytest.raises(Unavailable, match="busy"):
                await probe.ping()
            assert probe.queue_depth == 2, "a refused call is never queued"
            (scratch / "go").touch()
            held_result = await held
            echoes = await asyncio.gather(*queued)
            assert [e["n"] for e in echoes] == [0, 1]
            assert {pid_of(probe, e) for e in echoes} == {pid_of(probe, held_result)}
            assert (await probe.call("probe.echo", {"after": 1}))["after"] == 1
        assert probe.stats.snapshot()["errors"] == {"unavailable": 1}
        assert len(probe.worker_pids) == 1


async def test_an_oversized_frame_fails_only_its_own_call(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, maxQueue=8) as (host, probe, scratch):
        async with asyncio.timeout(SAFETY_S):
            held = start(probe, "probe.hold", flag="go")
            big = start(probe, "probe.oversized")
            queued = start(probe, "probe.echo", queued=True)
            with pytest.raises(OutputTooLarge, match="1073741824"):
                await big
            # The held call still occupies its worker, so the queued call can only have run on
            # the replacement of the worker that was killed.
            echo = await queued
            assert not held.done()
            (scratch / "go").touch()
            held_result = await held
        assert held_result["held"] is True
        assert len(probe.worker_pids) == 3
        (cut,) = set(probe.worker_pids) - {pid_of(probe, held_result), pid_of(probe, echo)}
        assert await wait_gone([cut]) == []
        assert probe.stats.snapshot()["errors"] == {"output_too_large": 1}


async def test_a_crash_mid_call_fails_only_that_call_and_the_circuit_still_opens(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, maxQueue=8, maxCrashes=3) as (host, probe, scratch):
        async with asyncio.timeout(SAFETY_S):
            held = start(probe, "probe.hold", flag="go")
            await until(lambda: probe.busy_workers == 1)
            for round_ in range(2):
                crash = start(probe, "probe.exit")
                queued = start(probe, "probe.echo", round=round_)
                with pytest.raises(Crashed, match="status 42"):
                    await crash
                assert (await queued)["round"] == round_, "the queued call went to the replacement"
            crash = start(probe, "probe.exit")
            queued = start(probe, "probe.echo")
            with pytest.raises(Crashed, match="status 42"):
                await crash
            # The third crash of this extension opens its circuit, whichever worker crashed.
            with pytest.raises(Unavailable, match="crashing repeatedly"):
                await queued
            with pytest.raises(Unavailable, match="crashed 3 times"):
                await probe.call("probe.echo", {})
            assert not held.done(), "the circuit refuses new calls; a running one goes on"
            (scratch / "go").touch()
            assert (await held)["held"] is True
            await probe.reset()
            assert (await probe.call("probe.echo", {"back": 1}))["back"] == 1
        stats = probe.stats.snapshot()
        assert stats["crashes"] == 3
        assert stats["errors"] == {"crashed": 3, "circuit_open": 2}


async def test_dispose_fails_running_and_queued_calls_at_once_and_reaps_every_worker(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, maxQueue=4) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            # The flags are never created: only dispose can end these calls before their
            # 20 s deadline (which would answer extension_error, not disabled).
            calls = [start(probe, "probe.hold", flag=f"never-{i}") for i in range(2)]
            calls += [start(probe, "probe.echo", n=i) for i in range(2)]
            await until(lambda: probe.busy_workers == 2)
            assert probe.queue_depth == 2
            pids = list(probe.worker_pids)
            await host.dispose("pool-probe")
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, Disabled) for r in results), results
        assert probe.live_pids == []
        assert session_tasks("pool-probe") == [], "no worker task outlives the session"
        assert not any(running(pid) for pid in pids), "dispose reaped every worker before returning"
        with pytest.raises(Disabled):
            await probe.call("probe.echo", {})


async def test_host_close_fails_every_call_of_every_pool(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, maxQueue=4) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            calls = [start(probe, "probe.hold", flag="never") for _ in range(3)]
            await until(lambda: probe.busy_workers == 2)
            pids = list(probe.worker_pids)
            forkserver = host.forkserver_pid
            await host.aclose()
            results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert forkserver is not None
    assert await wait_gone([*pids, forkserver]) == []
    assert session_tasks("pool-probe") == []


async def test_idle_workers_beyond_the_first_retire_without_counting_as_crashes(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=3, maxQueue=8) as (host, probe, _):
        probe.idle_retire_s = 0.0
        async with asyncio.timeout(SAFETY_S):
            tag = uuid.uuid4().hex
            results = await asyncio.gather(*(start(probe, "probe.gather", tag=tag, peers=3) for _ in range(3)))
            assert len({r["channel"] for r in results}) == 3
            await until(lambda: len(probe.live_pids) == 1)
            (kept,) = probe.live_pids
            assert await wait_gone([pid for pid in probe.worker_pids if pid != kept]) == []
            assert pid_of(probe, await probe.call("probe.echo", {})) == kept, "one warm worker stays"
        stats = probe.stats.snapshot()
        assert (stats["crashes"], stats["restarts"], stats["errors"]) == (0, 0, {})


async def test_a_spare_worker_takes_over_at_once_when_the_warm_one_dies(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, spareWorkers=1) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            warm = pid_of(probe, await probe.call("probe.echo", {}))
            # The spare is started, confined and past its hello before anything needs it.
            await until(lambda: len(probe.live_pids) == 2)
            (spare,) = [pid for pid in probe.live_pids if pid != warm]
            os.kill(warm, signal.SIGKILL)
            await until(lambda: probe.current_pid != warm)
            started_before_the_answer = list(probe.worker_pids)
            answer = await probe.call("probe.echo", {"after": "crash"})
            assert pid_of(probe, answer) == spare, "the spare answered, no fork stood between crash and answer"
            assert spare in started_before_the_answer
            # The spare became the warm worker; a new spare takes its place.
            await until(lambda: warm not in probe.live_pids and len(probe.live_pids) == 2)
        stats = probe.stats.snapshot()
        assert (stats["crashes"], stats["restarts"], stats["errors"]) == (1, 1, {})
        assert len(probe.worker_pids) == 3


async def test_serving_pid_names_the_worker_the_next_call_goes_to(tmp_path: Path) -> None:
    # With a spare, the worker that serves is the most recently used idle one, which need not
    # be the oldest (`current_pid`): benchmarks sample and kill this one.
    async with probe_host(tmp_path, maxConcurrency=2, spareWorkers=1) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            await probe.call("probe.echo", {})
            await until(lambda: len(probe.live_pids) == 2)
            for n in range(5):
                expected = probe.serving_pid
                assert expected in probe.live_pids
                assert pid_of(probe, await probe.call("probe.echo", {"n": n})) == expected


async def test_spares_count_against_max_concurrency(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=2, spareWorkers=1) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            tag = uuid.uuid4().hex
            results = await asyncio.gather(*(start(probe, "probe.gather", tag=tag, peers=2) for _ in range(2)))
            assert len({r["channel"] for r in results}) == 2
            await until(lambda: probe.busy_workers == 0)
            assert probe.stats.snapshot()["workers"] == 2
        assert len(probe.worker_pids) == 2, "both slots served calls; no third process for a spare"


async def test_answered_calls_leave_one_deadline_timer_and_a_late_call_still_times_out(tmp_path: Path) -> None:
    async with probe_host(tmp_path, maxConcurrency=1, deadline_ms=1500) as (host, probe, _):
        async with asyncio.timeout(SAFETY_S):
            await probe.warm()  # a cold start on a loaded machine can outlast the short deadline
            await probe.call("probe.echo", {})
            armed = probe._deadline_timer
            assert armed is not None, "the first call armed the session's deadline timer"
            for i in range(50):
                assert (await probe.call("probe.echo", {"n": i}))["n"] == i
                # An answered call cancels nothing and arms nothing: same timer, later deadlines.
                assert probe._deadline_timer is armed
            worker = probe.current_pid
            with pytest.raises(CallTimeout):
                await probe.call("probe.spin", {})
            assert worker is not None
            assert await wait_gone([worker]) == [], "the worker that ran past its deadline was killed"
            assert (await probe.call("probe.echo", {"after": 1}))["after"] == 1
        stats = probe.stats.snapshot()
        assert stats["errors"] == {"timeout": 1}
        assert stats["ok"] == 52
