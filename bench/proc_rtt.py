"""Proc host round trips, side by side with their baselines, under two load profiles, one run.

    .venv/bin/python bench/proc_rtt.py [--iterations N] [--no-browser] [--same-cpu]
                                       [--profiles idle,burners]

Load profiles, each measured in full (baselines included) before the next starts:
- `idle`: nothing added by the benchmark (the machine's own background load is printed with
  the load average before and after);
- `burners`: two CPU-bound processes (`while True: pass`, one per CPU of this 2-core machine)
  that the benchmark starts before the profile and kills after it: the busy machine a user
  has when Chromium runs beside Kumix.
Figures per profile (medians of three interleaved rounds):
- warm `ping` round trip through ProcSession, confined (policy strict) and unconfined
  (confinement layers simulated off, policy dev) — vs a raw asyncio pipe echo (uvloop,
  msgspec, length-prefixed frames, blocking child) and a Chromium Web Worker postMessage echo,
  both measured under the same profile; targets: <= 1.5x the raw echo and <= 0.75x the
  Chromium worker;
- 10 KB markdown render through the host (worker render + host nh3 sanitize) vs the same
  markdown-it-py + nh3 work in-process; target <= 1.1x;
- cold start: a new host's first ping called at once (fork server start + fork + hello, no
  overlap), the fork server's own start to ready (worker essentials imported) and to
  preloaded (every PRELOAD_MODULES module), the first ping of a new host whose fork server
  has preloaded (what a process sees whose own start-up takes longer than that: the server
  starts when the host opens and runs beside it), and a new session on a warm fork server
  (first call after enable) — vs a Chromium Web Worker's start to first reply;
- ready after crash: SIGKILL the warm worker, time until a ping succeeds again (the policy's
  spare worker in place, as in steady state).
Each ping figure comes with its CPU placement (how often host and worker were seen on the
same CPU) and the spread of its rounds. `--same-cpu` pins the host, its fork servers and
workers, and the raw echo to one CPU. Not a test: nothing here asserts a threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumix.extensions.policy import Policy, load_policy
from kumix.extensions.proc.eventloop import new_event_loop
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.session import ProcSession
from kumix.extensions.registry import discover

SIMULATE = "KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]

MARKDOWN_10K = (
    "# Release notes\n\nSome **bold** and *italic* text with `code`, ~~old~~ and https://matrix.org.\n\n"
    "| col a | col b |\n|---|--:|\n| 1 | 2 |\n\n- item one\n- item two\n\n> quoted <b>html</b>\n\n"
) * 40
MARKDOWN_10K = MARKDOWN_10K[:10_240]


def median_of_rounds(samples: list[float]) -> float:
    return statistics.median(samples)


async def per_call(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n


def session_for(host: ProcHost, extension_id: str) -> ProcSession:
    record = {r.id: r for r in discover()}[extension_id]
    assert record.manifest is not None
    return host.session(record.id, record.path, record.manifest)


# ---------------------------------------------------------------- baselines

ECHO_CHILD = textwrap.dedent(
    """
    import os, struct, sys, msgspec
    r, w = int(sys.argv[1]), int(sys.argv[2])
    H = struct.Struct(">I")
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        (n,) = H.unpack_from(data, 0)
        msg = msgspec.json.decode(data[4:4 + n])
        body = msgspec.json.encode({"id": msg["id"], "result": {"pong": True}})
        os.write(w, H.pack(len(body)) + body)
    """
)


@asynccontextmanager
async def raw_echo_child() -> AsyncIterator[tuple[Callable[[], Awaitable[None]], int]]:
    """The baseline: a length-prefixed msgspec ping to a plain Python echo child over two
    pipes on this loop; yields the ping and the child's pid, and ends the child after."""
    import struct

    import msgspec

    header = struct.Struct(">I")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", ECHO_CHILD, str(to_child_r), str(from_child_w)], pass_fds=[to_child_r, from_child_w]
    )
    os.close(to_child_r)
    os.close(from_child_w)
    loop = asyncio.get_running_loop()
    state: dict[str, asyncio.Future[bytes]] = {}

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            state["f"].set_result(data)

    await loop.connect_read_pipe(Reader, os.fdopen(from_child_r, "rb", buffering=0))
    writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(to_child_w, "wb", buffering=0))

    async def ping() -> None:
        state["f"] = loop.create_future()
        body = msgspec.json.encode({"id": 1, "method": "ping", "params": {}})
        writer.write(header.pack(len(body)) + body)
        data = await state["f"]
        msgspec.json.decode(data[4:])

    try:
        yield ping, child.pid
    finally:
        writer.close()
        child.kill()
        child.wait()


