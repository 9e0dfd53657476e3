"""Value types and proposals a module may use, attacked with the modules that got through.

Kumix passes only i32, i64, f32 and f64 between Python and WASM. wasmtime's C API aborts the
whole process when it is asked to describe a `v128` or a typed function reference, so a
module using one in a signature (an export, declared or not, or a host import) was a way to
crash the worker instead of being refused. Each test here failed before the fix it came
with: the module loaded (or the interpreter aborted), where now it is `wasm_rejected` before
instantiation, or a non-finite result reached the caller as JSON `null`.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kumix.core.errors import WasmRejected, WasmTrap
from kumix.extensions.wasm import WasmInstance
from tests.conftest import REPO_ROOT
from tests.wasm_fixtures import Module, loader_for, make_wasm_extension

OK = '(func (export "ok") (result i32) (i32.const 7))'


def load(tmp_path: Path, source: str, exports: tuple[str, ...], imports: tuple[str, ...] = ()) -> WasmInstance:
    ext_dir, manifest = make_wasm_extension(tmp_path, [Module("m.wasm", source, exports, imports=imports)])
    return loader_for(ext_dir, manifest).load("m.wasm")


# Each aborted the worker (SIGABRT in wasmtime's C API) or loaded a signature `call` cannot serve.
SIGNATURES = {
    "v128_param_declared": (
        '(module (func (export "f") (param v128) (result i32) (i32.const 1)) ' + OK + ")", ("f", "ok")
    ),
    "v128_result_undeclared": ('(module (func (export "f") (result v128) (v128.const i64x2 0 0)) ' + OK + ")", ("ok",)),
    "typed_funcref_param": (
        '(module (type $t (func)) (func (export "f") (param (ref null $t)) (result i32) (i32.const 1)) ' + OK + ")",
        ("ok",),
    ),
    "funcref_result": ('(module (func $g) (elem declare func $g) (func (export "f") (result funcref) (ref.func $g)) '
                       + OK + ")", ("f", "ok")),
    "externref_param": ('(module (func (export "f") (param externref)) ' + OK + ")", ("ok",)),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_export_signature_outside_the_numeric_types_is_rejected_before_instantiation(tmp_path: Path, name: str) -> None:
    source, exports = SIGNATURES[name]
    with pytest.raises(WasmRejected) as info:
        load(tmp_path, source, exports)
    assert info.value.code == "wasm_rejected"


def test_host_import_with_a_v128_parameter_is_rejected(tmp_path: Path) -> None:
    source = '(module (import "kumix" "log" (func (param v128))) ' + OK + ")"
    with pytest.raises(WasmRejected):
        load(tmp_path, source, ("ok",), imports=("kumix.log",))


# Proposals Kumix does not offer: each compiled before and ran; none is needed by a chat
# extension, and SIMD and function references carry the value types above.
PROPOSALS = {
    "simd": '(module (func (export "f") (result i32) (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4))))',
    "function_references": """(module (type $t (func (result i32))) (func $g (result i32) (i32.const 1))
        (elem declare func $g) (func (export "f") (result i32) (call_ref $t (ref.func $g))))""",
    "tail_call": '(module (func $g (result i32) (i32.const 1)) (func (export "f") (result i32) (return_call $g)))',
}


@pytest.mark.parametrize("proposal", sorted(PROPOSALS))
def test_proposals_kumix_does_not_offer_are_refused(tmp_path: Path, proposal: str) -> None:
    with pytest.raises(WasmRejected, match="not a valid WASM module"):
        load(tmp_path, PROPOSALS[proposal], ("f",))


NON_FINITE = """
(module
  (func (export "nan64") (result f64) (f64.const nan))
  (func (export "inf64") (result f64) (f64.const inf))
  (func (export "neginf32") (result f32) (f32.const -inf))
  (func (export "pair") (result i32 f64) (i32.const 1) (f64.const nan))
  (func (export "half") (result f64) (f64.const 0.5))
  (func (export "idf") (param f64) (result f64) (local.get 0))
  (global $n (mut i32) (i32.const 0))
  (func (export "bump") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n)))
