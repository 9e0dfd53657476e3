"""The WASM shape reader (`kumix.extensions.wasm.binary`) against hostile bytes, and the reserved exports.

The reader stands between a hostile module and wasmtime's C API, which aborts the process on
value types it cannot describe; so it must answer every input with a shape or
`WasmRejected`, never another exception, and its view must agree with wasmtime's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumix.core.errors import WasmRejected
from kumix.extensions.manifest import WasmModuleSpec
from kumix.extensions.wasm import wat_to_wasm
from kumix.extensions.wasm.binary import read_shape
from kumix.extensions.wasm.checks import check_exports, check_imports
from kumix.extensions.wasm.engine import compile_module, engine
from kumix.extensions.wasm.reserved import START_EXPORT, for_compiling
from tests.wasm_fixtures import FRIENDLY, LOGGER, Module, loader_for, make_wasm_extension

MIXED = """
(module
  (import "kumix" "log" (func $log (param i32 i32)))
  (import "env" "table" (table 1 funcref))
  (import "env" "g" (global i64))
  (memory 1 2)
  (func $start)
  (start $start)
  (func (export "f") (param f32 i64) (result f64 i32) (f64.const 1) (i32.const 2))
  (func (export "v") (param v128))
  (export "log" (func $log))
  (export "mem" (memory 0)))
