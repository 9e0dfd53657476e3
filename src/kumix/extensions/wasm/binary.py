"""A module's shape (signatures, imports, exports, memories, start) read from its bytes; reserved exports.

The shape is read here, not asked of wasmtime, and the reserved exports are added here before compiling.

Why not ask wasmtime: its C API aborts the whole process when asked the kind of a value type
it cannot describe (`v128`, typed function references), so a hostile module's signatures
are read here, and `checks` refuses anything outside i32/i64/f32/f64 before wasmtime is
asked about a type. Sans-I/O: bytes in, a `ModuleShape` (or `WasmRejected`) out; no wasmtime.

The reserved exports (`for_compiling`): every memory under `kumix:memory<N>` and the start
function under `kumix:start`, with the start section removed, so that Kumix runs the start
function as a call of its own -- under the same limits, with the memory visible when it
traps -- instead of inside instantiation, where no memory can be inspected. A manifest
cannot name them (export names there are identifiers), and a module exporting a name with
the `kumix:` prefix itself is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumix.core.errors import WasmRejected

RESERVED_PREFIX = "kumix:"
START_EXPORT = "kumix:start"
MEMORY_EXPORT_PREFIX = "kumix:memory"

NUMERIC_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64"}
"""The value types Kumix passes between Python and WASM, by their binary encoding."""

_OTHER_TYPES = {0x7B: "v128", 0x70: "funcref", 0x6F: "externref", 0x69: "exnref"}
# Shorthands of the GC and exception proposals' abstract heap types (noexn .. any).
_ABSTRACT_REFS = frozenset(range(0x69, 0x75))
_REF, _REF_NULL = 0x64, 0x63
_FUNC_TYPE = 0x60
_SECTION_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}
"""Known non-custom section ids in the order the binary format requires (tags between memory
and global, data count before code)."""

_EXPORT_SECTION, _START_SECTION, _MEMORY_SECTION = 7, 8, 5
_KINDS = ("func", "table", "memory", "global", "tag")


@dataclass(frozen=True)
class Signature:
    """A function type as value type names (`i32`, `v128`, `funcref`, `ref` ...)."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def as_pair(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.params, self.results


@dataclass(frozen=True)
class Entry:
    """One import (`module` set) or export; `signature` only for functions."""

    name: str
    kind: str
    signature: Signature | None
    module: str = ""


@dataclass(frozen=True)
class ModuleShape:
    imports: tuple[Entry, ...]
    exports: tuple[Entry, ...]
    memories: int
    """Imported and defined together, in index order."""
    start: int | None
    """The start function's index, if the module has one."""
    sections: tuple[tuple[int, int, int, int], ...]
    """(id, header offset, payload offset, end offset) of every section, in file order."""


