"""CPU per warm round trip, host and worker: where the CPU of one `ping` goes.

    .venv/bin/python bench/proc_cpu.py [--mode strict|dev|raw] [--pings N] [--rounds R]
                                       [--pin CPU] [--burners]

Under load a closed-loop round trip's latency is its CPU cost over its CPU share, so this is the
figure to compare (bench/README.md, "Warm ping, third pass"). For each round of N pings it prints
the wall time per ping and the CPU per ping of the host and of every worker (and, confined, the
PID-namespace supervisor between them), from each process's `sum_exec_runtime`
(/proc/PID/schedstat, ns). `--mode raw` measures the raw asyncio pipe echo of bench/proc_rtt.py
the same way. `--pin CPU` pins the host before its fork server starts (workers inherit it): the
pair alternates on one CPU and neither side spins. `--burners` starts two CPU-bound processes
for the run, as proc_rtt's burners profile does. Not a test: nothing here asserts a threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from proc_rtt import BURNER, raw_echo_child, session_for

from kumix.extensions.policy import load_policy
from kumix.extensions.proc.eventloop import new_event_loop
from kumix.extensions.proc.host import ProcHost

SIMULATE = "KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE"


def cpu_ns(pids: list[int]) -> int:
    """CPU time used so far by these processes (every thread), in ns."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def rounds_of(
    ping: Callable[[], Awaitable[object]], n: int, rounds: int, host: list[int], workers: list[int], others: list[int]
) -> list[tuple[float, float, float, float]]:
    """Per round: wall, host CPU, worker CPU, other CPU (µs per ping)."""
    results = []
    for _ in range(rounds):
        h0, w0, o0 = cpu_ns(host), cpu_ns(workers), cpu_ns(others)
        t0 = time.perf_counter()
        for _ in range(n):
            await ping()
        wall = time.perf_counter() - t0
        h1, w1, o1 = cpu_ns(host), cpu_ns(workers), cpu_ns(others)
        results.append((wall / n * 1e6, (h1 - h0) / n / 1e3, (w1 - w0) / n / 1e3, (o1 - o0) / n / 1e3))
    return results


async def kumix(mode: str, n: int, rounds: int) -> list[tuple[float, float, float, float]]:
    if mode == "dev":
        os.environ[SIMULATE] = "all"
    with tempfile.TemporaryDirectory() as tmp:
        async with ProcHost(load_policy(mode), logs_dir=Path(tmp)) as host:
            session = session_for(host, "markdown-renderer")
            await session.ping()
            os.environ.pop(SIMULATE, None)
            while len(session.live_pids) < 1 + session.limits.spare_workers:
                await asyncio.sleep(0.01)  # the spare, once ready, is the worker that serves
            for _ in range(2000):
                await session.ping()
            workers = session.live_pids
            supervisors = [p for w in workers if (p := parent_of(w)) != host.forkserver_pid]
            return await rounds_of(session.ping, n, rounds, [os.getpid()], workers, supervisors)


async def raw(n: int, rounds: int) -> list[tuple[float, float, float, float]]:
    async with raw_echo_child() as (ping, pid):
        for _ in range(2000):
            await ping()
        return await rounds_of(ping, n, rounds, [os.getpid()], [pid], [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["strict", "dev", "raw"], default="strict")
    parser.add_argument("--pings", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", type=int, default=None, help="pin the host (and its workers) to this CPU")
    parser.add_argument("--burners", action="store_true", help="two CPU-bound processes beside the run")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(2 if args.burners else 0)]
    try:
        time.sleep(0.3 if burners else 0)
        load = os.getloadavg()
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            if args.mode == "raw":
                results = runner.run(raw(args.pings, args.rounds))
            else:
                results = runner.run(kumix(args.mode, args.pings, args.rounds))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    side = "child" if args.mode == "raw" else "worker"
    for wall, host, worker, other in results:
        extra = f", supervisor {other:.2f}" if args.mode == "strict" else ""
        print(f"{args.mode:6} wall {wall:7.1f} µs/ping   CPU: host {host:6.2f} + {side} {worker:6.2f}"
              f" = {host + worker:6.2f} µs{extra}")
    total = statistics.median(h + w for _, h, w, _ in results)
    print(f"median CPU per round trip {total:.2f} µs; load average before {load[0]:.2f}; "
          f"{'pinned to CPU ' + str(args.pin) if args.pin is not None else 'free'}"
          f"{', two burners' if burners else ''}")


if __name__ == "__main__":
    main()
