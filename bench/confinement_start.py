"""What each confinement layer adds to a worker's start: `confine_worker` timed per layer set.

    .venv/bin/python bench/confinement_start.py [--iterations N]

A forked child (like a worker forked by the fork server, after the same hygiene) times one
`confine_worker` call and reports it over a pipe; cases alternate, medians are printed with
the difference to the full confinement. A case leaves layers out the way the tests do
(simulated unavailable, `required=False`), so the rest runs exactly as in a worker. The
extension id gives a root host the per-extension uid. Not a test: nothing here asserts a
threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kumix.extensions.proc import confinement, seccomp_filter

CASES: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "without namespaces": frozenset({"namespaces"}),
    "without task_limit": frozenset({"task_limit"}),
    "without seccomp": frozenset({"seccomp"}),
    "without landlock": frozenset({"landlock"}),
    "without unprivileged": frozenset({"unprivileged"}),
    "nothing": frozenset(confinement.LAYERS),
}


def _one(case: frozenset[str], ext_dir: Path) -> float:
    seccomp_filter.precompile()  # as the fork server does before any worker is forked
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            spec = confinement.ConfinementSpec(ext_dir, None, required=False, extension_id="bench",
                                               simulate_unavailable=case)
            start = time.perf_counter()
            confinement.confine_worker(spec)
            os.write(w, json.dumps(time.perf_counter() - start).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return float(json.loads(data))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ext = Path(tmp)
        os.chmod(ext, 0o755)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.iterations):
            for name, case in CASES.items():
                times[name].append(_one(case, ext))
    full = statistics.median(times["full"])
    print(f"kernel {os.uname().release}, host uid {os.geteuid()}, {args.iterations} starts per case (medians), "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'case':<24}{'confine_worker':>16}{'vs full':>12}")
    for name in CASES:
        median = statistics.median(times[name])
        print(f"{name:<24}{median * 1000:>13.2f} ms{(median - full) * 1000:>+10.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
