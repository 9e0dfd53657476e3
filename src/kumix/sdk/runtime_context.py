"""Facts about the running worker that the SDK needs (set by the worker runtime).

The worker runtime calls `set_worker_context` once before importing the extension and sets
`call_deadline` around each handler call. `kumix.sdk.wasm` reads both: modules resolve
inside `extension_dir` against the manifest's pins, and WASM execution stops at the call's
own deadline and within `max_memory_mb`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from pathlib import Path

from kumix.extensions.manifest import Manifest


@dataclass(frozen=True)
class WorkerContext:
    extension_id: str
    extension_dir: Path
    manifest: Manifest
    max_memory_mb: int
    scratch_dir: Path | None = None


_context: WorkerContext | None = None

call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("call_deadline", default=None)
"""time.monotonic() value at which the current call's deadline expires (None outside a call)."""


def set_worker_context(context: WorkerContext) -> None:
    global _context
    _context = context


def worker_context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("not running inside a Kumix proc worker")
    return _context