"""
NON_FINITE_EXPORTS = ("nan64", "inf64", "neginf32", "pair", "half", "idf", "bump")


@pytest.mark.parametrize("export", ["nan64", "inf64", "neginf32", "pair"])
def test_non_finite_results_are_a_typed_error_not_a_silent_null(tmp_path: Path, export: str) -> None:
    # JSON has no NaN or infinity: returned to the host they became `null` without a word.
    instance = load(tmp_path, NON_FINITE, NON_FINITE_EXPORTS)
    assert instance.call("bump") == 1
    with pytest.raises(WasmTrap) as info:
        instance.call(export)
    assert info.value.details["result"] == "non_finite"
    assert instance.call("half") == 0.5
    assert instance.call("bump") == 1, "a failed call discards the instance like any other"


def test_non_finite_arguments_are_refused_before_the_call(tmp_path: Path) -> None:
    instance = load(tmp_path, NON_FINITE, NON_FINITE_EXPORTS)
    assert instance.call("idf", 1.5) == 1.5
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(Exception, match="finite") as info:
            instance.call("idf", value)
        assert getattr(info.value, "code", None) == "bad_request"
    assert instance.instances_created == 1


# --- each layer alone, and the attack with every layer switched off ----------------------------

LAYERS_SCRIPT = r'''
import json, os, sys, tempfile
from pathlib import Path

import wasmtime

from kumix.core.errors import KumixError, WasmRejected
from kumix.extensions.wasm import instance as instance_module
from kumix.extensions.wasm import loader as loader_module
from tests.wasm_fixtures import Module, loader_for, make_wasm_extension

SOURCE = sys.argv[1]
LAYERS = ("shape", "engine", "guard")


def permissive_engine(memory_reservation, max_stack_bytes):
    # The engine with the proposals back at wasmtime's defaults; memory as Kumix's.
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.memory_reservation = memory_reservation
    config.memory_guard_size = 65536
    config.wasm_gc = False
    return wasmtime.Engine(config)


def attempt(on):
    if "shape" not in on:
        loader_module.check_exports = lambda path, spec, shape: None
    if "engine" not in on:
        loader_module.engine = permissive_engine
    if "guard" not in on:
        instance_module.WasmInstance._argument = lambda self, export, kind, value: float(value)
    with tempfile.TemporaryDirectory() as tmp:
        ext_dir, manifest = make_wasm_extension(Path(tmp), [Module("m.wasm", SOURCE, ("f", "ok"))])
        try:
            instance = loader_for(ext_dir, manifest).load("m.wasm")
        except WasmRejected:
            return 0
        try:
            instance.call("f", 0)  # the attack: wasmtime is asked to convert a value of that type
        except KumixError:
            return 2
    return 1


results = {}
for on in (LAYERS, ("shape",), ("engine",), ("guard",), ()):
    pid = os.fork()
    if pid == 0:
        os._exit(attempt(on))
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        outcome = ("rejected", "called", "refused")[os.WEXITSTATUS(status)]
    else:
        outcome = "signal %d" % os.WTERMSIG(status)
    results["+".join(on) or "none"] = outcome
print(json.dumps(results))
'''


def test_each_layer_alone_stops_a_v128_signature_and_without_them_the_worker_dies() -> None:
    # Three layers: the shape check and the engine's proposals refuse the module at load; the
    # argument guard in `call` refuses to hand wasmtime a value it cannot describe. (A typed
    # reference has no layer to switch off: it cannot get past the shape reader at all, see
    # tests/test_wasm_binary.py.)
    run = subprocess.run([sys.executable, "-c", LAYERS_SCRIPT, SIGNATURES["v128_param_declared"][0]],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    results = json.loads(run.stdout.splitlines()[-1])
    assert results == {
        "shape+engine+guard": "rejected",
        "shape": "rejected",
        "engine": "rejected",
        "guard": "refused",
        # The attack itself: with every layer off, wasmtime is asked about the type and the
        # process aborts (before the fix, loading alone did).
        "none": f"signal {signal.SIGABRT.value}",
    }
