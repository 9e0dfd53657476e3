"""What one WASM module may use per call: the `WasmLimits` values, their defaults and ceilings.

No wasmtime here: these are Kumix's numbers. `engine` turns the engine-wide ones into a
`wasmtime.Config`, `instance` applies the per-store ones to every instance it creates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kumix.core.errors import BadRequest

MiB = 1024 * 1024
WASM_PAGE_BYTES = 65536

WASM_MEMORY_CEILING_BYTES = 256 * MiB
"""No module gets more linear memory than this, whatever the policy allows."""

WASM_MEMORY_SHARE = 4
"""A module gets at most 1/4 of the policy's `maxMemoryMb`: the worker's address-space
rlimit covers the interpreter, wasmtime's compiled code and the memory's reservation too."""

DEFAULT_FUEL_PER_CALL = 4_000_000_000
"""The deterministic CPU bound of one call; the epoch deadline is the wall-clock one.

wasmtime charges one unit per instruction, so time per unit depends on the mix. Measured by
`bench/wasm_call.py` (fuel rate) on the 2-core reference machine under load: ordinary loops
burn 1.6-10 G units/s (0.4-2.5 s for this budget), a loop of nothing but a branch -- the
slowest fuel a runaway can burn -- 0.23-0.55 G units/s (7-17 s, longer the busier the machine).
Under the strict policy's default 5 s timeout the deadline stops a runaway first. Fuel counts
work, not time: it stops the same runaway after the same number of instructions however busy
the machine is, and a call with a long timeout (`maxTimeoutMs`, 30 s) gets no more. The first
reasoning here ("1-2 s at ~3 G units/s") was assumed, not measured; the value is kept as the
work budget for ordinary code.
"""

DEFAULT_MAX_STACK_BYTES = 512 * 1024
"""WASM runs on the calling thread's stack; 512 KiB leaves the rest of a default 8 MiB
thread stack to Python and keeps a runaway recursion cheap to stop."""

DEFAULT_MAX_INPUT_BYTES = 4 * MiB
DEFAULT_MAX_OUTPUT_BYTES = 4 * MiB
"""Both match the strict policy's maxOutputBytes: a WASM answer larger than the host would
accept from the worker is useless."""

MAX_TABLE_ELEMENTS = 100_000
MAX_TABLES = 4

MEMORY_RESERVATION_BYTES = 16 * MiB
"""Virtual memory reserved per linear memory up front, and again as headroom each time one
grows past its reservation and moves. Small next to the worker's address-space rlimit
(several instances fit), large enough that typical modules never move and a grow bomb
moves only a handful of times before the cap stops it."""

MEMORY_CAP_SLACK_FRACTION = 8
"""A trap with memory within 1/8 of the cap (or one page) counts as hitting the cap."""

NO_DEADLINE_SECONDS = 5.0
"""Deadline for a call made outside a proc call (e.g. at import time): the strict default."""


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

    def memory_at_cap(self, memory_bytes: int) -> bool:
        """Whether a memory of this size is close enough to the cap that the cap explains a trap."""
        slack = max(WASM_PAGE_BYTES, self.max_memory_bytes // MEMORY_CAP_SLACK_FRACTION)
        return memory_bytes + slack > self.max_memory_bytes
