"""`WasmLoader`: the order of the loading rules and the compiled-module cache of one extension.

Path, manifest listing, file, pin, binary, shape checks, then compiling before the deadline.

`extension_dir` and `specs` come from the worker context (`kumix.sdk.wasm`) or a test;
`deadline` returns the current call's `time.monotonic()` deadline, or None outside a call.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import wasmtime

from kumix.core.errors import CallTimeout, KumixError, ResourceLimit, WasmRejected
from kumix.extensions.manifest import WasmModuleSpec
from kumix.extensions.wasm.binary import ModuleShape, read_shape
from kumix.extensions.wasm.checks import check_exports, check_imports
from kumix.extensions.wasm.clock import start_thread
from kumix.extensions.wasm.engine import compile_module, engine, first_line
from kumix.extensions.wasm.files import path_problem, read_module_file
from kumix.extensions.wasm.instance import WasmInstance
from kumix.extensions.wasm.limits import MEMORY_RESERVATION_BYTES, NO_DEADLINE_SECONDS, MiB, WasmLimits

COMPILE_STACK_BYTES = 8 * MiB
"""Compilation runs on a thread of its own; this is the stack a main thread has by default."""

_WASM_MAGIC = b"\0asm"


def _stderr_log(prefix: str) -> Callable[[str], None]:
    def write(text: str) -> None:
        # In a worker stderr is the extension's size-capped log, never the wire channel.
        print(f"[{prefix}] {text}", file=sys.stderr, flush=True)

    return write


class WasmLoader:
    """Loads an extension's WASM modules by the rules in `docs/wasm.md` ("Loading rules")."""

    def __init__(
        self,
        extension_dir: Path,
        specs: Sequence[WasmModuleSpec],
        limits: WasmLimits,
        *,
        deadline: Callable[[], float | None] = lambda: None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.extension_dir = extension_dir
        self.limits = limits
        self._specs = {spec.path: spec for spec in specs}
        self._deadline = deadline
        self._log = log
        reservation = min(limits.max_memory_bytes, MEMORY_RESERVATION_BYTES)
        self._engine = engine(reservation, limits.max_stack_bytes)
        self._compiled: dict[str, wasmtime.Module] = {}
        self._compiling: dict[str, _Compilation] = {}
        self._compiling_lock = threading.Lock()

    def load(self, path: str) -> WasmInstance:
        """Check, compile and instantiate the module at `path` (relative to the extension)."""
        if not isinstance(path, str):
            raise WasmRejected(f"module path must be a string, got {type(path).__name__}")
        problem = path_problem(path)
        if problem is not None:
            raise WasmRejected(f"{path[:200]!r} is {problem}", details={"path": path[:200]})
        spec = self._specs.get(path)
        if spec is None:
            raise WasmRejected(f"{path}: not listed in the manifest's wasm array", details={"path": path})
        data = read_module_file(self.extension_dir, path)
        digest = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(digest, spec.sha256):
            raise WasmRejected(
                f"{path}: sha256 mismatch: manifest pins {spec.sha256}, file has {digest}",
                details={"path": path, "expected": spec.sha256, "actual": digest},
            )
        if not data.startswith(_WASM_MAGIC):
            # wasmtime would parse non-binary bytes as the text format; only binaries are shipped.
            raise WasmRejected(f"{path}: not a binary WASM module")
        # The shape is read from the bytes and checked before wasmtime sees them: a module that
        # fails a rule is never compiled, and no wasmtime type is ever asked to describe itself.
        shape = read_shape(data, path)
        hosts = check_imports(path, spec, shape)
        check_exports(path, spec, shape)
        module = self._compiled.get(digest)
        if module is None:
            module = self._compile_before_deadline(data, shape, digest, path)
        instance = WasmInstance(
            path=path,
            spec=spec,
            module=module,
            shape=shape,
            engine=self._engine,
            hosts=hosts,
            limits=self.limits,
            deadline=self._deadline,
            log=self._log or _stderr_log(path),
        )
        instance.instantiate_now()
        return instance

    def _compile_before_deadline(self, data: bytes, shape: ModuleShape, digest: str, path: str) -> wasmtime.Module:
        """Compile on a thread of its own, waiting no longer than the call's deadline.

        Compilation cannot be interrupted, and its cost is not bounded by the file size alone
        (100 000 trivial functions, 0.9 MB, take about 15 s). Past the deadline the call
        answers `timeout` in time while the compilation goes on; a later load of the same
        bytes waits for that one instead of starting another.
        """
        deadline = self._deadline()
        if deadline is None:
            deadline = time.monotonic() + NO_DEADLINE_SECONDS
        with self._compiling_lock:
            job = self._compiling.get(digest)
            if job is None:
                if deadline <= time.monotonic():
                    raise CallTimeout(f"{path}: call deadline passed before compiling", details={"limit": "compile"})
                job = _Compilation(self._engine, data, shape, path)
                try:
                    start_thread(job.run, "kumix-wasm-compile", COMPILE_STACK_BYTES)
                except RuntimeError as exc:
                    raise ResourceLimit(f"{path}: cannot start the compiling thread: {exc}") from None
                self._compiling[digest] = job
        if not job.done.wait(timeout=max(0.0, deadline - time.monotonic())):
            raise CallTimeout(
                f"{path}: compiling the module took longer than the call's deadline",
                details={"limit": "compile"},
            )
        with self._compiling_lock:
            if self._compiling.get(digest) is job:
                del self._compiling[digest]
            if job.error is not None:
                raise job.error
            assert job.module is not None
            self._compiled[digest] = job.module
            return job.module


class _Compilation:
    """One compilation in flight; `done` is set when `module` or `error` is."""

    def __init__(self, engine: wasmtime.Engine, data: bytes, shape: ModuleShape, path: str) -> None:
        self._engine = engine
        self._data = data
        self._shape = shape
        self._path = path
        self.done = threading.Event()
        self.module: wasmtime.Module | None = None
        self.error: KumixError | None = None

    def run(self) -> None:
        try:
            self.module = compile_module(self._engine, self._data, self._shape, self._path)
        except KumixError as exc:
            self.error = exc
        except BaseException as exc:  # reported to the waiting caller, never lost in the thread
            self.error = WasmRejected(f"{self._path}: compiling failed: {first_line(str(exc))}")
        finally:
            self._data = b""
            self.done.set()
