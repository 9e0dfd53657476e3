"""WASM call overhead: through a confined worker vs a plain proc call vs in-process wasmtime.

    .venv/bin/python bench/wasm_call.py [--iterations N] [--policy strict|dev]

Measured in one run: per-call medians over three rounds in which the cases take turns:

- raw wasmtime: a bare `Func` call into a trivial export (fuel on), the floor;
- Kumix in-process: `WasmInstance.call` on the same export (fuel refill, epoch deadline,
  ticker, lock) and `call_bytes` into the wasm-demo module for a 100 B and a 10 KB message;
- worker: a plain Python proc handler, the same handler calling WASM, and wasm-demo's
  `text.stats` next to the same statistics computed in Python in the worker;
- fuel rate: fuel units per second of three loops (a counter, arithmetic, memory traffic)
  and the wall time one call takes to use up the default fuel in a loop of nothing but a
  branch (the slowest fuel a runaway can burn), the figures behind `DEFAULT_FUEL_PER_CALL`
  (docs/wasm.md, "Limits of every call").

Ratios are printed next to each figure. Not a test: nothing here asserts a threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# The raw baseline needs wasmtime itself; Kumix code reaches it only through kumix.extensions.wasm.
import wasmtime  # noqa: E402

from kumix.core.errors import ResourceLimit  # noqa: E402
from kumix.extensions.manifest import load_manifest  # noqa: E402
from kumix.extensions.policy import load_policy  # noqa: E402
from kumix.extensions.proc.host import ProcHost  # noqa: E402
from kumix.extensions.wasm import WasmLimits, WasmLoader, wat_to_wasm  # noqa: E402
from kumix.extensions.wasm.limits import DEFAULT_FUEL_PER_CALL  # noqa: E402

DEMO_DIR = ROOT / "src/kumix/bundled/extensions/proc/wasm-demo"
ADD_WAT = '(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'
SMALL = ("hello wasm " * 10)[:100]
LARGE = ("The quick brown fox jumps over the lazy dog. " * 250)[:10_000]

# Three loops of different instruction mixes; each takes the iteration count.
FUEL_WAT = """
(module
  (memory 1)
  (func (export "count") (param $n i64)
    (loop $l (local.set $n (i64.sub (local.get $n) (i64.const 1))) (br_if $l (i64.ne (local.get $n) (i64.const 0)))))
  (func (export "arith") (param $n i64) (local $x i64)
    (loop $l
      (local.set $x (i64.xor (i64.mul (local.get $x) (i64.const 0x100000001b3)) (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br_if $l (i64.ne (local.get $n) (i64.const 0)))))
  (func (export "memory") (param $n i64) (local $p i32)
    (loop $l
      (local.set $p (i32.and (i32.wrap_i64 (local.get $n)) (i32.const 0xfff8)))
      (i64.store (local.get $p) (i64.add (i64.load (local.get $p)) (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br_if $l (i64.ne (local.get $n) (i64.const 0)))))
  (func (export "spin") (loop $l (br $l))))
"""
FUEL_EXPORTS = ("count", "arith", "memory", "spin")

BENCH_WORKER = '''
from __future__ import annotations

from typing import Any

from kumix.sdk import proc, wasm

_add = wasm.instantiate("add.wasm")


@proc.handler("bench.plain")
def plain(params: dict[str, Any]) -> int:
    return int(params["a"]) + int(params["b"])


@proc.handler("bench.wasm")
def in_wasm(params: dict[str, Any]) -> int:
    return int(_add.call("add", params["a"], params["b"]))


@proc.handler("bench.stats")
def stats(params: dict[str, Any]) -> dict[str, Any]:
    data = params["text"].encode()
    fnv = 0xCBF29CE484222325
    for byte in data:
        fnv = ((fnv ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    lines = data.count(b"\\n") + (1 if data and not data.endswith(b"\\n") else 0)
    chars = sum(1 for byte in data if byte & 0xC0 != 0x80)
    return {"words": len(data.split()), "chars": chars, "lines": lines, "bytes": len(data), "fnv1a64": f"{fnv:016x}"}
'''


def interleaved_sync(cases: dict[str, Callable[[], object]], iterations: int) -> dict[str, float]:
    """Per-call medians in µs; the cases take turns in three rounds so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        for _ in range(min(200, iterations)):
            fn()
    clock = time.perf_counter
    for _ in range(3):
        for name, fn in cases.items():
            out = samples[name]
            for _ in range(iterations):
                start = clock()
                fn()
                out.append(clock() - start)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


async def interleaved_async(cases: dict[str, Callable[[], Awaitable[object]]], iterations: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for warm in cases.values():
        for _ in range(min(100, iterations)):
            await warm()
    clock = time.perf_counter
    for _ in range(3):
        for name, fn in cases.items():
            out = samples[name]
            for _ in range(iterations):
                start = clock()
                await fn()
                out.append(clock() - start)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def bench_extension(root: Path) -> Path:
    ext_dir = root / "wasm-bench"
    ext_dir.mkdir(parents=True)
    entries = []
    for name, source, exports in (("add.wasm", ADD_WAT, ["add"]), ("fuel.wasm", FUEL_WAT, list(FUEL_EXPORTS))):
        data = wat_to_wasm(source)
        (ext_dir / name).write_bytes(data)
        entries.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "exports": exports})
    manifest = {
        "id": "wasm-bench", "name": "WASM bench", "version": "1.0.0", "kind": "proc",
        "capabilities": ["bench.run"], "entry": "worker.py",
        "methods": dict.fromkeys(("bench.plain", "bench.wasm", "bench.stats"), "bench.run"),
        "wasm": entries,
    }
    (ext_dir / "manifest.json").write_text(json.dumps(manifest))
    (ext_dir / "worker.py").write_text(BENCH_WORKER)
    # Workers drop to an unprivileged uid when the host runs as root: keep the tree readable.
    for path in (root, ext_dir, *ext_dir.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return ext_dir


def policy_file(root: Path, base: str) -> str:
    doc = json.loads((ROOT / f"src/kumix/bundled/policies/{base}.json").read_text())
    if "*" not in doc["capabilities"]:
        doc["capabilities"].append("bench.run")
        doc["name"] = f"{base}-bench"  # a wildcard policy must keep the name dev
    path = root / "policy.json"
    path.write_text(json.dumps(doc))
    return str(path)


def in_process(iterations: int) -> dict[str, float]:
    # Raw wasmtime, configured like Kumix's engine where it matters (fuel and epochs on).
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    store.set_epoch_deadline(10**9)
    add = wasmtime.Instance(store, wasmtime.Module(engine, wat_to_wasm(ADD_WAT)), []).exports(store)["add"]
    assert isinstance(add, wasmtime.Func)
    with tempfile.TemporaryDirectory() as tmp:
        ext_dir = bench_extension(Path(tmp))
        limits = WasmLimits.for_worker(512)
        kumix_add = WasmLoader(ext_dir, load_manifest(ext_dir).wasm, limits).load("add.wasm")
        demo = WasmLoader(DEMO_DIR, load_manifest(DEMO_DIR).wasm, limits).load("text_stats.wasm")
        small, large = SMALL.encode(), LARGE.encode()
        return interleaved_sync(
            {
                "raw": lambda: add(store, 2, 3),
                "kumix": lambda: kumix_add.call("add", 2, 3),
                "stats_small": lambda: demo.call_bytes("text_stats", small),
                "stats_large": lambda: demo.call_bytes("text_stats", large),
            },
            iterations,
        )


def fuel_rate() -> dict[str, float]:
    """Fuel units per second of each loop (median of 3 calls), and the default fuel's run-out time."""
    with tempfile.TemporaryDirectory() as tmp:
        ext_dir = bench_extension(Path(tmp))
        loader = WasmLoader(ext_dir, load_manifest(ext_dir).wasm, WasmLimits.for_worker(512),
                            deadline=lambda: time.monotonic() + 120)
        module = loader.load("fuel.wasm")
        figures: dict[str, float] = {}
        for export in ("count", "arith", "memory"):
            rates = []
            for _ in range(3):
                start = time.perf_counter()
                module.call(export, 200_000_000)
                rates.append(module.last_fuel_used / (time.perf_counter() - start))
            figures[export] = statistics.median(rates)
        start = time.perf_counter()
        try:
            module.call("spin")
        except ResourceLimit:
            figures["default_run_out"] = time.perf_counter() - start
        return figures


async def through_worker(policy_name: str, iterations: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ext_dir = bench_extension(root / "ext")
        logs = root / "logs"
        logs.mkdir()
        async with ProcHost(load_policy(policy_file(root, policy_name)), logs_dir=logs) as host:
            bench = host.session("wasm-bench", ext_dir, load_manifest(ext_dir))
            demo = host.session("wasm-demo", DEMO_DIR, load_manifest(DEMO_DIR))
            figures = await interleaved_async(
                {
                    "ping": bench.ping,
                    "plain": lambda: bench.call("bench.plain", {"a": 2, "b": 3}),
                    "wasm": lambda: bench.call("bench.wasm", {"a": 2, "b": 3}),
                    "demo_small": lambda: demo.call("text.stats", {"text": SMALL}),
                    "py_small": lambda: bench.call("bench.stats", {"text": SMALL}),
                    "demo_large": lambda: demo.call("text.stats", {"text": LARGE}),
                    "py_large": lambda: bench.call("bench.stats", {"text": LARGE}),
                },
                iterations,
            )
            same = await demo.call("text.stats", {"text": LARGE}) == await bench.call("bench.stats", {"text": LARGE})
            log = (logs / "wasm-bench.log").read_text()
            return {**figures, "agree": same, "confined": "started, confined" in log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--policy", choices=("strict", "dev"), default="strict")
    args = parser.parse_args()
    local = in_process(args.iterations)
    worker = asyncio.run(through_worker(args.policy, args.iterations))
    fuel = fuel_rate()

    def row(name: str, value: float, baseline_name: str, baseline: float) -> None:
        print(f"  {name:<44} {value:9.1f} µs   {value / baseline:6.2f}x {baseline_name}")

    print(f"wasm_call: per-call medians over 3 interleaved rounds of {args.iterations} calls per case")
    print("in process:")
    row("raw wasmtime Func call (fuel on)", local["raw"], "raw", local["raw"])
    row("Kumix WasmInstance.call (all limits)", local["kumix"], "raw", local["raw"])
    row("Kumix call_bytes text_stats, 100 B", local["stats_small"], "raw", local["raw"])
    row("Kumix call_bytes text_stats, 10 KB", local["stats_large"], "raw", local["raw"])
    confined = "confined" if worker["confined"] else "UNCONFINED"
    print(f"through a {args.policy} worker ({confined}), round trip from the host:")
    row("ping (built-in)", worker["ping"], "plain proc", worker["plain"])
    row("plain proc call (Python a+b)", worker["plain"], "plain proc", worker["plain"])
    row("proc call into WASM add", worker["wasm"], "plain proc", worker["plain"])
    row("  same, vs the in-process Kumix call", worker["wasm"], "in-process", local["kumix"])
    row("wasm-demo text.stats, 100 B", worker["demo_small"], "plain proc", worker["plain"])
    row("  same statistics in Python, 100 B", worker["py_small"], "plain proc", worker["plain"])
    row("wasm-demo text.stats, 10 KB", worker["demo_large"], "Python 10 KB", worker["py_large"])
    row("  same statistics in Python, 10 KB", worker["py_large"], "Python 10 KB", worker["py_large"])
    print(f"WASM and Python statistics agree: {worker['agree']}")
    print("fuel rate, in process (median of 3 calls of 2·10⁸ iterations each):")
    loops = (("count", "counter loop"), ("arith", "multiply-xor loop"), ("memory", "load-add-store loop"))
    for export, label in loops:
        seconds = DEFAULT_FUEL_PER_CALL / fuel[export]
        print(f"  {label:<44} {fuel[export] / 1e9:9.2f} G units/s   default fuel = {seconds:5.1f} s"
              f"   {fuel[export] / fuel['count']:6.2f}x counter loop")
    run_out = fuel.get("default_run_out")
    measured = f"{run_out:.1f} s" if run_out is not None else "did not run out"
    print(f"  one call spinning until the default {DEFAULT_FUEL_PER_CALL:.0e} fuel runs out: {measured}")


if __name__ == "__main__":
    main()
