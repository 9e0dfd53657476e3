"""The import and export rules a module's shape must pass before it is compiled.

Imports: declared, a Kumix host function, the exact signature. Exports: the declared ones
present, no reserved name, and only i32/i64/f32/f64 in any exported function's signature.

No wasmtime here: the shape comes from `binary`, so a hostile type is refused by name
(`v128`, `funcref`, `ref` ...) and never handed to wasmtime's C API to describe.
"""

from __future__ import annotations

from kumix.core.errors import WasmRejected
from kumix.extensions.manifest import WasmModuleSpec
from kumix.extensions.wasm.binary import NUMERIC_TYPES, ModuleShape
from kumix.extensions.wasm.host import HOST_FUNCTIONS, HostFunction
from kumix.extensions.wasm.reserved import RESERVED_PREFIX

_PASSABLE = frozenset(NUMERIC_TYPES.values())


def check_imports(path: str, spec: WasmModuleSpec, shape: ModuleShape) -> list[HostFunction]:
    """The host functions the module imports, in import order; `WasmRejected` for anything else."""
    declared = set(spec.imports)
    for name in spec.imports:
        if name not in HOST_FUNCTIONS:
            raise WasmRejected(
                f"{path}: manifest declares import {name!r}, which is not a Kumix host function"
                f" (offered: {', '.join(sorted(HOST_FUNCTIONS))})"
            )
    wanted: list[HostFunction] = []
    for item in shape.imports:
        name = f"{item.module}.{item.name}"
        if name not in declared:
            hint = " (WASI is not offered)" if item.module.startswith("wasi") else ""
            raise WasmRejected(f"{path}: unexpected import {name!r}{hint}; the manifest declares {sorted(declared)}")
        host = HOST_FUNCTIONS[name]
        if item.signature is None:
            raise WasmRejected(f"{path}: import {name!r} must be a function")
        got = item.signature.as_pair()
        if got != (host.params, host.results):
            raise WasmRejected(
                f"{path}: import {name!r} has signature {got}, Kumix offers {(host.params, host.results)}"
            )
        wanted.append(host)
    return wanted


def check_exports(path: str, spec: WasmModuleSpec, shape: ModuleShape) -> None:
    for item in shape.exports:
        if item.name.startswith(RESERVED_PREFIX):
            raise WasmRejected(f"{path}: export name {item.name[:80]!r} is reserved for Kumix")
        if item.signature is None or item.signature.numeric:
            continue
        for where, types in (("parameter", item.signature.params), ("result", item.signature.results)):
            for kind in types:
                if kind not in _PASSABLE:
                    raise WasmRejected(
                        f"{path}: export {item.name[:80]!r} has a {kind} {where}; Kumix passes only"
                        " i32, i64, f32 and f64 (declared in the manifest or not, every exported"
                        " function is checked)"
                    )
    present = {item.name for item in shape.exports}
    for name in spec.exports:
        if name not in present:
            raise WasmRejected(f"{path}: declared export {name!r} is missing from the module")