async def raw_pipe_echo(n: int, rounds: int, placement: Placement) -> list[float]:
    async with raw_echo_child() as (ping, pid):
        await per_call(ping, 200)
        results = []
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(n):
                await ping()
                if i % 100 == 99:
                    placement.sample(pid)
            results.append((time.perf_counter() - start) / n)
        return results


def in_process_render(n: int, rounds: int) -> list[float]:
    from markdown_it import MarkdownIt

    from kumix.extensions.sanitize import sanitize_html

    md = MarkdownIt("commonmark", {"html": False, "linkify": True}).enable(["table", "strikethrough", "linkify"])
    for _ in range(20):
        sanitize_html(md.render(MARKDOWN_10K))
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            sanitize_html(md.render(MARKDOWN_10K))
        results.append((time.perf_counter() - start) / n)
    return results


BROWSER_PAGE = """
<script>
const src = `onmessage = (e) => postMessage(e.data);`;
const url = URL.createObjectURL(new Blob([src], {type: "text/javascript"}));
window.bench = async (n, payload) => {
  const t0 = performance.now();
  const w = new Worker(url);
  await new Promise((res) => { w.onmessage = res; w.postMessage("hi"); });
  const start = performance.now() - t0;
  const once = () => new Promise((res) => { w.onmessage = res; w.postMessage(payload); });
  for (let i = 0; i < 200; i++) await once();
  const rounds = [];
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) await once();
    rounds.push((performance.now() - t) / n);
  }
  w.terminate();
  return {start, rounds};
};
</script>
"""


def chromium_worker(n: int) -> dict[str, Any] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_content(BROWSER_PAGE)
        small = page.evaluate("([n]) => window.bench(n, {id: 1, method: 'ping', params: {}})", [n])
        big = page.evaluate("([n, s]) => window.bench(n, {id: 1, method: 'render', params: {source: s}})",
                            [n, MARKDOWN_10K])
        starts = [page.evaluate("([n]) => window.bench(1, 'x')", [1])["start"] for _ in range(5)]
        browser.close()
    return {
        "ping": [ms / 1000 for ms in small["rounds"]],
        "payload_10k": [ms / 1000 for ms in big["rounds"]],
        "start": statistics.median(starts) / 1000,
    }


# ---------------------------------------------------------------- Kumix


