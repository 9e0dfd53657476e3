"""A module's shape -- signatures, imports, exports, memories, start function -- read from its bytes.

Why not ask wasmtime: its C API aborts the whole process when asked the kind of a value type
it cannot describe (`v128`, typed function references), so a hostile module's signatures
are read here, and `checks` refuses anything outside i32/i64/f32/f64 before wasmtime is
asked about a type. Sans-I/O: bytes in, a `ModuleShape` (or `WasmRejected`) out; no wasmtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumix.core.errors import WasmRejected

NUMERIC_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64"}
"""The value types Kumix passes between Python and WASM, by their binary encoding."""

_TYPE_NAMES = {
    **NUMERIC_TYPES,
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
    # Shorthands of the GC and exception proposals' abstract heap types, 0x69 (exn) to 0x74 (noexn).
    **{code: "ref" for code in range(0x69, 0x75) if code not in (0x6F, 0x70)},
}
"""Every one-byte value type. The two-byte typed references (0x63/0x64 and a heap type) belong
to the function-references proposal, which Kumix does not offer, and are refused outright."""
_NUMERIC_CODES = bytes(NUMERIC_TYPES)
_KNOWN_CODES = bytes(_TYPE_NAMES)
_TYPED_REFS = b"\x63\x64"
_FUNC_TYPE = 0x60

# Caps on what the reader walks, so that reading a hostile 16 MiB module takes a fraction of a
# second (measured: under 0.3 s with every cap reached at once, on the loaded 2-core reference
# machine). Each is far above what a chat extension's module uses; 100 000 functions already
# take seconds to compile (docs/wasm.md), and Kumix offers one host function to import.
MAX_TYPES = 10_000
MAX_VALUES_PER_SIGNATURE = 1_000
MAX_IMPORTS = 1_000
MAX_FUNCTIONS = 100_000
MAX_EXPORTS = 10_000
MAX_MEMORIES = 100
SECTION_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}
"""Known non-custom section ids in the order the binary format requires (tags between memory
and global, data count before code)."""

EXPORT_SECTION, START_SECTION, _MEMORY_SECTION = 7, 8, 5
_KINDS = ("func", "table", "memory", "global", "tag")


@dataclass(frozen=True)
class Signature:
    """A function type as the one-byte codes of its value types; names (`i32`, `v128` ...) on demand."""

    param_codes: bytes
    result_codes: bytes

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(_TYPE_NAMES[code] for code in self.param_codes)

    @property
    def results(self) -> tuple[str, ...]:
        return tuple(_TYPE_NAMES[code] for code in self.result_codes)

    @property
    def numeric(self) -> bool:
        """Whether every parameter and result is i32, i64, f32 or f64."""
        return not (self.param_codes + self.result_codes).translate(None, _NUMERIC_CODES)

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


def read_unsigned(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The u32 LEB128 at `pos` of an already read (so well-formed) module, and the offset after it."""
    reader = _Reader(data, pos, end)
    return reader.unsigned(), reader.pos


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

    def count(self, cap: int, what: str) -> int:
        """A vector length; each element takes at least one byte, so a length past the end is malformed."""
        value = self.unsigned()
        if value > cap:
            raise _Malformed(f"more than {cap} {what}")
        if value > self.end - self.pos:
            raise _Malformed("vector longer than its section")
        return value

    def codes(self) -> bytes:
        """A vector of value types, as one byte each (see `_TYPE_NAMES`)."""
        length = self.count(MAX_VALUES_PER_SIGNATURE, "values in a signature")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        if raw.translate(None, _KNOWN_CODES):
            bad = next(code for code in raw if code not in _TYPE_NAMES)
            if bad in _TYPED_REFS:
                raise _Malformed("a typed function reference (function references are not offered)")
            raise _Malformed(f"unknown value type 0x{bad:02x}")
        return raw

    def indices(self, cap: int, what: str) -> list[int]:
        """A vector of u32 indices; fast when every index fits one byte, as in most modules."""
        length = self.count(cap, what)
        raw = self.data[self.pos : self.pos + length]
        if not raw or max(raw) < 0x80:
            self.pos += length
            return list(raw)
        return [self.unsigned() for _ in range(length)]

    def name(self) -> str:
        length = self.count(100_000, "bytes in a name")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("name is not UTF-8") from None

    def value_type(self) -> str:
        code = self.byte()
        if code in _TYPED_REFS:
            raise _Malformed("a typed function reference (function references are not offered)")
        if code not in _TYPE_NAMES:
            raise _Malformed(f"unknown value type 0x{code:02x}")
        return _TYPE_NAMES[code]

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
        rank = SECTION_ORDER.get(section_id)
        if rank is None:
            raise _Malformed(f"unknown section id {section_id}")
        if rank <= last_rank:
            raise _Malformed(f"section {section_id} is out of order or repeated")
        last_rank = rank
        reader = _Reader(data, payload, end)
        if section_id == 1:
            for _ in range(reader.count(MAX_TYPES, "types")):
                if reader.byte() != _FUNC_TYPE:
                    # GC's struct, array, sub and rec types: the GC proposal is not offered.
                    raise _Malformed("a type that is not a function type (GC is not offered)")
                params = reader.codes()
                types.append(Signature(params, reader.codes()))
        elif section_id == 2:
            for _ in range(reader.count(MAX_IMPORTS, "imports")):
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
            defined = reader.indices(MAX_FUNCTIONS - len(functions), "functions")
            if defined and max(defined) >= len(types):
                raise _Malformed(f"type index {max(defined)} does not exist")
            functions.extend(types[index] for index in defined)
        elif section_id == _MEMORY_SECTION:
            count = reader.count(MAX_MEMORIES - memories, "memories")
            for _ in range(count):
                reader.limits()
            memories += count
        elif section_id == EXPORT_SECTION:
            for _ in range(reader.count(MAX_EXPORTS, "exports")):
                name = reader.name()
                kind = reader.byte()
                if kind >= len(_KINDS):
                    raise _Malformed(f"unknown export kind {kind}")
                raw_exports.append((name, _KINDS[kind], reader.unsigned()))
        elif section_id == START_SECTION:
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
