"""WASM modules inside proc workers: the loading rules and the limits every call runs under.

This is the only module that imports wasmtime; everything above it sees Kumix types
(`WasmLoader`, `WasmInstance`, `WasmLimits`) and Kumix errors. `kumix.sdk.wasm` builds a
loader from the worker's context; tests build one with an explicit context.

Loading rules (each failure is `WasmRejected` naming the rule):

1. The path is a plain relative path (no URL, no absolute path, no `..`) listed in the
   manifest's `wasm` array.
2. It is opened component by component with `O_NOFOLLOW` below the extension directory, so
   no symlink is followed at all (a symlink leaving the directory is the attack; one staying
   inside buys nothing and is refused too). It must be a regular file no larger than
   `MAX_MODULE_BYTES`.
3. Its sha256 equals the manifest pin, and it is a binary module (`\\0asm`), never text.
4. Every import is declared in the manifest entry's `imports` and is one of the Kumix host
   functions in `HOST_FUNCTIONS` with the exact signature; everything else (WASI included)
   is refused before instantiation. Every export the manifest declares exists.

Limits (every call, including instantiation and its start function; `load` also waits for
the compiler only until the call's deadline -> `timeout`):

- fuel: `WasmLimits.fuel_per_call`, refilled before each call -> `resource_limit`;
- wall clock: an epoch deadline derived from the caller's deadline (the worker's
  `call_deadline`), enforced by a ticker thread -> `timeout`;
- memory: `Store.set_limits(memory_size=...)`, one memory, one instance per store;
  `memory.grow` past the cap returns -1, and a trap that follows at the cap (how compiled
  allocators react to it) is reported as `resource_limit`;
- stack: `max_wasm_stack` -> `resource_limit`;
- strings passed in and out through exported memory are bounded by `max_input_bytes` /
  `max_output_bytes`.

After any failure of a call the instance is discarded; the next call gets a fresh one from
the already compiled module, so one bad input never poisons the worker.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import wasmtime

from kumix.core.errors import (
    BadRequest,
    CallTimeout,
    InputTooLarge,
    KumixError,
    OutputTooLarge,
    ResourceLimit,
    WasmRejected,
    WasmTrap,
)
from kumix.extensions.manifest import WasmModuleSpec

MiB = 1024 * 1024
WASM_PAGE_BYTES = 65536

MAX_MODULE_BYTES = 16 * MiB
"""Bundled modules are tens of KiB. The size does not bound compile time on its own (many
tiny functions compile slowly), so `load` also waits for the compiler only until the call's
deadline."""

WASM_MEMORY_CEILING_BYTES = 256 * MiB
"""No module gets more linear memory than this, whatever the policy allows."""

WASM_MEMORY_SHARE = 4
"""A module gets at most 1/4 of the policy's `maxMemoryMb`: the worker's address-space
rlimit covers the interpreter, wasmtime's compiled code and the memory's reservation too."""

DEFAULT_FUEL_PER_CALL = 4_000_000_000
"""About 1-2 s of straight WASM on the reference machines (~3 G fuel units/s measured). It is
the deterministic CPU bound; the epoch deadline is the wall-clock one."""

DEFAULT_MAX_STACK_BYTES = 512 * 1024
"""WASM runs on the calling thread's stack; 512 KiB leaves the rest of a default 8 MiB
thread stack to Python and keeps a runaway recursion cheap to stop."""

DEFAULT_MAX_INPUT_BYTES = 4 * MiB
DEFAULT_MAX_OUTPUT_BYTES = 4 * MiB
"""Both match the strict policy's maxOutputBytes: a WASM answer larger than the host would
accept from the worker is useless."""

MAX_TABLE_ELEMENTS = 100_000
MAX_TABLES = 4

NO_DEADLINE_SECONDS = 5.0
"""Deadline for a call made outside a proc call (e.g. at import time): the strict default."""

TICKER_STACK_BYTES = 256 * 1024

COMPILE_STACK_BYTES = 8 * MiB
"""Compilation runs on a thread of its own; this is the stack a main thread has by default."""

EPOCH_TICK_SECONDS = 0.005
"""Deadline resolution. The ticker only runs while a WASM call is in flight."""

MEMORY_RESERVATION_BYTES = 16 * MiB
"""Virtual memory reserved per linear memory up front, and again as headroom each time one
grows past its reservation and moves. Small next to the worker's address-space rlimit
(several instances fit), large enough that typical modules never move and a grow bomb
moves only a handful of times before the cap stops it."""

MEMORY_CAP_SLACK_FRACTION = 8
"""A trap with memory within 1/8 of the cap (or one page) counts as hitting the cap."""

MAX_LOG_MESSAGE_BYTES = 512
MAX_LOG_BYTES_PER_CALL = 8192
"""`kumix.log` is for diagnostics; the worker's log is size-capped anyway, but a chatty
module should not fill it in one call."""

_PLAIN_RELATIVE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_WASM_MAGIC = b"\0asm"

T = TypeVar("T")

_OWN_LIMIT_TRAPS = frozenset(
    {wasmtime.TrapCode.OUT_OF_FUEL, wasmtime.TrapCode.INTERRUPT, wasmtime.TrapCode.STACK_OVERFLOW}
)
"""Traps raised by Kumix's own limits; every other trap is the module's."""


# --- host functions -------------------------------------------------------------------


@dataclass(frozen=True)
class HostFunction:
    """A Kumix function a module may import when its manifest entry declares it."""

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    doc: str


HOST_FUNCTIONS: Mapping[str, HostFunction] = MappingProxyType(
    {
        "kumix.log": HostFunction(
            name="kumix.log",
            params=("i32", "i32"),
            results=(),
            doc=(
                "log(ptr, len): write the UTF-8 text at [ptr, ptr+len) of the exported `memory` to the"
                f" worker's log, truncated to {MAX_LOG_MESSAGE_BYTES} bytes; at most"
                f" {MAX_LOG_BYTES_PER_CALL} bytes per call, the rest is dropped."
            ),
        ),
    }
)
"""The complete allowlist. There is no WASI: no files, clocks, randomness or sockets."""


# --- limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WasmLimits:
    """What one module may use. Extensions may lower any value, never raise it."""

    max_memory_bytes: int
    fuel_per_call: int = DEFAULT_FUEL_PER_CALL
    max_stack_bytes: int = DEFAULT_MAX_STACK_BYTES
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES

    def __post_init__(self) -> None:
        if self.max_memory_bytes < WASM_PAGE_BYTES:
            raise BadRequest(f"WASM memory cap must be at least one page ({WASM_PAGE_BYTES} bytes)")
        for name in ("fuel_per_call", "max_stack_bytes", "max_input_bytes", "max_output_bytes"):
            if getattr(self, name) <= 0:
                raise BadRequest(f"WASM limit {name} must be positive")

    @classmethod
    def for_worker(cls, max_memory_mb: int) -> WasmLimits:
        """The ceiling for a worker whose policy allows `max_memory_mb` in total."""
        share = max_memory_mb * MiB // WASM_MEMORY_SHARE
        memory = min(WASM_MEMORY_CEILING_BYTES, share)
        return cls(max_memory_bytes=max(WASM_PAGE_BYTES, memory // WASM_PAGE_BYTES * WASM_PAGE_BYTES))

    def lowered(
        self,
        *,
        max_memory_bytes: int | None = None,
        fuel_per_call: int | None = None,
        max_input_bytes: int | None = None,
        max_output_bytes: int | None = None,
    ) -> WasmLimits:
        """These limits with some values lowered; a value above the ceiling keeps the ceiling."""

        def low(current: int, wanted: int | None) -> int:
            return current if wanted is None else min(current, wanted)

        return replace(
            self,
            max_memory_bytes=low(self.max_memory_bytes, max_memory_bytes),
            fuel_per_call=low(self.fuel_per_call, fuel_per_call),
            max_input_bytes=low(self.max_input_bytes, max_input_bytes),
            max_output_bytes=low(self.max_output_bytes, max_output_bytes),
        )


# --- engine and epoch ticker ----------------------------------------------------------


@cache
def _engine(memory_reservation: int, max_stack_bytes: int) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = max_stack_bytes
    # The worker runs under an address-space rlimit (maxMemoryMb), which counts reserved
    # virtual memory: wasmtime's default of 4 GiB + 2 GiB per memory cannot even be mapped.
    # Memories start in a small reservation and move, with bounded headroom, when they grow
    # past it; the store limit refuses growth past the cap either way. The cost is explicit
    # bounds checks and an occasional copy on growth.
    config.memory_reservation = memory_reservation
    config.memory_reservation_for_growth = memory_reservation
    config.memory_may_move = True
    config.memory_guard_size = WASM_PAGE_BYTES
    # No memfd-backed copy-on-write images and no compilation thread pool: fewer syscalls and
    # threads for the confined worker to allow, and modules are small enough not to care.
    config.memory_init_cow = False
    config.parallel_compilation = False
    # Features a chat extension has no use for, each a larger attack surface.
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_memory64 = False
    # GC objects and exceptions live on a GC heap next to the linear memory, with a limit of
    # its own: a module could hold as much again as the memory cap. wasmtime enables both by
    # default since version 47; no chat extension needs them.
    config.wasm_gc = False
    config.wasm_exceptions = False
    return wasmtime.Engine(config)


_THREAD_START_LOCK = threading.Lock()


def _start_thread(target: Callable[[], None], name: str, stack_bytes: int) -> threading.Thread:
    """Start a daemon thread with its own stack size (threading.stack_size is process-wide)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _THREAD_START_LOCK:
        previous = threading.stack_size(stack_bytes)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


