"""The wasmtime engine (proposals on and off, memory reservation) and compiling bytes into a module.

Proposals Kumix does not need are turned off at the engine, so a module using one fails
to compile (`wasm_rejected`) instead of reaching code paths nobody tests here. On: the
WebAssembly 2.0 baseline (multi-value, bulk memory, reference types for funcref/externref
tables, sign extension, non-trapping float-to-int) and multi-memory (the store allows one
memory anyway). Off, each for a reason given below.
"""

from __future__ import annotations

from functools import cache

import wasmtime

from kumix.core.errors import BadRequest, WasmRejected
from kumix.extensions.wasm.binary import ModuleShape
from kumix.extensions.wasm.limits import WASM_PAGE_BYTES
from kumix.extensions.wasm.reserved import for_compiling


@cache
def engine(memory_reservation: int, max_stack_bytes: int) -> wasmtime.Engine:
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
    # SIMD (`v128`) and typed function references were on by default and undocumented; the
    # C API aborts the process when asked about either type, and Kumix passes neither. Tail
    # calls were on too; common toolchains do not emit them for wasm32 by default.
    config.wasm_simd = False
    config.wasm_relaxed_simd = False
    config.wasm_function_references = False
    config.wasm_tail_call = False
    # Off by default in wasmtime 50; said here so that an upgrade turning one on changes nothing.
    config.wasm_wide_arithmetic = False
    config.wasm_custom_page_sizes = False
    config.wasm_stack_switching = False
    return wasmtime.Engine(config)


def compile_module(engine: wasmtime.Engine, data: bytes, shape: ModuleShape, path: str) -> wasmtime.Module:
    """Compile the pinned bytes `data` (with Kumix's reserved exports added, see `reserved`)."""
    try:
        return wasmtime.Module(engine, for_compiling(data, shape))
    except wasmtime.WasmtimeError as exc:
        raise WasmRejected(f"{path}: not a valid WASM module: {first_line(str(exc))}") from None


def wat_to_wasm(text: str) -> bytes:
    """Compile the WebAssembly text format to a binary (build scripts and tests)."""
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise BadRequest(f"invalid WAT: {first_line(str(exc))}") from None


def first_line(message: str) -> str:
    """The first non-empty line of a wasmtime error, bounded: its backtrace is not for callers."""
    for line in message.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "unknown wasmtime error"
