"""WASM modules inside proc workers: the one place Kumix uses wasmtime, and its public face.

Everything above this package sees Kumix types (`WasmLoader`, `WasmInstance`, `WasmLimits`)
and Kumix errors; `kumix.sdk.wasm` builds a loader from the worker's context, tests build one
with an explicit context. The rules and limits are documented in `docs/wasm.md`. One job per
module:

- `files`: the path and file rules (plain relative path, O_NOFOLLOW below the extension
  directory, bounded read);
- `binary`: a module's shape read from its bytes (never from wasmtime); `reserved`: the
  exports Kumix adds before compiling (every memory, the start function);
- `checks`: the import and export rules on that shape;
- `host`: the host-function allowlist and its implementations;
- `limits`: `WasmLimits` and the defaults; `clock`: the epoch ticker for wall-clock deadlines;
- `engine`: the wasmtime configuration (proposals on and off) and compiling;
- `loader`: the order of the loading rules and the compiled-module cache;
- `instance`: calls under the limits; `convention`: the bytes convention; `traps`: what a
  trap means for the caller.
"""

from kumix.extensions.wasm.engine import wat_to_wasm
from kumix.extensions.wasm.files import MAX_MODULE_BYTES
from kumix.extensions.wasm.host import HOST_FUNCTIONS, HostFunction
from kumix.extensions.wasm.instance import WasmInstance
from kumix.extensions.wasm.limits import MAX_TABLE_ELEMENTS, WasmLimits
from kumix.extensions.wasm.loader import WasmLoader

__all__ = [
    "HOST_FUNCTIONS",
    "MAX_MODULE_BYTES",
    "MAX_TABLE_ELEMENTS",
    "HostFunction",
    "WasmInstance",
    "WasmLimits",
    "WasmLoader",
    "wat_to_wasm",
]
