"""The bytes calling convention: pass bytes in and get bytes out of a module through its exported memory.

The module exports `memory`, `alloc(len: i32) -> i32` (where the host writes the input) and
`f(ptr: i32, len: i32) -> i64` returning `(out_ptr << 32) | out_len`. Every pointer and
length the module hands back is checked against the memory size and the output limit
before anything is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import wasmtime

from kumix.core.errors import OutputTooLarge, ResourceLimit, WasmTrap
from kumix.extensions.wasm.limits import WasmLimits
from kumix.extensions.wasm.traps import OWN_LIMIT_TRAPS

ALLOC_SIGNATURE = (("i32",), ("i32",))
FUNCTION_SIGNATURE = (("i32", "i32"), ("i64",))
REQUIRED_EXPORTS = ("memory", "alloc")


def exchange(
    store: wasmtime.Store,
    exports: Mapping[str, Any],
    export: str,
    data: bytes,
    limits: WasmLimits,
    path: str,
) -> bytes:
    """One `call_bytes` inside an instance; runs under the caller's fuel and deadline."""
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise WasmTrap(f"{path}: export 'memory' is not a memory")
    alloc = export_func(exports, "alloc", path)
    func = export_func(exports, export, path)
    size = len(data)
    cap = limits.max_memory_bytes
    try:
        ptr = alloc(store, size) & 0xFFFFFFFF
    except wasmtime.Trap as exc:
        # alloc traps when memory.grow is refused; if the input cannot fit next to what the
        # module already holds without passing the cap, the cap is the cause.
        if exc.trap_code not in OWN_LIMIT_TRAPS and memory.data_len(store) + size > cap:
            raise ResourceLimit(
                f"{path}: an input of {size} bytes does not fit under the {cap}-byte memory cap",
                details={"limit": "memory"},
            ) from None
        raise
    if ptr + size > memory.data_len(store):
        raise WasmTrap(f"{path}: alloc({size}) returned a region outside memory")
    if size:
        memory.write(store, data, ptr)
    packed = func(store, ptr, size) & 0xFFFFFFFFFFFFFFFF
    out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
    if out_len > limits.max_output_bytes:
        raise OutputTooLarge(
            f"{path}: {export} returned {out_len} bytes, over the {limits.max_output_bytes}-byte WASM output limit"
        )
    if out_ptr + out_len > memory.data_len(store):
        raise WasmTrap(f"{path}: {export} returned a result outside memory")
    return bytes(memory.read(store, out_ptr, out_ptr + out_len))


def export_func(exports: Mapping[str, Any], name: str, path: str) -> wasmtime.Func:
    """The exported function `name`; a module whose export is something else broke the convention."""
    func = exports.get(name)
    if not isinstance(func, wasmtime.Func):
        raise WasmTrap(f"{path}: export {name!r} is not a function")
    return func
