"""Command-line start-up and the first extension call of a new process, against `python -c pass`.

    .venv/bin/python bench/cli_start.py [--rounds N]

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
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_once(argv: list[str], data_dir: Path) -> tuple[float, float | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    env["KUMIX_DATA_DIR"] = str(data_dir)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    latency = None
    if "call" in argv:
        info = subprocess.run([*KUMIX, "--json", "ext", "info", "markdown-renderer"], env=env,
                              capture_output=True, text=True, check=False)
        latency_ms = json.loads(info.stdout)["stats"]["latency_ms"]
        if latency_ms.get("samples") == 1:
            latency = latency_ms["p50"] / 1000
    return wall, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in CASES}
    latencies: list[float] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds + 1):
            for name, argv in CASES.items():
                data_dir = Path(tmp) / f"{round_}-{len(walls[name])}-{abs(hash(name))}"
                data_dir.mkdir(mode=0o700)
                wall, latency = run_once(argv, data_dir)
                if round_ == 0:
                    continue  # warms the page cache and the .pyc files
                walls[name].append(wall)
                if latency is not None:
                    latencies.append(latency)
    load_after = os.getloadavg()
    base = statistics.median(walls["python -c pass"])
    print(f"load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}; medians of {args.rounds} rounds")
    print(f"{'':40} {'wall':>10}  {'over python -c pass':>20}")
    for name, samples in walls.items():
        median = statistics.median(samples)
        extra = "" if name == "python -c pass" else f"{(median - base) * 1e3:+17.1f} ms"
        spread = f"rounds {min(samples) * 1e3:.0f} to {max(samples) * 1e3:.0f}"
        print(f"{name:40} {median * 1e3:7.1f} ms  {extra:>20}   ({spread})")
    if latencies:
        median = statistics.median(latencies)
        print(f"{'  of which the call, to its answer':40} {median * 1e3:7.1f} ms  (target <= 50 ms; rounds "
              f"{min(latencies) * 1e3:.0f} to {max(latencies) * 1e3:.0f})")


if __name__ == "__main__":
    main()
