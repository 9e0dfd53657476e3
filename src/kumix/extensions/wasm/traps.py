"""What a wasmtime trap means for the caller: one of Kumix's own limits, or the module's fault.

Fuel, deadline, stack and the memory cap are Kumix's (`resource_limit`, `timeout`); the rest
is `wasm_trap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import wasmtime

from kumix.core.errors import CallTimeout, KumixError, ResourceLimit, WasmTrap
from kumix.extensions.wasm.limits import WasmLimits
from kumix.extensions.wasm.reserved import MEMORY_EXPORT_PREFIX

OWN_LIMIT_TRAPS = frozenset(
    {wasmtime.TrapCode.OUT_OF_FUEL, wasmtime.TrapCode.INTERRUPT, wasmtime.TrapCode.STACK_OVERFLOW}
)
"""Traps raised by Kumix's own limits; every other trap is the module's."""


def fuel_used(store: wasmtime.Store, limits: WasmLimits) -> int:
    with suppress(wasmtime.WasmtimeError):
        return limits.fuel_per_call - store.get_fuel()
    return limits.fuel_per_call


def memory_at_cap(store: wasmtime.Store, exports: Mapping[str, Any], limits: WasmLimits) -> bool:
    """Whether any of the instance's memories (all exported under reserved names) is at the cap."""
    for name, value in exports.items():
        if (
            name.startswith(MEMORY_EXPORT_PREFIX)
            and isinstance(value, wasmtime.Memory)
            and limits.memory_at_cap(value.data_len(store))
        ):
            return True
    return False


def map_trap(exc: wasmtime.Trap, path: str, limits: WasmLimits, *, memory_full: bool) -> KumixError:
    """The Kumix error for a trap; `memory_full` says whether a memory was at the cap when it happened."""
    code = exc.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ResourceLimit(
            f"{path}: WASM used all {limits.fuel_per_call} fuel units of the call", details={"limit": "fuel"}
        )
    if code == wasmtime.TrapCode.INTERRUPT:
        return CallTimeout(f"{path}: WASM call ran past its deadline", details={"limit": "deadline"})
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return ResourceLimit(
            f"{path}: WASM stack overflow (limit {limits.max_stack_bytes} bytes)", details={"limit": "stack"}
        )
    trap = code.name.lower() if code is not None else "unknown"
    if memory_full:
        # A refused memory.grow is not a trap in WebAssembly; compiled allocators react to it
        # by trapping, so a trap with the memory at the cap is the cap's doing.
        return ResourceLimit(
            f"{path}: WASM trapped ({trap}) with its memory at the {limits.max_memory_bytes}-byte cap",
            details={"limit": "memory", "trap": trap},
        )
    return WasmTrap(f"{path}: WASM trapped: {trap}", details={"trap": trap})
