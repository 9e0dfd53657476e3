"""What OS confinement costs a proc worker: cold start and round trip, confined vs unconfined.

    .venv/bin/python bench/confinement_cost.py [--iterations N] [--same-cpu]

Measured in one run through the real host (fork server, worker hygiene, `confine_worker`,
the bundled markdown-renderer):

- `confine_worker` alone: a forked child times the call itself (rules built from the runtime
  read set, uid switch when root, no_new_privs, Landlock, seccomp, verification);
- cold start: from "no worker" to the worker's hello (`session.warm()` after `dispose`), with the
  fork server already running;
- round trip: the runtime's `ping`, and a 10 KB markdown render, on a warm worker.

"Unconfined" is the same host and policy with `requireConfinement: false` and every layer
simulated unavailable (KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE=all), so the only difference is
confinement. Medians; ratios confined/unconfined next to each figure. Not a test.

A ping's time depends mostly on whether the host and the worker run on the same CPU (on a
virtual machine, waking a task on another, idle vCPU costs tens of microseconds; see
bench/confinement_layers.py), which the kernel decides anew for each worker. `--same-cpu` pins
the host, its fork servers and workers to one CPU, so the ping ratio shows confinement only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kumix.extensions.manifest import load_manifest  # noqa: E402
from kumix.extensions.policy import load_policy  # noqa: E402
from kumix.extensions.proc.confinement import SIMULATE_ENV, ConfinementSpec, confine_worker  # noqa: E402
from kumix.extensions.proc.host import ProcHost  # noqa: E402

MARKDOWN_DIR = ROOT / "src/kumix/bundled/extensions/proc/markdown-renderer"
SOURCE_10KB = ("# Title\n\nSome *emphasis*, a [link](https://example.org) and `code`.\n\n" * 150)[:10_000]


def _policy(tmp: Path, *, require: bool) -> Path:
    doc = json.loads((ROOT / "src/kumix/bundled/policies/strict.json").read_text())
    doc["name"] = f"bench-require-{str(require).lower()}"
    doc["proc"]["requireConfinement"] = require
    path = tmp / f"policy-{require}.json"
    path.write_text(json.dumps(doc))
    return path


def time_confine_worker(iterations: int) -> list[float]:
    """confine_worker in forked children (it is irreversible), timed inside each child."""
    samples = []
    for _ in range(iterations):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            started = time.perf_counter()
            confine_worker(ConfinementSpec(MARKDOWN_DIR, None, required=True))
            os.write(w, str(time.perf_counter() - started).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            samples.append(float(f.read()))
        os.waitpid(pid, 0)
    return samples


async def measure(tmp: Path, iterations: int) -> dict[str, dict[str, list[float]]]:
    """Both hosts run side by side and the measurements alternate between them, so a busy
    neighbour on a shared machine slows both sides alike instead of skewing the ratio."""
    loop = asyncio.get_running_loop()
    manifest = load_manifest(MARKDOWN_DIR)
    samples: dict[str, dict[str, list[float]]] = {}
    hosts: dict[str, ProcHost] = {}
    for label, require, simulate in (("confined", True, None), ("unconfined", False, "all")):
        logs = tmp / f"logs-{label}"
        logs.mkdir()
        if simulate is None:
            os.environ.pop(SIMULATE_ENV, None)
        else:
            os.environ[SIMULATE_ENV] = simulate
        hosts[label] = ProcHost(load_policy(str(_policy(tmp, require=require))), logs_dir=logs)
        # The first session starts this host's fork server, which reads the variable now.
        await hosts[label].session("markdown-renderer", MARKDOWN_DIR, manifest).warm()
        samples[label] = {"cold": [], "ping": [], "render": []}
    os.environ.pop(SIMULATE_ENV, None)
    try:
        for _ in range(iterations):
            for label, host in hosts.items():
                await host.dispose("markdown-renderer")
                session = host.session("markdown-renderer", MARKDOWN_DIR, manifest)
                started = loop.time()
                await session.warm()
                samples[label]["cold"].append(loop.time() - started)
                for _ in range(20):
                    samples[label]["ping"].append(await session.ping())
                for _ in range(5):
                    started = loop.time()
                    await session.call("render.markdown", {"source": SOURCE_10KB})
                    samples[label]["render"].append(loop.time() - started)
    finally:
        for host in hosts.values():
            await host.aclose()
    for label in hosts:
        log = (tmp / f"logs-{label}" / "markdown-renderer.log").read_text()
        confined = "started, confined" in log and "WARNING" not in log
        if confined != (label == "confined"):
            print(f"warning: the {label} side was {'' if confined else 'not '}confined; figures are not comparable")
    return samples


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--same-cpu", action="store_true", help="pin the host, fork servers and workers to one CPU")
    args = parser.parse_args()
    n = args.iterations
    if args.same_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(prefix="kumix-bench-") as tmp_name:
        results = asyncio.run(measure(Path(tmp_name), n))
    confine_alone = time_confine_worker(n)

    print(f"kernel {os.uname().release}, host uid {os.geteuid()}, {n} cold starts, "
          f"{n * 20} pings, {n * 5} renders per side (medians), "
          f"{'pinned to one CPU' if args.same_cpu else 'CPU placement free'}, load {os.getloadavg()[0]:.2f}")
    print(f"{'':28}{'confined':>12}{'unconfined':>14}{'ratio':>8}")
    for key, title in (("cold", "cold start (fork→hello)"), ("ping", "ping round trip"),
                       ("render", "10 KB markdown round trip")):
        c = statistics.median(results["confined"][key])
        u = statistics.median(results["unconfined"][key])
        print(f"{title:28}{_ms(results['confined'][key]):>12}{_ms(results['unconfined'][key]):>14}{c / u:8.2f}x")
    print(f"{'confine_worker() alone':28}{_ms(confine_alone):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
