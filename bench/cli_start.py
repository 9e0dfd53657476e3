"""Command-line start-up and the first extension call of a new process, against `python -c pass`.

    .venv/bin/python bench/cli_start.py [--rounds N] [--baseline-src DIR] [--no-call]

Each round runs every case once, in turn (so drift and other load hit all of them alike), each
as a fresh process with a fresh data directory; figures are medians over the rounds, printed
with the load average before and after and the difference to `python -c pass` measured in the
same rounds (issue 11's targets: `--version`, `ext list`, `policy show` and `doctor` within
100 ms of it).

`ext call markdown-renderer render.markdown` is the first call of a new process: its wall time,
and the call's own latency as the host recorded it (from the call to its answer; `kumix ext
info` shows it) — the part of the cold start the command's own start-up did not hide. Issue
11's target for it: <= 50 ms to a ready confined worker. Not a test: nothing here asserts a
threshold.

`--baseline-src DIR` runs every Kumix case a second time in each round with `PYTHONPATH=DIR`
(another tree's `src`, e.g. `git archive <commit> src | tar -x -C /tmp/old`, compiled with
`python -m compileall`), right after the same case of this tree, so old and new code meet the
same load; the fork server of `ext call` is this tree's either way (it starts with `-I`). CPU
time is the command's own and its children's (`RUSAGE_CHILDREN`): the figure to compare on a
busy machine. `--no-call` leaves out the `ext call` case (seconds per round under load).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KUMIX = [sys.executable, "-m", "kumix"]
CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "kumix --version": [*KUMIX, "--version"],
    "kumix ext list": [*KUMIX, "ext", "list"],
    "kumix policy show": [*KUMIX, "policy", "show"],
    "kumix doctor": [*KUMIX, "doctor"],
    "kumix ext call (render, first call)": [
        *KUMIX, "ext", "call", "markdown-renderer", "render.markdown", "--params", '{"source": "*hello*"}',
    ],
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], data_dir: Path, src: str | None = None) -> tuple[float, float, float | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    env["KUMIX_DATA_DIR"] = str(data_dir)
    if src is not None:
        env["PYTHONPATH"] = src
    cpu_before = _cpu()
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu_before
    latency = None
    if "call" in argv:
        info = subprocess.run([*KUMIX, "--json", "ext", "info", "markdown-renderer"], env=env,
                              capture_output=True, text=True, check=False)
        latency_ms = json.loads(info.stdout)["stats"]["latency_ms"]
        if latency_ms.get("samples") == 1:
            latency = latency_ms["p50"] / 1000
    return wall, cpu, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline-src", metavar="DIR", help="another tree's src, run alongside (see above)")
    parser.add_argument("--no-call", action="store_true", help="leave out the ext call case")
    args = parser.parse_args()
    cases = {name: argv for name, argv in CASES.items() if not (args.no_call and "call" in argv)}
    trees: dict[str, str | None] = {"": None}
    if args.baseline_src:
        trees = {"baseline ": str(Path(args.baseline_src).resolve()), "": None}
    runs = [(tree + name, argv, src) for name, argv in cases.items()
            for tree, src in (trees.items() if argv[1] != "-c" else [("", None)])]
    walls: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    cpus: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    latencies: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds + 1):
            for label, argv, src in runs:
                data_dir = Path(tmp) / f"{round_}-{len(walls[label])}-{abs(hash(label))}"
                data_dir.mkdir(mode=0o700)
                wall, cpu, latency = run_once(argv, data_dir, src)
                if round_ == 0:
                    continue  # warms the page cache and the .pyc files
                walls[label].append(wall)
                cpus[label].append(cpu)
                if latency is not None:
                    latencies[label].append(latency)
    load_after = os.getloadavg()
    base = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(f"load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}; medians of {args.rounds} rounds")
    print(f"{'':45} {'wall':>10}  {'over python -c pass':>20}   {'CPU':>10}  {'over':>9}")
    for label, samples in walls.items():
        median = statistics.median(samples)
        cpu = statistics.median(cpus[label])
        pass_case = label == "python -c pass"
        extra = "" if pass_case else f"{(median - base) * 1e3:+17.1f} ms"
        extra_cpu = "" if pass_case else f"{(cpu - base_cpu) * 1e3:+6.1f} ms"
        spread = f"rounds {min(samples) * 1e3:.0f} to {max(samples) * 1e3:.0f}"
        print(f"{label:45} {median * 1e3:7.1f} ms  {extra:>20}   {cpu * 1e3:7.1f} ms  {extra_cpu:>9}   ({spread})")
        if latencies[label]:
            got = latencies[label]
            print(f"{'  of which the call, to its answer':45} {statistics.median(got) * 1e3:7.1f} ms  "
                  f"(target <= 50 ms; rounds {min(got) * 1e3:.0f} to {max(got) * 1e3:.0f})")


if __name__ == "__main__":
    main()
