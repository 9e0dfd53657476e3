"""`WasmInstance`: calls into a loaded module under fresh fuel and an epoch deadline each.

Numbers in and out (`call`), bytes through `convention` (`call_bytes`); after any call that
failed inside the module the instance is discarded and the next call gets a fresh one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import wasmtime

from kumix.core.errors import BadRequest, CallTimeout, InputTooLarge, KumixError, ResourceLimit, WasmRejected, WasmTrap
from kumix.extensions.manifest import WasmModuleSpec
from kumix.extensions.wasm.binary import ModuleShape
from kumix.extensions.wasm.clock import TICKER, deadline_ticks
from kumix.extensions.wasm.convention import (
    ALLOC_SIGNATURE,
    FUNCTION_SIGNATURE,
    REQUIRED_EXPORTS,
    exchange,
    export_func,
)
from kumix.extensions.wasm.engine import first_line
from kumix.extensions.wasm.host import MAX_LOG_BYTES_PER_CALL, HostFunction, host_func
from kumix.extensions.wasm.limits import MAX_TABLE_ELEMENTS, MAX_TABLES, NO_DEADLINE_SECONDS, WasmLimits
from kumix.extensions.wasm.reserved import START_EXPORT
from kumix.extensions.wasm.traps import fuel_used, map_trap, memory_at_cap

T = TypeVar("T")

_INT_BITS = {"i32": 32, "i64": 64}


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
        shape: ModuleShape,
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
        self._has_start = shape.start is not None
        self._engine = engine
        self._hosts = tuple(hosts)
        self._deadline = deadline
        self._log = log
        self._lock = threading.Lock()
        self._live: _Live | None = None
        self.instances_created = 0
        """How many instances this handle has made: the first, plus one after each failed call."""
        self.last_fuel_used = 0
        # Read from the bytes by `binary`, never from wasmtime (see there), and checked to hold
        # only i32/i64/f32/f64 before the module was compiled.
        self._signatures: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            item.name: item.signature.as_pair()
            for item in shape.exports
            if item.signature is not None and item.name in spec.exports
        }

    # public API

    def call(self, export: str, *args: int | float) -> Any:
        """Call a declared numeric export; returns None, a finite number, or a list for multi-value.

        Arguments that cannot be passed are refused before the module runs, so they cost
        nothing: the instance is kept. A NaN or infinite result is refused (`wasm_trap`):
        JSON, which carries results to the host, has neither.
        """
        self._require_declared(export)
        params, _ = self._signature(export)
        if len(args) != len(params):
            raise BadRequest(f"{self.path}: {export} takes {len(params)} arguments, got {len(args)}")
        values = [self._argument(export, kind, value) for value, kind in zip(args, params, strict=True)]

        def body(live: _Live) -> Any:
            result = export_func(live.exports, export, self.path)(live.store, *values)
            for value in result if isinstance(result, list) else [result]:
                if isinstance(value, float) and not math.isfinite(value):
                    raise WasmTrap(
                        f"{self.path}: {export} returned {value}, which is not finite; call() returns finite"
                        " numbers only (JSON has no NaN or infinity)",
                        details={"result": "non_finite"},
                    )
            return result

        return self._run(body)

    def call_bytes(self, export: str, data: bytes) -> bytes:
        """Pass bytes in and get bytes out through exported memory (`convention`).

        `memory`, `alloc` and `export` must all be declared in the manifest.
        """
        for name in (*REQUIRED_EXPORTS, export):
            self._require_declared(name)
        if len(data) > self.limits.max_input_bytes:
            raise InputTooLarge(
                f"{self.path}: input of {len(data)} bytes exceeds the"
                f" {self.limits.max_input_bytes}-byte WASM input limit"
            )
        self._check_signature("alloc", ALLOC_SIGNATURE)
        self._check_signature(export, FUNCTION_SIGNATURE)
        result: bytes = self._run(
            lambda live: exchange(live.store, live.exports, export, data, self.limits, self.path)
        )
        return result

    def instantiate_now(self) -> None:
        """Create the instance (running the start function) under the limits, to fail early."""
        self._run(lambda live: None)

    # internals

    def _argument(self, export: str, kind: str, value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{self.path}: {export} wants {kind}, got {type(value).__name__}")
        bits = _INT_BITS.get(kind)
        if bits is not None:
            # wasmtime would silently wrap a number that does not fit (2**32 becomes 0).
            if not isinstance(value, int) or not -(2 ** (bits - 1)) <= value < 2**bits:
                raise BadRequest(f"{self.path}: {export} wants {kind}, got {value!r:.40}")
            return value
        if kind not in ("f32", "f64"):
            # Unreachable: `checks` refused every other type at load. Kept because handing such
            # a value to wasmtime would abort the process, not raise.
            raise BadRequest(f"{self.path}: {export} takes a {kind} parameter, which Kumix cannot pass")
        # wasmtime converts only Python floats to f32/f64; a TypeError from inside the call
        # would discard the instance and reach the caller as an untyped error.
        try:
            number = float(value)
        except OverflowError:
            raise BadRequest(f"{self.path}: {export} wants {kind}, got a number out of range") from None
        if not math.isfinite(number):
            raise BadRequest(f"{self.path}: {export} wants a finite {kind}, got {number}")
        return number

    def _require_declared(self, export: str) -> None:
        if export not in self.exports:
            raise WasmRejected(f"{self.path}: export {export!r} is not declared in the manifest")

    def _signature(self, export: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        signature = self._signatures.get(export)
        if signature is None:
            raise WasmTrap(f"{self.path}: export {export!r} is not a function")
        return signature

    def _check_signature(self, name: str, wanted: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        got = self._signature(name)
        if got != wanted:
            raise WasmTrap(f"{self.path}: {name} has signature {got}, the bytes convention needs {wanted}")

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
            ticks = deadline_ticks(remaining)
            live = self._live
            with TICKER.running(self._engine):
                try:
                    if live is None:
                        live = self._new_live(ticks)
                        self._run_start(live)
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
                    error = WasmTrap(f"{self.path}: {first_line(str(exc))}")
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
        imports = [host_func(store, host, budget, self._log, self.path) for host in self._hosts]
        self.instances_created += 1
        try:
            instance = wasmtime.Instance(store, self._module, imports)
        except wasmtime.Trap as exc:
            # No start function runs in here (it is a reserved export, run next); this is an
            # element or data segment that does not fit, mapped while the store can report fuel.
            error: KumixError = self._map_trap(exc, _Live(store=store, exports={}, log_budget=budget))
            store.close()
            raise error from None
        except wasmtime.WasmtimeError as exc:
            store.close()
            # Imports were checked before, so what is left are the store's limits.
            raise ResourceLimit(
                f"{self.path}: cannot instantiate within the limits: {first_line(str(exc))}",
                details={"limit": "instantiate"},
            ) from None
        exports = dict(instance.exports(store).items())
        return _Live(store=store, exports=exports, log_budget=budget)

    def _run_start(self, live: _Live) -> None:
        """Run the module's start function as the first call of a new instance.

        It runs here rather than inside instantiation so that a trap it raises with the
        memory at the cap is seen as the cap's doing (`reserved` explains the reserved export).
        """
        if self._has_start:
            export_func(live.exports, START_EXPORT, self.path)(live.store)

    def _map_trap(self, exc: wasmtime.Trap, live: _Live | None) -> KumixError:
        if live is None:
            self.last_fuel_used = self.limits.fuel_per_call
            return map_trap(exc, self.path, self.limits, memory_full=False)
        self.last_fuel_used = fuel_used(live.store, self.limits)
        full = memory_at_cap(live.store, live.exports, self.limits)
        return map_trap(exc, self.path, self.limits, memory_full=full)