class _Malformed(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed("unexpected end")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def unsigned(self, bits: int = 32) -> int:
        result = shift = 0
        for _ in range((bits + 6) // 7):
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if result >> bits:
                    raise _Malformed("integer too large")
                return result
        raise _Malformed("integer representation too long")

    def signed33(self) -> int:
        result = shift = 0
        for _ in range(5):
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result - (1 << shift) if byte & 0x40 else result
        raise _Malformed("integer representation too long")

    def count(self) -> int:
        """A vector length; each element takes at least one byte, so a length past the end is malformed."""
        value = self.unsigned()
        if value > self.end - self.pos:
            raise _Malformed("vector longer than its section")
        return value

    def name(self) -> str:
        length = self.count()
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("name is not UTF-8") from None

    def value_type(self) -> str:
        code = self.byte()
        if code in NUMERIC_TYPES:
            return NUMERIC_TYPES[code]
        if code in _OTHER_TYPES:
            return _OTHER_TYPES[code]
        if code in (_REF, _REF_NULL):
            self.signed33()  # the heap type: a type index or an abstract heap type
            return "ref"
        if code in _ABSTRACT_REFS:
            return "ref"
        raise _Malformed(f"unknown value type 0x{code:02x}")

    def limits(self) -> None:
        flags = self.byte()
        if flags > 0x0F:
            raise _Malformed("unknown limits flags")
        self.unsigned(64)
        if flags & 0x01:
            self.unsigned(64)
        if flags & 0x08:  # custom page size (log2)
            self.unsigned()

    def done(self) -> None:
        if self.pos != self.end:
            raise _Malformed("section has trailing bytes")


def read_shape(data: bytes, path: str) -> ModuleShape:
    """The shape of the binary module `data`; `WasmRejected` if it is not one."""
    try:
        return _read(data)
    except _Malformed as exc:
        raise WasmRejected(f"{path}: not a valid WASM module: {exc}") from None


def _read(data: bytes) -> ModuleShape:
    if data[:8] != b"\0asm\x01\0\0\0":
        raise _Malformed("not a version 1 core module")
    types: list[Signature] = []
    functions: list[Signature] = []
    # Signatures in function index order: imported functions first, then defined ones.
    imports: list[Entry] = []
    raw_exports: list[tuple[str, str, int]] = []
    memories = 0
    start: int | None = None
    sections: list[tuple[int, int, int, int]] = []
    last_rank = 0
    outer = _Reader(data, 8, len(data))
    while outer.pos < outer.end:
        header = outer.pos
        section_id = outer.byte()
        size = outer.unsigned()
        payload = outer.pos
        end = payload + size
        if end > len(data):
            raise _Malformed("section runs past the end of the module")
        outer.pos = end
        sections.append((section_id, header, payload, end))
        if section_id == 0:
            continue
        rank = _SECTION_ORDER.get(section_id)
        if rank is None:
            raise _Malformed(f"unknown section id {section_id}")
        if rank <= last_rank:
            raise _Malformed(f"section {section_id} is out of order or repeated")
        last_rank = rank
        reader = _Reader(data, payload, end)
        if section_id == 1:
            for _ in range(reader.count()):
                if reader.byte() != _FUNC_TYPE:
                    # GC's struct, array, sub and rec types: the GC proposal is not offered.
                    raise _Malformed("a type that is not a function type (GC is not offered)")
                params = tuple(reader.value_type() for _ in range(reader.count()))
                results = tuple(reader.value_type() for _ in range(reader.count()))
                types.append(Signature(params, results))
        elif section_id == 2:
            for _ in range(reader.count()):
                module = reader.name()
                name = reader.name()
                kind = reader.byte()
                signature = None
                if kind == 0x00:
                    signature = _type_at(types, reader.unsigned())
                    functions.append(signature)
                elif kind == 0x01:
                    reader.value_type()
                    reader.limits()
                elif kind == 0x02:
                    reader.limits()
                    memories += 1
                elif kind == 0x03:
                    reader.value_type()
                    reader.byte()
                elif kind == 0x04:
                    reader.byte()
                    reader.unsigned()
                else:
                    raise _Malformed(f"unknown import kind {kind}")
                imports.append(Entry(name=name, kind=_KINDS[kind], signature=signature, module=module))
        elif section_id == 3:
            functions.extend(_type_at(types, reader.unsigned()) for _ in range(reader.count()))
        elif section_id == _MEMORY_SECTION:
            count = reader.count()
            for _ in range(count):
                reader.limits()
            memories += count
        elif section_id == _EXPORT_SECTION:
            for _ in range(reader.count()):
                name = reader.name()
                kind = reader.byte()
                if kind >= len(_KINDS):
                    raise _Malformed(f"unknown export kind {kind}")
                raw_exports.append((name, _KINDS[kind], reader.unsigned()))
        elif section_id == _START_SECTION:
            start = reader.unsigned()
        else:
            continue  # tables, globals, code, data ...: wasmtime validates them; Kumix needs nothing there
        reader.done()
    exports = []
    for name, kind_name, index in raw_exports:
        signature = None
        if kind_name == "func":
            if index >= len(functions):
                raise _Malformed(f"export {name!r} names function {index}, which does not exist")
            signature = functions[index]
        exports.append(Entry(name=name, kind=kind_name, signature=signature))
    if start is not None and start >= len(functions):
        raise _Malformed(f"start function {start} does not exist")
    return ModuleShape(tuple(imports), tuple(exports), memories, start, tuple(sections))


def _type_at(types: list[Signature], index: int) -> Signature:
    if index >= len(types):
        raise _Malformed(f"type index {index} does not exist")
    return types[index]


# --- the bytes handed to the compiler ---------------------------------------------------------


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
    """`data` with the reserved exports added and the start section removed (module docstring)."""
    extra = [(f"{MEMORY_EXPORT_PREFIX}{index}", 0x02, index) for index in range(shape.memories)]
    if shape.start is not None:
        extra.append((START_EXPORT, 0x00, shape.start))
    if not extra:
        return data
    entries = b"".join(_name(name) + bytes([kind]) + _unsigned(index) for name, kind, index in extra)
    old = next((s for s in shape.sections if s[0] == _EXPORT_SECTION), None)
    if old is None:
        payload = _unsigned(len(extra)) + entries
    else:
        reader = _Reader(data, old[2], old[3])
        count = reader.unsigned()
        payload = _unsigned(count + len(extra)) + data[reader.pos : old[3]] + entries
    export_section = bytes([_EXPORT_SECTION]) + _unsigned(len(payload)) + payload
    out = [data[:8]]
    placed = False
    for section_id, header, _payload, end in shape.sections:
        if section_id == _START_SECTION:
            continue
        if section_id == _EXPORT_SECTION:
            out.append(export_section)
            placed = True
            continue
        if not placed and section_id and _SECTION_ORDER[section_id] > _SECTION_ORDER[_EXPORT_SECTION]:
            out.append(export_section)
            placed = True
        out.append(data[header:end])
    if not placed:
        out.append(export_section)
    return b"".join(out)
