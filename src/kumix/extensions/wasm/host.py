"""The host functions a module may import -- the complete allowlist -- and their implementations.

There is no WASI: no files, clocks, randomness or sockets. A module imports a host function
only when its manifest entry declares it, with exactly the signature given here (`checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import wasmtime

from kumix.core.errors import WasmRejected, WasmTrap

MAX_LOG_MESSAGE_BYTES = 512
MAX_LOG_BYTES_PER_CALL = 8192
"""`kumix.log` is for diagnostics; the worker's log is size-capped anyway, but a chatty
module should not fill it in one call."""


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
"""The complete allowlist."""

_VALTYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}


def host_func(
    store: wasmtime.Store, host: HostFunction, budget: list[int], log: Callable[[str], None], path: str
) -> wasmtime.Func:
    """The implementation of `host` in `store`; `budget` holds the bytes `kumix.log` may still write this call."""
    ty = wasmtime.FuncType([_VALTYPES[p]() for p in host.params], [_VALTYPES[r]() for r in host.results])
    if host.name == "kumix.log":
        return wasmtime.Func(store, ty, _make_log(budget, log, path), access_caller=True)
    raise WasmRejected(f"{path}: host function {host.name!r} has no implementation")  # pragma: no cover


def _make_log(budget: list[int], sink: Callable[[str], None], path: str) -> Callable[[wasmtime.Caller, int, int], None]:
    def log(caller: wasmtime.Caller, ptr: int, length: int) -> None:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise WasmTrap(f"{path}: kumix.log needs an exported memory")
        ptr &= 0xFFFFFFFF
        length &= 0xFFFFFFFF
        if ptr + length > memory.data_len(caller):
            raise WasmTrap(f"{path}: kumix.log message lies outside memory")
        take = min(length, MAX_LOG_MESSAGE_BYTES, budget[0])
        if take <= 0:
            return
        budget[0] -= take
        text = bytes(memory.read(caller, ptr, ptr + take)).decode("utf-8", "replace")
        sink(text)

    return log