class _EpochTicker:
    """Advances the epoch of every engine with a call in flight, every EPOCH_TICK_SECONDS.

    One daemon thread per process, started on first use (never in the fork template, which
    must stay single-threaded) and idle while no WASM call runs.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._active: dict[int, tuple[wasmtime.Engine, int]] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self, engine: wasmtime.Engine) -> Iterator[None]:
        key = id(engine)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # The ticker needs almost no stack; the default 8 MiB would count against the
                # worker's address-space rlimit.
                try:
                    thread = _start_thread(self._run, "kumix-wasm-epoch", TICKER_STACK_BYTES)
                except RuntimeError as exc:
                    # Without the ticker no wall-clock deadline holds: refuse rather than run unbounded.
                    raise ResourceLimit(f"cannot start the WASM deadline thread: {exc}") from None
                self._thread = thread
            _, count = self._active.get(key, (engine, 0))
            self._active[key] = (engine, count + 1)
            self._wake.notify()
        try:
            yield
        finally:
            with self._lock:
                _, count = self._active[key]
                if count <= 1:
                    del self._active[key]
                else:
                    self._active[key] = (engine, count - 1)

    def _run(self) -> None:
        # Ticks are counted from the clock, not from sleeps: every sleep oversleeps a little
        # (more on a loaded machine or with the GIL busy), and counting sleeps stretched every
        # deadline by that factor -- 6% measured, 1.8 s on a 30 s call, past the reply margin.
        base: float | None = None
        while True:
            with self._lock:
                while not self._active:
                    base = None
                    self._wake.wait()
                engines = [engine for engine, _ in self._active.values()]
            if base is None:
                # Idle time is not counted: a burst of ticks would end new deadlines early.
                base = time.monotonic()
            time.sleep(EPOCH_TICK_SECONDS)
            due = int((time.monotonic() - base) / EPOCH_TICK_SECONDS)
            base += due * EPOCH_TICK_SECONDS
            for engine in engines:
                for _ in range(due):
                    engine.increment_epoch()


_TICKER = _EpochTicker()


# --- path and file rules --------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    if not path:
        return "empty path"
    if "\0" in path:
        return "path contains a NUL byte"
    if "://" in path or _URL_SCHEME.match(path):
        return "a URL; modules load only from files inside the extension directory"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
        return "an absolute path; use a path relative to the extension directory"
    parts = path.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' component; modules must stay inside the extension directory"
    if "\\" in path or any(part in ("", ".") for part in parts):
        return "not a normalized relative path"
    if _PLAIN_RELATIVE_PATH.fullmatch(path) is None:
        return "not a plain relative path (letters, digits, '_', '-', '.'; no hidden components)"
    return None


def _read_module_file(extension_dir: Path, path: str) -> bytes:
    """Read `path` below `extension_dir` without following any symlink; bounded."""
    parts = path.split("/")
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    nofollow = os.O_NOFOLLOW
    try:
        dir_fd = os.open(extension_dir, flags_dir)
    except OSError as exc:
        raise WasmRejected(f"{path}: extension directory unreadable: {exc.strerror}") from None
    fds = [dir_fd]
    try:
        for part in parts[:-1]:
            try:
                fds.append(os.open(part, flags_dir | nofollow, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise WasmRejected(
                        f"{path}: component {part!r} is a symlink or not a directory; symlinks are refused"
                    ) from None
                raise WasmRejected(f"{path}: cannot open directory {part!r}: {exc.strerror}") from None
        try:
            # O_NONBLOCK: a FIFO planted under the module's name must not block the worker.
            fd = os.open(parts[-1], os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | nofollow, dir_fd=fds[-1])
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise WasmRejected(f"{path}: is a symlink; symlinks are refused") from None
            raise WasmRejected(f"{path}: cannot open module file: {exc.strerror}") from None
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WasmRejected(f"{path}: not a regular file")
        if info.st_size > MAX_MODULE_BYTES:
            raise WasmRejected(f"{path}: {info.st_size} bytes exceeds the {MAX_MODULE_BYTES}-byte module limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 * MiB, MAX_MODULE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_MODULE_BYTES:
                raise WasmRejected(f"{path}: grew past the {MAX_MODULE_BYTES}-byte module limit while reading")
        data = b"".join(chunks)
    finally:
        for open_fd in reversed(fds):
            os.close(open_fd)
    # Belt and braces: the file we read must resolve inside the directory.
    resolved = (extension_dir / path).resolve()
    if not resolved.is_relative_to(extension_dir.resolve()):
        raise WasmRejected(f"{path}: resolves outside the extension directory")
    return data


# --- signatures -----------------------------------------------------------------------


def _valtype_names(types: Sequence[wasmtime.ValType]) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


def _check_imports(path: str, spec: WasmModuleSpec, module: wasmtime.Module) -> list[HostFunction]:
    declared = set(spec.imports)
    for name in spec.imports:
        if name not in HOST_FUNCTIONS:
            raise WasmRejected(
                f"{path}: manifest declares import {name!r}, which is not a Kumix host function"
                f" (offered: {', '.join(sorted(HOST_FUNCTIONS))})"
            )
    wanted: list[HostFunction] = []
    for item in module.imports:
        name = f"{item.module}.{item.name}"
        if name not in declared:
            hint = " (WASI is not offered)" if item.module.startswith("wasi") else ""
            raise WasmRejected(f"{path}: unexpected import {name!r}{hint}; the manifest declares {sorted(declared)}")
        host = HOST_FUNCTIONS[name]
        ty = item.type
        if not isinstance(ty, wasmtime.FuncType):
            raise WasmRejected(f"{path}: import {name!r} must be a function")
        got = (_valtype_names(ty.params), _valtype_names(ty.results))
        if got != (host.params, host.results):
            raise WasmRejected(
                f"{path}: import {name!r} has signature {got}, Kumix offers {(host.params, host.results)}"
            )
        wanted.append(host)
    return wanted


def _check_exports(path: str, spec: WasmModuleSpec, module: wasmtime.Module) -> None:
    present = {item.name for item in module.exports}
    for name in spec.exports:
        if name not in present:
            raise WasmRejected(f"{path}: declared export {name!r} is missing from the module")


# --- instances ------------------------------------------------------------------------


@dataclass
class _Live:
    """One store and its single instance; thrown away after any failed call."""

    store: wasmtime.Store
    exports: Mapping[str, Any]
    log_budget: list[int]


class WasmInstance:
    """A loaded, checked module. Calls run under the limits; a failed call discards the instance.

    Not safe for concurrent use from several threads; calls are serialized by a lock, and a
    call that cannot get it before its deadline fails with `timeout`.
    """

    def __init__(
        self,
        *,
        path: str,
        spec: WasmModuleSpec,
        module: wasmtime.Module,
        engine: wasmtime.Engine,
        hosts: Sequence[HostFunction],
        limits: WasmLimits,
        deadline: Callable[[], float | None],
        log: Callable[[str], None],
    ) -> None:
        self.path = path
        self.sha256 = spec.sha256
        self.exports: tuple[str, ...] = spec.exports
        self.limits = limits
        self._module = module
        self._engine = engine
        self._hosts = tuple(hosts)
        self._deadline = deadline
        self._log = log
        self._lock = threading.Lock()
        self._live: _Live | None = None
        self.instances_created = 0
        """How many instances this handle has made: the first, plus one after each failed call."""
        self.last_fuel_used = 0
        # Function signatures come from the module, so they are read once, not per call.
        self._signatures: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            item.name: (_valtype_names(item.type.params), _valtype_names(item.type.results))
            for item in module.exports
            if isinstance(item.type, wasmtime.FuncType)
        }

    # public API

    def call(self, export: str, *args: int | float) -> Any:
        """Call a declared numeric export; returns None, a number, or a list for multi-value."""
        self._require_declared(export)
        params, _ = self._signature(export)
        if len(args) != len(params):
            raise BadRequest(f"{self.path}: {export} takes {len(params)} arguments, got {len(args)}")
        values: list[int | float] = []
        for value, kind in zip(args, params, strict=True):
            if kind not in ("i32", "i64", "f32", "f64"):
                raise BadRequest(f"{self.path}: {export} takes a {kind} parameter, which Kumix cannot pass")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{self.path}: {export} wants {kind}, got {type(value).__name__}")
            if kind in ("i32", "i64"):
                bits = 32 if kind == "i32" else 64
                # wasmtime would silently wrap a number that does not fit (2**32 becomes 0).
                if not isinstance(value, int) or not -(2 ** (bits - 1)) <= value < 2**bits:
                    raise BadRequest(f"{self.path}: {export} wants {kind}, got {value!r:.40}")
                values.append(value)
            else:
                # wasmtime converts only Python floats to f32/f64; a TypeError from inside the
                # call would discard the instance and reach the caller as an untyped error.
                try:
                    values.append(float(value))
                except OverflowError:
                    raise BadRequest(f"{self.path}: {export} wants {kind}, got a number out of range") from None

        def body(live: _Live) -> Any:
            return self._func(live, export)(live.store, *values)

        return self._run(body)

    def call_bytes(self, export: str, data: bytes) -> bytes:
        """Pass bytes in and get bytes out through exported memory.

        Convention: the module exports `memory`, `alloc(len: i32) -> i32` (where the host
        writes the input) and `export(ptr: i32, len: i32) -> i64` returning
        `(out_ptr << 32) | out_len`. All three must be declared in the manifest.
        """
        for name in ("memory", "alloc", export):
            self._require_declared(name)
        if len(data) > self.limits.max_input_bytes:
            raise InputTooLarge(
                f"{self.path}: input of {len(data)} bytes exceeds the"
                f" {self.limits.max_input_bytes}-byte WASM input limit"
            )

        self._check_signature("alloc", ("i32",), ("i32",))
        self._check_signature(export, ("i32", "i32"), ("i64",))

        def body(live: _Live) -> bytes:
            memory = live.exports.get("memory")
            if not isinstance(memory, wasmtime.Memory):
                raise WasmTrap(f"{self.path}: export 'memory' is not a memory")
            alloc = self._func(live, "alloc")
            func = self._func(live, export)
            size = len(data)
            cap = self.limits.max_memory_bytes
            try:
                ptr = alloc(live.store, size) & 0xFFFFFFFF
            except wasmtime.Trap as exc:
                # alloc traps when memory.grow is refused; if the input cannot fit next to what
                # the module already holds without passing the cap, the cap is the cause.
                if exc.trap_code not in _OWN_LIMIT_TRAPS and memory.data_len(live.store) + size > cap:
                    raise ResourceLimit(
                        f"{self.path}: an input of {size} bytes does not fit under the {cap}-byte memory cap",
                        details={"limit": "memory"},
                    ) from None
                raise
            if ptr + size > memory.data_len(live.store):
                raise WasmTrap(f"{self.path}: alloc({size}) returned a region outside memory")
            if size:
                memory.write(live.store, data, ptr)
            packed = func(live.store, ptr, size) & 0xFFFFFFFFFFFFFFFF
            out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
            if out_len > self.limits.max_output_bytes:
                raise OutputTooLarge(
                    f"{self.path}: {export} returned {out_len} bytes, over the"
                    f" {self.limits.max_output_bytes}-byte WASM output limit"
                )
            if out_ptr + out_len > memory.data_len(live.store):
                raise WasmTrap(f"{self.path}: {export} returned a result outside memory")
            return bytes(memory.read(live.store, out_ptr, out_ptr + out_len))

        result: bytes = self._run(body)
        return result

    # internals

    def _require_declared(self, export: str) -> None:
        if export not in self.exports:
            raise WasmRejected(f"{self.path}: export {export!r} is not declared in the manifest")

    def _func(self, live: _Live, export: str) -> wasmtime.Func:
        func = live.exports.get(export)
        if not isinstance(func, wasmtime.Func):
            raise WasmTrap(f"{self.path}: export {export!r} is not a function")
        return func

    def _signature(self, export: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        signature = self._signatures.get(export)
        if signature is None:
            raise WasmTrap(f"{self.path}: export {export!r} is not a function")
        return signature

    def _check_signature(self, name: str, params: tuple[str, ...], results: tuple[str, ...]) -> None:
        got = self._signature(name)
        if got != (params, results):
            raise WasmTrap(f"{self.path}: {name} has signature {got}, the bytes convention needs {(params, results)}")

    def instantiate_now(self) -> None:
        """Create the instance (running the start function) under the limits, to fail early."""
        self._run(lambda live: None)

    def _run(self, body: Callable[[_Live], T]) -> T:
        deadline = self._deadline()
        if deadline is None:
            deadline = time.monotonic() + NO_DEADLINE_SECONDS
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._lock.acquire(timeout=remaining):
            raise CallTimeout(f"{self.path}: call deadline passed before the WASM call started")
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallTimeout(f"{self.path}: call deadline passed before the WASM call started")
            # +1: the current tick may be almost over; a deadline is never early.
            ticks = int(remaining / EPOCH_TICK_SECONDS) + 1
            live = self._live
            with _TICKER.running(self._engine):
                try:
                    if live is None:
                        live = self._new_live(ticks)
                    else:
                        live.store.set_fuel(self.limits.fuel_per_call)
                        live.store.set_epoch_deadline(ticks)
                        live.log_budget[0] = MAX_LOG_BYTES_PER_CALL
                    result = body(live)
                    self.last_fuel_used = self.limits.fuel_per_call - live.store.get_fuel()
                    self._live = live
                    return result
                except wasmtime.Trap as exc:
                    error: BaseException = self._map_trap(exc, live)
                except wasmtime.WasmtimeError as exc:
                    error = WasmTrap(f"{self.path}: {_first_line(str(exc))}")
                except BaseException as exc:
                    error = exc
                # Discard the instance now, not when the garbage collector finds it: a
                # traceback could keep its memory reserved under the worker's rlimit.
                self._live = None
                if live is not None:
                    live.exports = {}
                    live.store.close()
                raise error
        finally:
            self._lock.release()

    def _new_live(self, ticks: int) -> _Live:
        store = wasmtime.Store(self._engine)
        store.set_limits(
            memory_size=self.limits.max_memory_bytes,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=1,
            tables=MAX_TABLES,
            memories=1,
        )
        store.set_fuel(self.limits.fuel_per_call)
        store.set_epoch_deadline(ticks)
        budget = [MAX_LOG_BYTES_PER_CALL]
        imports = [self._host_func(store, host, budget) for host in self._hosts]
        self.instances_created += 1
        try:
            instance = wasmtime.Instance(store, self._module, imports)
        except wasmtime.Trap as exc:
            # A start function trapped; map it while the store can still report fuel and memory.
            error: KumixError = self._map_trap(exc, _Live(store=store, exports={}, log_budget=budget))
            store.close()
            raise error from None
        except wasmtime.WasmtimeError as exc:
            store.close()
            # Imports were checked before, so what is left are the store's limits.
            raise ResourceLimit(
                f"{self.path}: cannot instantiate within the limits: {_first_line(str(exc))}",
                details={"limit": "instantiate"},
            ) from None
        exports = dict(instance.exports(store).items())
        return _Live(store=store, exports=exports, log_budget=budget)

    def _host_func(self, store: wasmtime.Store, host: HostFunction, budget: list[int]) -> wasmtime.Func:
        valtypes = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}
        ty = wasmtime.FuncType([valtypes[p]() for p in host.params], [valtypes[r]() for r in host.results])
        if host.name == "kumix.log":
            return wasmtime.Func(store, ty, self._make_log(budget), access_caller=True)
        raise WasmRejected(f"{self.path}: host function {host.name!r} has no implementation")  # pragma: no cover

    def _make_log(self, budget: list[int]) -> Callable[[wasmtime.Caller, int, int], None]:
        def log(caller: wasmtime.Caller, ptr: int, length: int) -> None:
            memory = caller.get("memory")
            if not isinstance(memory, wasmtime.Memory):
                raise WasmTrap(f"{self.path}: kumix.log needs an exported memory")
            ptr &= 0xFFFFFFFF
            length &= 0xFFFFFFFF
            if ptr + length > memory.data_len(caller):
                raise WasmTrap(f"{self.path}: kumix.log message lies outside memory")
            take = min(length, MAX_LOG_MESSAGE_BYTES, budget[0])
            if take <= 0:
                return
            budget[0] -= take
            text = bytes(memory.read(caller, ptr, ptr + take)).decode("utf-8", "replace")
            self._log(text)

        return log

    def _map_trap(self, exc: wasmtime.Trap, live: _Live | None) -> KumixError:
        code = exc.trap_code
        used = self.limits.fuel_per_call
        if live is not None:
            with suppress(wasmtime.WasmtimeError):
                used = self.limits.fuel_per_call - live.store.get_fuel()
        self.last_fuel_used = used
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return ResourceLimit(
                f"{self.path}: WASM used all {self.limits.fuel_per_call} fuel units of the call",
                details={"limit": "fuel"},
            )
        if code == wasmtime.TrapCode.INTERRUPT:
            return CallTimeout(f"{self.path}: WASM call ran past its deadline", details={"limit": "deadline"})
        if code == wasmtime.TrapCode.STACK_OVERFLOW:
            return ResourceLimit(
                f"{self.path}: WASM stack overflow (limit {self.limits.max_stack_bytes} bytes)",
                details={"limit": "stack"},
            )
        trap = code.name.lower() if code is not None else "unknown"
        if live is not None and self._memory_at_cap(live):
            return ResourceLimit(
                f"{self.path}: WASM trapped ({trap}) with its memory at the"
                f" {self.limits.max_memory_bytes}-byte cap",
                details={"limit": "memory", "trap": trap},
            )
        return WasmTrap(f"{self.path}: WASM trapped: {trap}", details={"trap": trap})

    def _memory_at_cap(self, live: _Live) -> bool:
        cap = self.limits.max_memory_bytes
        slack = max(WASM_PAGE_BYTES, cap // MEMORY_CAP_SLACK_FRACTION)
        for value in live.exports.values():
            if isinstance(value, wasmtime.Memory) and value.data_len(live.store) + slack > cap:
                return True
        return False


def _first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "unknown wasmtime error"


# --- loader ---------------------------------------------------------------------------


def _stderr_log(prefix: str) -> Callable[[str], None]:
    def write(text: str) -> None:
        # In a worker stderr is the extension's size-capped log, never the wire channel.
        print(f"[{prefix}] {text}", file=sys.stderr, flush=True)

    return write


class WasmLoader:
    """Loads an extension's WASM modules by the rules in this module's docstring.

    `extension_dir` and `specs` come from the worker context (or a test); `deadline` returns
    the current call's `time.monotonic()` deadline, or None outside a call.
    """

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
        self._engine = _engine(reservation, limits.max_stack_bytes)
        self._compiled: dict[str, wasmtime.Module] = {}
        self._compiling: dict[str, _Compilation] = {}
        self._compiling_lock = threading.Lock()

    def load(self, path: str) -> WasmInstance:
        """Check, compile and instantiate the module at `path` (relative to the extension)."""
        if not isinstance(path, str):
            raise WasmRejected(f"module path must be a string, got {type(path).__name__}")
        problem = _path_problem(path)
        if problem is not None:
            raise WasmRejected(f"{path[:200]!r} is {problem}", details={"path": path[:200]})
        spec = self._specs.get(path)
        if spec is None:
            raise WasmRejected(f"{path}: not listed in the manifest's wasm array", details={"path": path})
        data = _read_module_file(self.extension_dir, path)
        digest = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(digest, spec.sha256):
            raise WasmRejected(
                f"{path}: sha256 mismatch: manifest pins {spec.sha256}, file has {digest}",
                details={"path": path, "expected": spec.sha256, "actual": digest},
            )
        if not data.startswith(_WASM_MAGIC):
            # wasmtime would parse non-binary bytes as the text format; only binaries are shipped.
            raise WasmRejected(f"{path}: not a binary WASM module")
        module = self._compiled.get(digest)
        if module is None:
            module = self._compile_before_deadline(data, digest, path)
        hosts = _check_imports(path, spec, module)
        _check_exports(path, spec, module)
        instance = WasmInstance(
            path=path,
            spec=spec,
            module=module,
            engine=self._engine,
            hosts=hosts,
            limits=self.limits,
            deadline=self._deadline,
            log=self._log or _stderr_log(path),
        )
        instance.instantiate_now()
        return instance

    def _compile_before_deadline(self, data: bytes, digest: str, path: str) -> wasmtime.Module:
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
                job = _Compilation(self._engine, data, path)
                try:
                    _start_thread(job.run, "kumix-wasm-compile", COMPILE_STACK_BYTES)
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

    def __init__(self, engine: wasmtime.Engine, data: bytes, path: str) -> None:
        self._engine = engine
        self._data = data
        self._path = path
        self.done = threading.Event()
        self.module: wasmtime.Module | None = None
        self.error: KumixError | None = None

    def run(self) -> None:
        try:
            self.module = _compile(self._engine, self._data, self._path)
        except KumixError as exc:
            self.error = exc
        except BaseException as exc:  # reported to the waiting caller, never lost in the thread
            self.error = WasmRejected(f"{self._path}: compiling failed: {_first_line(str(exc))}")
        finally:
            self._data = b""
            self.done.set()


def _compile(engine: wasmtime.Engine, data: bytes, path: str) -> wasmtime.Module:
    try:
        return wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        raise WasmRejected(f"{path}: not a valid WASM module: {_first_line(str(exc))}") from None


def wat_to_wasm(text: str) -> bytes:
    """Compile the WebAssembly text format to a binary (build scripts and tests)."""
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise BadRequest(f"invalid WAT: {_first_line(str(exc))}") from None
