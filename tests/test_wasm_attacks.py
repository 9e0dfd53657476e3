"""Hostile modules and files against the WASM loader and its limits.

Each test names the attack. Some pin down a protection that already held (they fail if it
breaks); the others failed before the fix they came with.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kumix.core.errors import BadRequest, CallTimeout, ResourceLimit, WasmRejected, WasmTrap
from kumix.extensions.wasm import MAX_TABLE_ELEMENTS, WasmInstance, clock, engine, loader, wat_to_wasm
from tests.wasm_fixtures import FRIENDLY, FRIENDLY_EXPORTS, MiB, Module, loader_for, make_wasm_extension

SPIN = '(module (func (export "spin") (loop (br 0))) (func (export "ok") (result i32) (i32.const 7)))'


def load(tmp_path: Path, source: str, exports: tuple[str, ...], **kwargs: Any) -> WasmInstance:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", source, exports)])
    return loader_for(ext_dir, manifest, **kwargs).load("m.wasm")


# --- wall clock -------------------------------------------------------------------------


def test_deadline_holds_in_wall_time_when_the_ticker_oversleeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every sleep oversleeps a little (6% measured here with a module looping over a host
    # call; more on a loaded machine). Counting sleeps as ticks stretched the deadline by that
    # factor: a 30 s call ran ~1.8 s late, past the reply margin, and the host killed the
    # worker. Simulate a machine where each sleep takes three times as long.
    real_sleep = time.sleep
    slow_time = SimpleNamespace(monotonic=time.monotonic, sleep=lambda seconds: real_sleep(3 * seconds))
    instance = load(tmp_path, SPIN, ("spin", "ok"), deadline=None)
    monkeypatch.setattr(clock, "time", slow_time)
    deadline = time.monotonic() + 1.0
    instance._deadline = lambda: deadline
    with pytest.raises(CallTimeout):
        instance.call("spin")
    late = time.monotonic() - deadline
    assert late < 0.3, f"the WASM call stopped {late:.2f} s after its deadline"


def test_one_epoch_thread_serves_every_call(tmp_path: Path) -> None:
    instance = load(tmp_path, SPIN, ("spin", "ok"))
    instance.call("ok")
    before = threading.active_count()
    for _ in range(30):
        assert instance.call("ok") == 7
    for _ in range(3):
        with pytest.raises(CallTimeout):
            deadline = time.monotonic() + 0.05
            instance._deadline = lambda: deadline  # noqa: B023 - used before the next iteration
            instance.call("spin")
    assert threading.active_count() == before


# --- compilation ------------------------------------------------------------------------

MANY_FUNCTIONS = "(module " + '(func (result i32) (i32.add (i32.const 1) (i32.const 2)))\n' * 25_000 + ")"


def test_slow_compilation_answers_timeout_at_the_deadline(tmp_path: Path) -> None:
    # 25 000 trivial functions are 225 KB, far under the file limit, and take seconds to
    # compile. Compilation cannot be interrupted; the call must still answer by its deadline.
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", MANY_FUNCTIONS)])
    loader = loader_for(ext_dir, manifest, deadline=None)
    deadline = time.monotonic() + 0.2
    loader._deadline = lambda: deadline
    with pytest.raises(CallTimeout) as info:
        loader.load("m.wasm")
    late = time.monotonic() - deadline
    assert late < 0.2, f"load answered {late:.2f} s after its deadline"
    assert info.value.details.get("limit") == "compile"
    # A later load waits for the compilation already under way and gets the module.
    patient = time.monotonic() + 60
    loader._deadline = lambda: patient
    assert loader.load("m.wasm").instances_created == 1


def test_compiled_bytes_are_the_hashed_bytes_even_if_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    evil = wat_to_wasm(FRIENDLY.replace("(i32.add (local.get 0) (local.get 1))", "(i32.const 666)"))
    real_read = loader.read_module_file
    compiled: list[bytes] = []
    real_compile = loader.compile_module

    def read_then_swap(directory: Path, path: str) -> bytes:
        data = real_read(directory, path)
        (directory / path).write_bytes(evil)  # swapped between reading and compiling
        return data

    def recording_compile(engine: Any, data: bytes, *rest: Any) -> Any:
        compiled.append(data)
        return real_compile(engine, data, *rest)

    monkeypatch.setattr(loader, "read_module_file", read_then_swap)
    monkeypatch.setattr(loader, "compile_module", recording_compile)
    instance = loader_for(ext_dir, manifest).load("m.wasm")
    assert instance.call("add", 2, 3) == 5
    assert [hashlib.sha256(data).hexdigest() for data in compiled] == [manifest.wasm[0].sha256]


# --- proposals outside the memory cap ----------------------------------------------------

GC_HOARD = """
(module
  (type $bytes (array (mut i8)))
  (type $many (array (mut (ref null $bytes))))
  (global $keep (mut (ref null $many)) (ref.null $many))
  (func (export "hoard") (param $n i32) (result i32) (local $i i32)
    (global.set $keep (array.new_default $many (local.get $n)))
    (loop $more
      (array.set $many (global.get $keep) (local.get $i) (array.new $bytes (i32.const 7) (i32.const 60000)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i)))
"""

EXCEPTION_HOARD = """
(module
  (tag $t (param i64))
  (table $keep 100000 exnref)
  (func (export "hoard") (local $e exnref)
    (block $h (result exnref)
      (try_table (catch_all_ref $h) (throw $t (i64.const 1)))
      unreachable)
    (local.set $e)
    (table.set $keep (i32.const 0) (local.get $e))))
"""


@pytest.mark.parametrize("source", [GC_HOARD, EXCEPTION_HOARD], ids=["gc", "exceptions"])
def test_gc_heap_proposals_are_refused(tmp_path: Path, source: str) -> None:
    # GC objects and exception payloads live on a GC heap with a limit of its own: with the
    # linear memory at its cap, GC arrays added as much again (measured: 64 MiB cap, +56 MiB).
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", source, ("hoard",))])
    with pytest.raises(WasmRejected, match="not a valid WASM module"):
        loader_for(ext_dir, manifest, memory=16 * MiB).load("m.wasm")


# --- store limits and instantiation ---------------------------------------------------------


def test_two_memories_cannot_instantiate(tmp_path: Path) -> None:
    source = '(module (memory 1) (memory (export "memory") 1) (func (export "ok") (result i32) (i32.const 7)))'
    with pytest.raises(ResourceLimit) as info:
        load(tmp_path, source, ("ok",))
    assert info.value.details.get("limit") == "instantiate"


def test_table_grow_bomb_stops_at_the_element_limit(tmp_path: Path) -> None:
    source = """
    (module
      (table $t 1 funcref)
      (func (export "grow") (result i32)
        (loop $more (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 4096)) (i32.const -1))))
        (table.size $t)))
    """
    assert load(tmp_path, source, ("grow",)).call("grow") <= MAX_TABLE_ELEMENTS


def test_start_function_trap_is_a_typed_error(tmp_path: Path) -> None:
    source = '(module (func $s unreachable) (start $s) (func (export "ok") (result i32) (i32.const 7)))'
    with pytest.raises(WasmTrap) as info:
        load(tmp_path, source, ("ok",))
    assert info.value.details.get("trap") == "unreachable"


def test_data_segment_outside_memory_fails_at_instantiation(tmp_path: Path) -> None:
    source = '(module (memory 1) (data (i32.const 65530) "0123456789") (func (export "ok") (result i32) (i32.const 7)))'
    with pytest.raises((WasmTrap, ResourceLimit)):
        load(tmp_path, source, ("ok",))


# --- the bytes convention and host functions -------------------------------------------------

CONVENTION = """
(module
  (import "kumix" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "alloc_high") (param i32) (result i32) (i32.const -16))
  (func (export "wraps") (param i32 i32) (result i64) (i64.const 0xFFFFFFFF00000010))
  (func (export "log_wraps") (param i32 i32) (result i64)
    (call $log (i32.const 65535) (i32.const -65535)) (i64.const 0))
  (func (export "log_huge") (param i32 i32) (result i64)
    (call $log (i32.const 0) (i32.const -1)) (i64.const 0))
  (func (export "ok") (result i32) (i32.const 7))
)
"""
CONVENTION_EXPORTS = ("memory", "alloc", "alloc_high", "wraps", "log_wraps", "log_huge", "ok")


@pytest.fixture
def convention(tmp_path: Path) -> WasmInstance:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [Module("m.wasm", CONVENTION, CONVENTION_EXPORTS, imports=("kumix.log",))]
    )
    return loader_for(ext_dir, manifest).load("m.wasm")


@pytest.mark.parametrize("export", ["wraps", "log_wraps", "log_huge"])
def test_pointers_wrapping_past_the_end_of_memory_are_traps(convention: WasmInstance, export: str) -> None:
    with pytest.raises(WasmTrap, match="outside memory"):
        convention.call_bytes(export, b"x")
    assert convention.call("ok") == 7


def test_alloc_near_the_top_of_the_address_space_is_a_trap(tmp_path: Path) -> None:
    source = """
    (module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const -16))
      (func (export "echo") (param i32 i32) (result i64) (i64.const 0)))
    """
    instance = load(tmp_path, source, ("memory", "alloc", "echo"))
    with pytest.raises(WasmTrap, match="outside memory"):
        instance.call_bytes("echo", b"0123456789abcdef0123")


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["m.wasm/", "./m.wasm", "sub//m.wasm", "sub/./m.wasm", "M.WASM", "m.wasm\n", "m.wasm ",
     "\uff4d.wasm", "m\u0301.wasm", "sub\\m.wasm", "sub", ""],
)
def test_path_tricks_are_rejected(tmp_path: Path, path: str) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS),
                                                      Module("sub/m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    with pytest.raises(WasmRejected):
        loader_for(ext_dir, manifest).load(path)


def test_directory_listed_as_a_module_is_not_a_regular_file(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    (ext_dir / "m.wasm").unlink()
    (ext_dir / "m.wasm").mkdir()
    with pytest.raises(WasmRejected, match="not a regular file"):
        loader_for(ext_dir, manifest).load("m.wasm")


def test_hard_link_to_other_bytes_is_refused_by_the_pin(tmp_path: Path) -> None:
    outside = tmp_path / "outside.wasm"
    outside.write_bytes(wat_to_wasm(SPIN))
    ext_dir, manifest = make_wasm_extension(tmp_path / "ext", [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    (ext_dir / "m.wasm").unlink()
    (ext_dir / "m.wasm").hardlink_to(outside)
    with pytest.raises(WasmRejected, match="sha256 mismatch"):
        loader_for(ext_dir, manifest).load("m.wasm")


# --- numeric arguments ------------------------------------------------------------------------

NUMERIC = """
(module
  (func (export "id32") (param i32) (result i32) (local.get 0))
  (func (export "id64") (param i64) (result i64) (local.get 0))
  (func (export "idf") (param f64) (result f64) (local.get 0))
  (func (export "ok") (result i32) (i32.const 7)))
