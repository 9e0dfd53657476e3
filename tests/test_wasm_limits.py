"""Limits every WASM call runs under: deadline, fuel, stack, memory, input and output size.

Each hostile call ends in a typed Kumix error, the instance is discarded (`instances_created`
grows), and the very next call on the same handle is served by a fresh instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kumix.core.errors import (
    CallTimeout,
    InputTooLarge,
    KumixError,
    OutputTooLarge,
    ResourceLimit,
    WasmTrap,
)
from kumix.extensions.wasm import WasmInstance, WasmLimits
from tests.wasm_fixtures import (
    DEEP_RECURSION,
    FRIENDLY,
    FRIENDLY_EXPORTS,
    HUGE_RESULT,
    HUGE_STATIC_MEMORY,
    INFINITE_LOOP,
    MEMORY_BOMB,
    START_LOOP,
    MiB,
    Module,
    loader_for,
    make_wasm_extension,
)


def load(tmp_path: Path, source: str, exports: tuple[str, ...], **kwargs: object) -> WasmInstance:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", source, exports)])
    return loader_for(ext_dir, manifest, **kwargs).load("m.wasm")  # type: ignore[arg-type]


def fails_then_serves(instance: WasmInstance, error: type[KumixError], export: str, *args: int) -> KumixError:
    before = instance.instances_created
    with pytest.raises(error) as info:
        instance.call(export, *args)
    assert instance.call("ok") == 7
    assert instance.instances_created == before + 1, "the failed instance must be replaced"
    return info.value


def test_infinite_loop_stops_at_the_call_deadline(tmp_path: Path) -> None:
    # Fuel is left at its (large) default so that only the epoch deadline can stop the loop.
    deadline = time.monotonic() + 0.3
    instance = load(tmp_path, INFINITE_LOOP, ("spin", "ok"), deadline=deadline)
    with pytest.raises(CallTimeout) as info:
        instance.call("spin")
    assert info.value.code == "timeout"
    assert instance.last_fuel_used < WasmLimits(max_memory_bytes=MiB).fuel_per_call


def test_infinite_loop_stops_when_fuel_runs_out(tmp_path: Path) -> None:
    instance = load(tmp_path, INFINITE_LOOP, ("spin", "ok"), fuel=5_000_000, deadline=time.monotonic() + 600)
    error = fails_then_serves(instance, ResourceLimit, "spin")
    assert error.code == "resource_limit"
    assert error.details["limit"] == "fuel"


def test_call_after_its_deadline_never_runs(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    now = time.monotonic()
    deadlines = iter([now + 600, now - 1])
    instance = loader_for(ext_dir, manifest).load("m.wasm")
    instance._deadline = lambda: next(deadlines)
    assert instance.call("bump") == 1
    with pytest.raises(CallTimeout, match="before the WASM call started"):
        instance.call("bump")


def test_start_function_loop_is_bounded_at_load(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", START_LOOP, ("ok",))])
    with pytest.raises(ResourceLimit, match="fuel"):
        loader_for(ext_dir, manifest, fuel=1_000_000, deadline=time.monotonic() + 600).load("m.wasm")
    with pytest.raises(CallTimeout):
        loader_for(ext_dir, manifest, deadline=time.monotonic() + 0.2).load("m.wasm")


def test_deep_recursion_is_a_stack_limit(tmp_path: Path) -> None:
    instance = load(tmp_path, DEEP_RECURSION, ("down", "ok"))
    error = fails_then_serves(instance, ResourceLimit, "down", 0)
    assert error.details["limit"] == "stack"


def test_memory_grow_bomb_hits_the_cap(tmp_path: Path) -> None:
    cap = 8 * MiB
    instance = load(tmp_path, MEMORY_BOMB, ("memory", "bomb", "greedy", "ok"), memory=cap)
    error = fails_then_serves(instance, ResourceLimit, "bomb")
    assert error.details["limit"] == "memory"
    # A module that stops growing when refused just never gets past the cap.
    pages = instance.call("greedy")
    assert 0 < pages * 65536 <= cap


def test_memory_cap_follows_the_limits_not_a_fixed_constant(tmp_path: Path) -> None:
    small = load(tmp_path / "a", MEMORY_BOMB, ("memory", "greedy", "ok"), memory=4 * MiB)
    large = load(tmp_path / "b", MEMORY_BOMB, ("memory", "greedy", "ok"), memory=32 * MiB)
    assert small.call("greedy") * 65536 <= 4 * MiB
    assert 4 * MiB < large.call("greedy") * 65536 <= 32 * MiB


def test_declared_memory_above_the_cap_cannot_instantiate(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", HUGE_STATIC_MEMORY, ("ok",))])
    with pytest.raises(ResourceLimit, match="memory minimum size"):
        loader_for(ext_dir, manifest, memory=16 * MiB).load("m.wasm")


def test_trap_is_a_typed_error_and_the_instance_is_replaced(tmp_path: Path) -> None:
    instance = load(tmp_path, FRIENDLY, FRIENDLY_EXPORTS)
    assert instance.call("bump") == 1
    assert instance.call("bump") == 2  # state survives successful calls
    with pytest.raises(WasmTrap) as info:
        instance.call("boom")
    assert info.value.code == "wasm_trap"
    assert info.value.details["trap"] == "unreachable"
    assert instance.call("bump") == 1  # ... and not a failed one: fresh instance


def test_huge_result_is_output_too_large(tmp_path: Path) -> None:
    exports = ("memory", "alloc", "alloc_oob", "huge", "outside", "ok")
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", HUGE_RESULT, exports)])
    instance = loader_for(ext_dir, manifest, max_output=1 * MiB).load("m.wasm")
    with pytest.raises(OutputTooLarge):
        instance.call_bytes("huge", b"x")
    assert instance.call_bytes("ok", b"abc") == b"abc"
    with pytest.raises(WasmTrap, match="outside memory"):
        instance.call_bytes("outside", b"x")
    assert instance.call_bytes("ok", b"def") == b"def"
    assert instance.instances_created == 3  # each failure discarded its instance


def test_alloc_pointing_outside_memory_is_a_trap(tmp_path: Path) -> None:
    source = HUGE_RESULT.replace('(export "alloc")', '(export "alloc_fixed")').replace(
        '(export "alloc_oob")', '(export "alloc")')
    instance = load(tmp_path, source, ("memory", "alloc", "ok"))
    with pytest.raises(WasmTrap, match="alloc"):
        instance.call_bytes("ok", b"0123456789")
    assert instance.call_bytes("ok", b"") == b"\0\0\0"


def test_input_over_the_limit_never_reaches_the_module(tmp_path: Path) -> None:
    instance = load(tmp_path, FRIENDLY, FRIENDLY_EXPORTS, max_input=1024)
    created = instance.instances_created
    with pytest.raises(InputTooLarge):
        instance.call_bytes("echo", b"x" * 1025)
    assert instance.call_bytes("echo", b"y" * 1024) == b"y" * 1024
    assert instance.instances_created == created


def test_wrong_arguments_are_a_bad_request(tmp_path: Path) -> None:
    instance = load(tmp_path, FRIENDLY, FRIENDLY_EXPORTS)
    with pytest.raises(KumixError, match="takes 2 arguments"):
        instance.call("add", 1)
    with pytest.raises(KumixError, match="wants i32"):
        instance.call("add", 1, "2")  # type: ignore[arg-type]
    assert instance.call("add", 1, 2) == 3


def test_limits_can_be_lowered_never_raised() -> None:
    ceiling = WasmLimits.for_worker(512)
    assert ceiling.max_memory_bytes == 128 * MiB
    assert WasmLimits.for_worker(4096).max_memory_bytes == 256 * MiB
    raised = ceiling.lowered(max_memory_bytes=10**12, fuel_per_call=10**15)
    assert raised == ceiling
    lowered = ceiling.lowered(max_memory_bytes=8 * MiB, fuel_per_call=10)
    assert (lowered.max_memory_bytes, lowered.fuel_per_call) == (8 * MiB, 10)


def test_calls_refused_before_the_module_runs_keep_the_instance(tmp_path: Path) -> None:
    # docs/wasm.md promised that *every* failed call discards the instance; these never reach
    # the module, so nothing in it can be poisoned, and the code has always kept it. The page
    # now says so, and this pins each refusal it lists (state in a global survives them all).
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", FRIENDLY, FRIENDLY_EXPORTS)])
    instance = loader_for(ext_dir, manifest, max_input=16).load("m.wasm")
    assert instance.call("bump") == 1
    refusals: list[tuple[type[KumixError], Callable[[], object]]] = [
        (KumixError, lambda: instance.call("add", 1)),  # wrong argument count
        (KumixError, lambda: instance.call("add", 1, 2**40)),  # does not fit i32
        (KumixError, lambda: instance.call("nope")),  # not declared
        (InputTooLarge, lambda: instance.call_bytes("echo", b"x" * 17)),
        (WasmTrap, lambda: instance.call_bytes("add", b"x")),  # not the bytes convention's signature
    ]
    for error, refused in refusals:
        with pytest.raises(error):
            refused()
    now = time.monotonic()
    instance._deadline = lambda: now - 1
    with pytest.raises(CallTimeout, match="before the WASM call started"):
        instance.call("bump")
    instance._deadline = lambda: None
    assert instance.call("bump") == 2
    assert instance.instances_created == 1