def cpu_of(pid: int) -> int:
    """The CPU a process last ran on (field 39 of /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[36])


class Placement:
    """How often the host and the worker were last seen on the same CPU. On a virtual machine
    a wake-up of a task on another, idle vCPU costs tens of microseconds; the kernel keeps a
    ping-pong pair on one CPU or on two for long stretches, so every ping figure is printed
    with the placement it was measured under."""

    def __init__(self) -> None:
        self.same = 0
        self.total = 0

    def sample(self, worker_pid: int | None) -> None:
        if worker_pid is None:
            return
        try:
            same = cpu_of(worker_pid) == cpu_of(os.getpid())
        except (OSError, ValueError, IndexError):
            return
        self.same += same
        self.total += 1

    def __str__(self) -> str:
        return f"same CPU {self.same}/{self.total}" if self.total else "placement unknown"


async def pings(session: ProcSession, n: int, placement: Placement) -> float:
    """Seconds per ping over n pings, sampling the placement every 100 calls."""
    start = time.perf_counter()
    for i in range(n):
        await session.ping()
        if i % 100 == 99:
            placement.sample(session.serving_pid)
    return (time.perf_counter() - start) / n


CRASH_ROUNDS = 3
CRASHES_PER_ROUND = 5
"""15 crashes per side, in rounds that alternate the sides (so drift and load hit both alike):
the figure is a median of single events of a few ms, which 7 in a row left to chance."""


class KumixSide:
    """One host (confined or not) and its markdown-renderer session."""

    def __init__(self, label: str, policy: Policy, logs: Path, simulate: str | None) -> None:
        self.label = label
        self.policy = policy
        self.logs = logs
        self.simulate = simulate
        self.figures: dict[str, Any] = {"ping": [], "render": []}
        self.placement = Placement()
        self.host: ProcHost | None = None
        self.md: ProcSession | None = None

    async def start(self) -> None:
        # The fork server reads the simulation variable when it starts; set it only meanwhile.
        if self.simulate is not None:
            os.environ[SIMULATE] = self.simulate
        try:
            started = time.perf_counter()
            self.host = ProcHost(self.policy, logs_dir=self.logs / "first")
            await self.host.__aenter__()
            self.md = session_for(self.host, "markdown-renderer")
            await self.md.ping()
            self.figures["cold_host"] = time.perf_counter() - started
            server = self.host.forkserver
            assert server.launched_at is not None
            assert server.ready_at is not None
            self.figures["server_ready"] = server.ready_at - server.launched_at
            # A second new host whose first call comes after its fork server is up: what a
            # process sees whose own start-up outlasts the server's (they run in parallel).
            async with ProcHost(self.policy, logs_dir=self.logs / "second") as later:
                await later.forkserver.wait_ready()
                up = later.forkserver
                while up.preloaded_at is None:
                    await asyncio.sleep(0.002)
                assert up.launched_at is not None
                self.figures["server_preloaded"] = up.preloaded_at - up.launched_at
                started = time.perf_counter()
                await session_for(later, "markdown-renderer").ping()
                self.figures["cold_host_head_start"] = time.perf_counter() - started
            theme = session_for(self.host, "theme-default")
            started = time.perf_counter()
            await theme.call("theme.tokens.provide", {})
            self.figures["cold_session"] = time.perf_counter() - started
        finally:
            os.environ.pop(SIMULATE, None)
        await per_call(self.md.ping, 200)

    async def ping_round(self, n: int) -> None:
        assert self.md is not None
        self.figures["ping"].append(await pings(self.md, n, self.placement))

    async def render_round(self, n: int) -> None:
        md = self.md
        assert md is not None

        async def render() -> None:
            await md.call("render.markdown", {"source": MARKDOWN_10K})

        if not self.figures["render"]:
            await per_call(render, 20)
        self.figures["render"].append(await per_call(render, n))

    async def crashes(self, count: int) -> None:
        md = self.md
        assert md is not None
        samples = []
        spare = md.limits.spare_workers
        for _ in range(count):
            # Steady state: the warm worker and the policy's spares are up (a crash right
            # after another one, before the spare is replaced, pays a fork: cold session).
            while len(md.live_pids) < 1 + spare:
                await asyncio.sleep(0.001)
            pid = md.serving_pid  # the worker the pings go to, not an idle spare
            assert pid is not None
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:
                try:
                    await md.ping()
                    break
                except Exception:
                    await asyncio.sleep(0)
            samples.append(time.perf_counter() - start)
            while pid in md.live_pids:  # reaped before the next round picks its victim
                await asyncio.sleep(0.001)
            await md.reset()  # keep the crash budget out of the measurement
        self.figures.setdefault("ready_after_crash", []).extend(samples)

    async def stop(self) -> None:
        if self.host is not None:
            await self.host.__aexit__(None, None, None)


async def kumix_sides(n: int, rounds: int, logs: Path) -> list[KumixSide]:
    """Both hosts run side by side and their rounds alternate, so drift and load hit both."""
    sides = [
        KumixSide("confined (strict)", load_policy("strict"), logs / "strict", None),
        KumixSide("unconfined (dev, layers off)", load_policy("dev"), logs / "dev", "all"),
    ]
    try:
        for side in sides:
            await side.start()
        for _ in range(rounds):
            for side in sides:
                await side.ping_round(n)
        for _ in range(rounds):
            for side in sides:
                await side.render_round(max(50, n // 20))
        for _ in range(CRASH_ROUNDS):
            for side in sides:
                await side.crashes(CRASHES_PER_ROUND)
    finally:
        for side in sides:
            await side.stop()
    return sides


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


BURNER = "while True:\n    pass\n"


@dataclass
class Profile:
    name: str
    burners: int
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    figures: dict[str, Any] = field(default_factory=dict)
    sides: list[KumixSide] = field(default_factory=list)


async def measure(profile: Profile, args: argparse.Namespace) -> None:
    n, rounds = args.iterations, 3
    affinity = os.sched_getaffinity(0)
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(profile.burners)]
    try:
        await asyncio.sleep(0.2 if burners else 0)  # let the burners get going
        profile.load_before = os.getloadavg()
        if args.same_cpu:
            # Inherited by the fork servers and so by every worker: host and workers share one CPU.
            os.sched_setaffinity(0, {min(affinity)})
        with tempfile.TemporaryDirectory() as tmp:
            profile.sides = await kumix_sides(n, rounds, Path(tmp))
        raw_placement = Placement()
        profile.figures["raw"] = await raw_pipe_echo(n, rounds, raw_placement)
        profile.figures["raw_placement"] = raw_placement
        os.sched_setaffinity(0, affinity)
        profile.figures["inproc"] = in_process_render(max(50, n // 20), rounds)
        profile.figures["browser"] = None if args.no_browser else await asyncio.to_thread(chromium_worker, n)
        profile.load_after = os.getloadavg()
    finally:
        os.sched_setaffinity(0, affinity)
        for burner in burners:
            burner.kill()
            burner.wait()


def verdict(ratio: float, target: float) -> str:
    return f"(target <= {target}x: {'met' if ratio <= target else 'MISSED'})"


def report(profile: Profile, same_cpu: bool) -> None:
    figures = profile.figures
    raw, inproc, browser = figures["raw"], figures["inproc"], figures["browser"]
    before = " ".join(f"{x:.2f}" for x in profile.load_before)
    after = " ".join(f"{x:.2f}" for x in profile.load_after)
    print(f"=== profile {profile.name}: {profile.burners} CPU-bound burner(s) started by the benchmark")
    print(f"    load average (1, 5, 15 min) before {before}, after {after}; "
          f"host and workers {'pinned to one CPU' if same_cpu else 'free'}")
    raw_m = median_of_rounds(raw)
    inproc_m = median_of_rounds(inproc)
    print(f"{'':44} {'figure':>12}   ratio")
    print("— baselines")
    raw_line = f"{'raw asyncio pipe echo (uvloop, msgspec)':44} {us(raw_m)}"
    print(f"{raw_line}   {figures['raw_placement']}, rounds {spread(raw)}")
    print(f"{'in-process markdown-it-py + nh3, 10 KB':44} {us(inproc_m)}")
    browser_ping = None
    if browser:
        b = browser["ping"]
        browser_ping = median_of_rounds(b)
        print(f"{'Chromium Web Worker postMessage echo':44} {us(browser_ping)}   rounds {spread(b)}")
        print(f"{'Chromium Web Worker echo, 10 KB payload':44} {us(median_of_rounds(browser['payload_10k']))}")
        print(f"{'Chromium Web Worker start to first reply':44} {ms(browser['start'])}")
    elif "browser" in figures:
        print("Chromium Web Worker baselines: not measured (--no-browser, or Playwright or /usr/bin/chromium missing)")
    for side in profile.sides:
        sf = side.figures
        print(f"— Kumix proc host, {side.label}")
        ping = median_of_rounds(sf["ping"])
        render = median_of_rounds(sf["render"])
        crash = statistics.median(sf["ready_after_crash"])
        print(f"{'warm ping round trip':44} {us(ping)}   {ping / raw_m:5.2f}x raw pipe {verdict(ping / raw_m, 1.5)}")
        if browser_ping is not None:
            ratio = ping / browser_ping
            print(f"{'':44} {'':12}   {ratio:5.2f}x Chromium worker {verdict(ratio, 0.75)}")
        print(f"{'':44} {'':12}   {side.placement}, rounds {spread(sf['ping'])}")
        ratio = render / inproc_m
        print(f"{'10 KB markdown render round trip':44} {us(render)}   {ratio:5.2f}x in-process {verdict(ratio, 1.1)}")
        start = browser["start"] if browser else None
        for label, key in (
            ("cold: new host, first ping at once", "cold_host"),
            ("      of which fork server start to ready", "server_ready"),
            ("fork server start to preloaded (2nd host)", "server_preloaded"),
            ("cold: new host, first ping, server preloaded", "cold_host_head_start"),
            ("cold: new session, warm fork server", "cold_session"),
        ):
            line = f"{label:44} {ms(sf[key])}"
            if start:
                line += f"   {sf[key] / start:5.2f}x Chromium worker start"
            print(line)
        print(f"{'ready after crash (SIGKILL to ping ok)':44} {ms(crash)}   target <= 5 ms "
              f"(min {min(sf['ready_after_crash']) * 1e3:.2f}, max {max(sf['ready_after_crash']) * 1e3:.2f})")


async def main_async(args: argparse.Namespace) -> None:
    wanted = args.profiles.split(",")
    profiles = [Profile(name, {"idle": 0, "burners": 2}[name]) for name in wanted]
    for profile in profiles:
        await measure(profile, args)
    for profile in profiles:
        report(profile, args.same_cpu)


def spread(samples: list[float]) -> str:
    return f"{min(samples) * 1e6:.1f} to {max(samples) * 1e6:.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--same-cpu",
        action="store_true",
        help="pin the host (and so its fork servers and workers) and the raw echo to one CPU",
    )
    parser.add_argument(
        "--profiles", default="idle,burners", help="comma-separated load profiles: idle, burners (default both)"
    )
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main_async(args))


if __name__ == "__main__":
    main()