"""


@pytest.mark.parametrize(
    ("export", "value"),
    [("id32", 2**32), ("id32", -(2**31) - 1), ("id64", 2**64 + 1), ("idf", 10**400), ("idf", True)],
)
def test_numbers_that_do_not_fit_are_a_bad_request_not_a_silent_wrap(tmp_path: Path, export: str, value: int) -> None:
    instance = load(tmp_path, NUMERIC, ("id32", "id64", "idf", "ok"))
    with pytest.raises(BadRequest):
        instance.call(export, value)
    assert instance.instances_created == 1, "a refused argument must not cost the instance"


def test_integers_are_accepted_for_float_parameters(tmp_path: Path) -> None:
    assert load(tmp_path, NUMERIC, ("idf",)).call("idf", 3) == 3.0


# --- memory at the cap where Kumix could not see it -------------------------------------------

START_GROW_BOMB = """
(module
  (memory {export} 1)
  (func $grow
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  (start $grow)
  (func (export "ok") (result i32) (i32.const 7)))
"""


@pytest.mark.parametrize("export", ['(export "memory")', ""], ids=["exported", "unexported"])
def test_start_function_that_fills_memory_then_traps_is_a_memory_limit(
    tmp_path: Path, export: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start function runs inside instantiation, before any export is visible: the trap at
    # the cap was reported as the module's own `wasm_trap` instead of `resource_limit`.
    source = START_GROW_BOMB.format(export=export)
    with pytest.raises(ResourceLimit) as info:
        load(tmp_path / "on", source, ("ok",), memory=4 * MiB)
    assert info.value.details["limit"] == "memory"
    # Switched off (the pinned bytes compiled as they are, start section and all): the
    # misreport this protection exists for.
    monkeypatch.setattr(engine, "for_compiling", lambda data, shape: data)
    with pytest.raises(WasmTrap) as trapped:
        load(tmp_path / "off", source, ("ok",), memory=4 * MiB)
    assert trapped.value.details["trap"] == "unreachable"


def test_unexported_memory_at_the_cap_is_a_memory_limit(tmp_path: Path) -> None:
    source = """
    (module
      (memory 1)
      (func (export "bomb")
        (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable)
      (func (export "ok") (result i32) (i32.const 7)))
    """
    instance = load(tmp_path, source, ("bomb", "ok"), memory=4 * MiB)
    with pytest.raises(ResourceLimit) as info:
        instance.call("bomb")
    assert info.value.details["limit"] == "memory"
    assert instance.call("ok") == 7


def test_start_function_state_is_kept_for_the_first_call(tmp_path: Path) -> None:
    # The start function still runs exactly once per instance, before any call.
    source = """
    (module
      (global $n (mut i32) (i32.const 0))
      (func $init (global.set $n (i32.add (global.get $n) (i32.const 41))))
      (start $init)
      (func (export "n") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n)))
    """
    instance = load(tmp_path, source, ("n",))
    assert instance.call("n") == 42
    assert instance.call("n") == 43
