"""wasm-demo: message statistics computed by a sandboxed, hash-pinned WASM module.

`text.stats` params `{"text": str}` -> `{"words", "chars", "lines", "bytes", "fnv1a64"}`:
word, code-point and line counts of the UTF-8 text and its FNV-1a 64-bit hash as 16 hex
digits (a cheap content key for de-duplicating or caching message renders; not a security
hash). The counting rules are in text_stats.wat, next to the committed module.
"""

from __future__ import annotations

import struct
from typing import Any

from kumix.core.errors import BadRequest, WasmTrap
from kumix.sdk import proc, wasm

RESULT = struct.Struct("<IIII Q")
"""words, chars, lines, padding, fnv1a64 — the record text_stats.wat writes."""

_module: wasm.WasmInstance | None = None


def _text_stats() -> wasm.WasmInstance:
    # Loaded on first use, not at import: a rejected module then answers each call with a
    # clear `wasm_rejected` instead of a worker that cannot start.
    global _module
    if _module is None:
        _module = wasm.instantiate("text_stats.wasm")
    return _module


@proc.handler("text.stats")
def text_stats(params: dict[str, Any]) -> dict[str, Any]:
    text = params.get("text")
    if not isinstance(text, str):
        raise BadRequest("text.stats needs params {\"text\": string}")
    # A lone surrogate (valid in JSON, not in UTF-8) is counted as one replacement character.
    data = text.encode("utf-8", "replace")
    record = _text_stats().call_bytes("text_stats", data)
    if len(record) != RESULT.size:
        raise WasmTrap(f"text_stats returned {len(record)} bytes, expected {RESULT.size}")
    words, chars, lines, _, digest = RESULT.unpack(record)
    return {"words": words, "chars": chars, "lines": lines, "bytes": len(data), "fnv1a64": f"{digest:016x}"}