"""


def spec(exports: tuple[str, ...] = (), imports: tuple[str, ...] = ()) -> WasmModuleSpec:
    return WasmModuleSpec(path="m.wasm", sha256="0" * 64, exports=exports, imports=imports)


def test_shape_names_every_signature_including_types_wasmtime_cannot_describe() -> None:
    shape = read_shape(wat_to_wasm(MIXED), "m.wasm")
    assert [(e.module, e.name, e.kind) for e in shape.imports] == [
        ("kumix", "log", "func"), ("env", "table", "table"), ("env", "g", "global")]
    signatures = {e.name: e.signature.as_pair() if e.signature else None for e in shape.exports}
    assert signatures == {"f": (("f32", "i64"), ("f64", "i32")), "v": (("v128",), ()),
                          "log": (("i32", "i32"), ()), "mem": None}
    assert (shape.memories, shape.start) == (1, 1)  # function 0 is the import


def test_the_export_check_refuses_a_v128_by_name_without_wasmtime() -> None:
    with pytest.raises(WasmRejected, match="'v' has a v128 parameter"):
        check_exports("m.wasm", spec(), read_shape(wat_to_wasm(MIXED), "m.wasm"))


def test_a_v128_host_import_is_refused_by_its_signature() -> None:
    source = '(module (import "kumix" "log" (func (param v128 i32))))'
    with pytest.raises(WasmRejected, match="signature"):
        check_imports("m.wasm", spec(imports=("kumix.log",)), read_shape(wat_to_wasm(source), "m.wasm"))


def test_a_module_cannot_claim_a_reserved_export_name(tmp_path: Path) -> None:
    source = f'(module (func (export "{START_EXPORT}")) (func (export "ok") (result i32) (i32.const 7)))'
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", source, ("ok",))])
    with pytest.raises(WasmRejected, match="reserved for Kumix"):
        loader_for(ext_dir, manifest).load("m.wasm")


@pytest.mark.parametrize(
    "source",
    [FRIENDLY, LOGGER, MIXED.replace('(func (export "v") (param v128))', ""),
     '(module (memory 1) (func $s) (start $s))',  # a start section and no export section
     '(module (func $s) (start $s) (@custom "x" "y") (func (export "a")))'],
)
def test_reserved_exports_compile_and_agree_with_wasmtime(source: str) -> None:
    data = wat_to_wasm(source)
    shape = read_shape(data, "m.wasm")
    compiled = compile_module(engine(16 * 1024 * 1024, 512 * 1024), data, shape, "m.wasm")
    names = [item.name for item in compiled.exports]
    own = [entry.name for entry in shape.exports]
    reserved = [f"kumix:memory{index}" for index in range(shape.memories)]
    reserved += [START_EXPORT] if shape.start is not None else []
    assert names == own + reserved
    again = read_shape(for_compiling(data, shape), "m.wasm")
    assert again.start is None
    assert [e.signature for e in again.exports][: len(own)] == [e.signature for e in shape.exports]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f", "past the end"),
        (b"\0asm\x01\0\0\0\x01\x02\x05\x60", "longer than its section"),
        (b"\0asm\x01\0\0\0\x01\x06\x80\x80\x80\x80\x80\x00", "too long"),
        (b"\0asm\x01\0\0\0\x01\x04\x01\x5f\x00\x00", "not a function type"),
        (b"\0asm\x01\0\0\0\x01\x04\x01\x60\x01\x42", "unknown value type"),
        (b"\0asm\x01\0\0\0\x01\x06\x01\x60\x01\x63\x70\x00", "typed function reference"),
        (b"\0asm\x01\0\0\0\x07\x05\x92\x4e\x00\x00\x00", "more than 10000 exports"),
        (b"\0asm\x01\0\0\0\x03\x02\x01\x00", "type index 0 does not exist"),
        (b"\0asm\x01\0\0\0\x08\x01\x00", "start function 0 does not exist"),
        (b"\0asm\x01\0\0\0\x01\x01\x00\x01\x01\x00", "out of order or repeated"),
        (b"\0asm\x01\0\0\0\x0e\x00", "unknown section id 14"),
        (b"\0asm\x0d\0\x01\0", "not a version 1 core module"),  # a component
    ],
)
def test_malformed_structure_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WasmRejected, match="not a valid WASM module") as info:
        read_shape(data, "m.wasm")
    assert reason in info.value.message


def test_a_module_past_a_reader_cap_is_rejected_naming_the_cap() -> None:
    # 100 001 functions: more than the reader walks (and than could compile within a call).
    count = 100_001
    types = b"\x01\x04\x01\x60\x00\x00"
    functions = b"\x03" + _leb(len(_leb(count)) + count) + _leb(count) + b"\x00" * count
    with pytest.raises(WasmRejected, match="more than 100000 functions"):
        read_shape(b"\0asm\x01\0\0\0" + types + functions, "m.wasm")


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


VALID = [wat_to_wasm(source) for source in (FRIENDLY, LOGGER, MIXED)]
ENGINE = engine(16 * 1024 * 1024, 512 * 1024)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_corrupted_modules_get_the_same_verdict_and_exports_from_the_reader_as_from_wasmtime(
    module: bytes, data: st.DataObject
) -> None:
    position = data.draw(st.integers(8, len(module) - 1))
    mutated = bytearray(module)
    mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(module)))
    for candidate in (bytes(mutated), module[:cut]):
        try:
            shape = read_shape(candidate, "m.wasm")
            check_exports("m.wasm", spec(), shape)
        except WasmRejected:
            # Never more lenient than wasmtime: what the reader refuses, wasmtime refuses too
            # (validation only; no type is described).
            assert not wasmtime_accepts(candidate)
            continue
        try:
            compiled = compile_module(ENGINE, candidate, shape, "m.wasm")
        except WasmRejected:
            continue
        own = {e.name: e.signature for e in shape.exports}
        seen = {item.name: item.type for item in compiled.exports if not item.name.startswith("kumix:")}
        assert set(seen) == set(own)
        for name, signature in own.items():
            if signature is not None:  # numeric only (checked above), so safe to describe
                assert tuple(map(str, seen[name].params)) == signature.params  # type: ignore[union-attr]
                assert tuple(map(str, seen[name].results)) == signature.results  # type: ignore[union-attr]


def wasmtime_accepts(data: bytes) -> bool:
    import wasmtime  # the test compares with wasmtime itself; Kumix code reaches it only via the package

    try:
        wasmtime.Module.validate(ENGINE, data)
    except wasmtime.WasmtimeError:
        return False
    return True
