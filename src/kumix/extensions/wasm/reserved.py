"""The reserved exports Kumix adds to a module before compiling it: every memory, and the start function.

Every memory is exported as `kumix:memory<N>`, and the start function as `kumix:start` with
the start section removed, so that Kumix runs the start function as a call of its own --
under the same limits, with the memory visible when it traps -- instead of inside
instantiation, where no memory can be inspected. A manifest cannot name them (export names
there are identifiers), and `checks` refuses a module exporting a `kumix:` name itself. No
wasmtime here: pinned bytes and their shape in, the bytes to compile out.
"""

from __future__ import annotations

from kumix.extensions.wasm.binary import EXPORT_SECTION, SECTION_ORDER, START_SECTION, ModuleShape, read_unsigned

RESERVED_PREFIX = "kumix:"
START_EXPORT = "kumix:start"
MEMORY_EXPORT_PREFIX = "kumix:memory"

_FUNC_EXPORT, _MEMORY_EXPORT = 0x00, 0x02


def _unsigned(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _unsigned(len(raw)) + raw


def for_compiling(data: bytes, shape: ModuleShape) -> bytes:
    """`data` with the reserved exports added and the start section removed."""
    extra = [(f"{MEMORY_EXPORT_PREFIX}{index}", _MEMORY_EXPORT, index) for index in range(shape.memories)]
    if shape.start is not None:
        extra.append((START_EXPORT, _FUNC_EXPORT, shape.start))
    if not extra:
        return data
    entries = b"".join(_name(name) + bytes([kind]) + _unsigned(index) for name, kind, index in extra)
    old = next((s for s in shape.sections if s[0] == EXPORT_SECTION), None)
    if old is None:
        payload = _unsigned(len(extra)) + entries
    else:
        count, after = read_unsigned(data, old[2], old[3])
        payload = _unsigned(count + len(extra)) + data[after : old[3]] + entries
    export_section = bytes([EXPORT_SECTION]) + _unsigned(len(payload)) + payload
    out = [data[:8]]
    placed = False
    for section_id, header, _payload, end in shape.sections:
        if section_id == START_SECTION:
            continue
        if section_id == EXPORT_SECTION:
            out.append(export_section)
            placed = True
            continue
        # Without an export section of its own, the new one goes where the format wants it:
        # before the first section that must follow exports (custom sections may sit anywhere).
        if not placed and section_id and SECTION_ORDER[section_id] > SECTION_ORDER[EXPORT_SECTION]:
            out.append(export_section)
            placed = True
        out.append(data[header:end])
    if not placed:
        out.append(export_section)
    return b"".join(out)
