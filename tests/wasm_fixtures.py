"""Hostile and friendly WASM modules (WAT source, compiled at test time) and extension builders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumix.extensions.manifest import Manifest, load_manifest
from kumix.extensions.wasm import WasmLimits, WasmLoader, wat_to_wasm

MiB = 1024 * 1024

# A friendly module: numeric export, a counter that survives between successful calls, and
# the bytes convention (memory, alloc at a fixed buffer, echo returning its input).
FRIENDLY = """
(module
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "bump") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "echo") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32)) (i64.extend_i32_u (local.get 1))))
  (func (export "boom") unreachable)
)
"""
FRIENDLY_EXPORTS = ("memory", "add", "bump", "alloc", "echo", "boom")

INFINITE_LOOP = """
(module
  (func (export "spin") (loop (br 0)))
  (func (export "ok") (result i32) (i32.const 7))
)
"""

START_LOOP = """
(module
  (func $forever (loop (br 0)))
  (start $forever)
  (func (export "ok") (result i32) (i32.const 7))
)
"""

DEEP_RECURSION = """
(module
  (func $down (export "down") (param i32) (result i32)
    (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "ok") (result i32) (i32.const 7))
)
"""

# Grows until refused, then aborts the way a compiled allocator does on out-of-memory.
MEMORY_BOMB = """
(module
  (memory (export "memory") 1)
  (func (export "bomb")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)
  (func (export "greedy") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (memory.size))
  (func (export "ok") (result i32) (i32.const 7))
)
"""

HUGE_STATIC_MEMORY = """
(module (memory (export "memory") 16384) (func (export "ok") (result i32) (i32.const 7)))
"""

# Claims results far larger than allowed, or outside its memory.
HUGE_RESULT = """
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "alloc_oob") (param i32) (result i32) (i32.const 65530))
  (func (export "huge") (param i32 i32) (result i64) (i64.const 0xFFFFFFFF))
  (func (export "outside") (param i32 i32) (result i64) (i64.const 0x0000FFF000001000))
  (func (export "ok") (param i32 i32) (result i64) (i64.const 3))
)
"""

WASI_IMPORT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (func (export "ok") (result i32) (i32.const 7))
)
"""

ENV_IMPORT = """
(module
  (import "env" "abort" (func))
  (func (export "ok") (result i32) (i32.const 7))
)
"""

MEMORY_IMPORT = """
(module (import "kumix" "memory" (memory 1)) (func (export "ok") (result i32) (i32.const 7)))
"""

LOGGER = """
(module
  (import "kumix" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello from wasm")
  (func (export "hello") (call $log (i32.const 0) (i32.const 15)))
  (func (export "chatty") (local $i i32)
    (loop $again
      (call $log (i32.const 0) (i32.const 4096))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100)))))
  (func (export "log_oob") (call $log (i32.const 65000) (i32.const 4096)))
)
"""

LOGGER_WRONG_SIGNATURE = """
(module (import "kumix" "log" (func (param i64))) (func (export "ok") (result i32) (i32.const 7)))
"""


@dataclass
class Module:
    """One module to place in an extension: its WAT (or raw bytes) and manifest entry."""

    path: str
    source: str | bytes
    exports: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    pin: str | None = None
    """Override the pinned sha256 (default: the hash of the bytes written)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def binary(self) -> bytes:
        return self.source if isinstance(self.source, bytes) else wat_to_wasm(self.source)


def make_wasm_extension(root: Path, modules: list[Module], *, ext_id: str = "wasm-test",
                        write_files: bool = True) -> tuple[Path, Manifest]:
    """An extension directory with the modules written and pinned in a real manifest."""
    ext_dir = root / ext_id
    ext_dir.mkdir(parents=True)
    entries = []
    for module in modules:
        data = module.binary()
        if write_files:
            target = ext_dir / module.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        entries.append({
            "path": module.path,
            "sha256": module.pin or hashlib.sha256(data).hexdigest(),
            "exports": list(module.exports),
            "imports": list(module.imports),
        })
    manifest = {
        "id": ext_id,
        "name": "WASM test",
        "version": "1.0.0",
        "kind": "proc",
        "capabilities": ["demo.echo"],
        "entry": "worker.py",
        "methods": {"demo.echo": "demo.echo"},
        "wasm": entries,
    }
    (ext_dir / "manifest.json").write_text(json.dumps(manifest))
    (ext_dir / "worker.py").write_text("# worker\n")
    return ext_dir, load_manifest(ext_dir)


def loader_for(ext_dir: Path, manifest: Manifest, *, memory: int = 16 * MiB, fuel: int | None = None,
               deadline: float | None = None, logs: list[str] | None = None,
               max_output: int | None = None, max_input: int | None = None) -> WasmLoader:
    limits = WasmLimits(max_memory_bytes=memory).lowered(
        fuel_per_call=fuel, max_output_bytes=max_output, max_input_bytes=max_input)
    sink = logs.append if logs is not None else (lambda _text: None)
    return WasmLoader(ext_dir, manifest.wasm, limits, deadline=lambda: deadline, log=sink)
