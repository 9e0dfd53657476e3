"""What proc extension authors use to run WASM: `instantiate(path_in_extension)`.

```python
from kumix.sdk import wasm

stats = wasm.instantiate("text_stats.wasm")      # manifest-listed, sha256-pinned
packed = stats.call_bytes("text_stats", b"hello")  # bytes in, bytes out
total = stats.call("add", 2, 3)                    # numbers in, numbers out
```

The module is checked and instantiated by the `kumix.extensions.wasm` package (the loading
rules, the import allowlist, the limits); this module only supplies the worker's context: the extension
directory and manifest pins, the memory cap derived from the policy's `maxMemoryMb`, and the
current call's deadline (`call_deadline`, set by the worker runtime around each handler).
Limits can be lowered here, never raised.
"""

from __future__ import annotations

import time
from pathlib import Path

from kumix.extensions.manifest import WasmModuleSpec
from kumix.extensions.wasm import HOST_FUNCTIONS, WasmInstance, WasmLimits, WasmLoader
from kumix.sdk.runtime_context import WorkerContext, call_deadline, worker_context

__all__ = ["HOST_FUNCTIONS", "WasmInstance", "instantiate", "limits_for", "wasm_deadline"]


def limits_for(context: WorkerContext) -> WasmLimits:
    """The WASM ceiling for this worker: a share of the policy's memory cap, default fuel."""
    return WasmLimits.for_worker(context.max_memory_mb)


def instantiate(
    path: str,
    *,
    max_memory_mb: int | None = None,
    fuel_per_call: int | None = None,
    max_input_bytes: int | None = None,
    max_output_bytes: int | None = None,
) -> WasmInstance:
    """Load, check and instantiate the manifest-pinned module at `path` in this extension.

    Raises `WasmRejected` when a loading rule fails, `ResourceLimit`/`timeout` when the
    start function exceeds a limit. Keyword arguments lower the host's limits for this module.
    """
    context = worker_context()
    limits = limits_for(context).lowered(
        max_memory_bytes=None if max_memory_mb is None else max_memory_mb * 1024 * 1024,
        fuel_per_call=fuel_per_call,
        max_input_bytes=max_input_bytes,
        max_output_bytes=max_output_bytes,
    )
    key = (context.extension_dir, context.manifest.wasm, limits)
    loader = _loaders.get(key)
    if loader is None:
        loader = WasmLoader(context.extension_dir, context.manifest.wasm, limits, deadline=wasm_deadline)
        _loaders[key] = loader
    return loader.load(path)


_loaders: dict[tuple[Path, tuple[WasmModuleSpec, ...], WasmLimits], WasmLoader] = {}
"""One loader per worker context and limits, so a module instantiated twice compiles once.
Each `load` still reads the file and checks its pin again."""


DEADLINE_MARGIN_SECONDS = 0.05
DEADLINE_MARGIN_FRACTION = 0.1
DEADLINE_MARGIN_MAX_SECONDS = 1.0
"""WASM stops 50 ms plus 10% of the time left (at most 1 s) before the call's deadline. The
host kills and replaces a worker whose reply misses the deadline; stopping the module a little
earlier lets the worker answer `timeout` itself, keep its warm state and serve the next call.
The proportional part absorbs scheduling delays on a loaded machine, where a fixed 50 ms
was sometimes not enough for the reply to reach the host in time."""


def wasm_deadline() -> float | None:
    """The deadline WASM calls run under: the current call's, less the reply margin."""
    deadline = call_deadline.get()
    if deadline is None:
        return None
    remaining = max(0.0, deadline - time.monotonic())
    margin = min(DEADLINE_MARGIN_MAX_SECONDS, DEADLINE_MARGIN_SECONDS + DEADLINE_MARGIN_FRACTION * remaining)
    return deadline - margin
