"""WASM through the real proc host: forked, confined worker processes under the strict limits.

The bundled wasm-demo answers `text.stats`; a hostile extension runs runaway modules. Every
attack ends in a typed error for the caller and the same worker process (no crash, no
restart) serves the next call.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kumix.core.errors import (
    CallTimeout,
    KumixError,
    OutputTooLarge,
    ResourceLimit,
    WasmRejected,
)
from kumix.extensions.manifest import load_manifest
from kumix.extensions.policy import Policy, load_policy
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.wasm import wat_to_wasm
from tests.conftest import REPO_ROOT
from tests.test_wasm_demo import reference_stats
from tests.wasm_fixtures import (
    DEEP_RECURSION,
    FRIENDLY,
    FRIENDLY_EXPORTS,
    HUGE_RESULT,
    INFINITE_LOOP,
    MEMORY_BOMB,
    WASI_IMPORT,
    Module,
)

DEMO_DIR = REPO_ROOT / "src/kumix/bundled/extensions/proc/wasm-demo"

HOSTILE_WORKER = '''
from __future__ import annotations

import os
from typing import Any

from kumix.sdk import proc, wasm

_modules: dict[tuple[str, int | None], wasm.WasmInstance] = {}


def module(params: dict[str, Any]) -> wasm.WasmInstance:
    key = (params["module"], params.get("fuel"))
    if key not in _modules:
        _modules[key] = wasm.instantiate(key[0], fuel_per_call=key[1])
    return _modules[key]


@proc.handler("wasm.call")
def call(params: dict[str, Any]) -> Any:
    return module(params).call(params["export"], *params.get("args", []))


@proc.handler("wasm.bytes")
def call_bytes(params: dict[str, Any]) -> str:
    return module(params).call_bytes(params["export"], params["data"].encode()).decode()


@proc.handler("wasm.pid")
def pid(params: dict[str, Any]) -> int:
    return os.getpid()
'''

OK_EXPORT = '(func (export "ok") (result i32) (i32.const 7))'

HOSTILE_MODULES = [
    Module("friendly.wasm", FRIENDLY, FRIENDLY_EXPORTS),
    Module("loop.wasm", INFINITE_LOOP, ("spin", "ok")),
    Module("recurse.wasm", DEEP_RECURSION, ("down", "ok")),
    Module("bomb.wasm", MEMORY_BOMB, ("memory", "bomb", "greedy", "ok")),
    Module("huge.wasm", HUGE_RESULT, ("memory", "alloc", "huge", "ok")),
    Module("wasi.wasm", WASI_IMPORT, ("ok",)),
    # The second attack pass: each of these crashed the worker or answered `null`.
    Module("v128.wasm", '(module (func (export "f") (param v128)) ' + OK_EXPORT + ")", ("ok",)),
    Module("logv128.wasm", '(module (import "kumix" "log" (func (param v128))) ' + OK_EXPORT + ")",
           ("ok",), imports=("kumix.log",)),
    Module("nan.wasm", '(module (func (export "nan") (result f64) (f64.const nan)))', ("nan",)),
    Module("typedref.wasm", '(module (type $t (func)) (func (export "f") (param (ref null $t))) ' + OK_EXPORT + ")",
           ("ok",)),
    Module("funcref.wasm", '(module (func $g) (elem declare func $g) '
           '(func (export "f") (result funcref) (ref.func $g)) ' + OK_EXPORT + ")", ("f", "ok")),
]


def hostile_extension(root: Path) -> Path:
    ext_dir = root / "wasm-hostile"
    ext_dir.mkdir(parents=True)
    entries = []
    for item in HOSTILE_MODULES:
        data = item.binary()
        (ext_dir / item.path).write_bytes(data)
        entries.append({"path": item.path, "sha256": hashlib.sha256(data).hexdigest(),
                        "exports": list(item.exports), "imports": list(item.imports)})
    (root / "outside.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    methods = dict.fromkeys(("wasm.call", "wasm.bytes", "wasm.pid"), "wasm.hostile")
    # 4 s per call: the loop attack still ends in `timeout`, and the memory bomb (zeroing
    # 128 MiB) and a cold worker start have room on a loaded 2-core machine, where 1 s turned
    # their real outcome (resource_limit, an answer) into a deadline.
    manifest = {"id": "wasm-hostile", "name": "Hostile WASM", "version": "1.0.0", "kind": "proc",
                "capabilities": ["wasm.hostile"], "entry": "worker.py", "timeoutMs": 4000,
                "methods": methods, "wasm": entries}
    (ext_dir / "manifest.json").write_text(json.dumps(manifest))
    (ext_dir / "worker.py").write_text(HOSTILE_WORKER)
    os.chmod(root, 0o755)
    for path in (ext_dir, *ext_dir.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return ext_dir


def strict_with(tmp_path: Path, *capabilities: str) -> Policy:
    """The bundled strict policy (confinement required, strict limits) with test capabilities."""
    doc = json.loads((REPO_ROOT / "src/kumix/bundled/policies/strict.json").read_text())
    doc["name"] = "strict-wasm-test"
    doc["capabilities"] = [*doc["capabilities"], *capabilities]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return load_policy(str(path))


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[ProcHost]:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with ProcHost(strict_with(tmp_path, "wasm.hostile"), logs_dir=logs) as proc_host:
        yield proc_host


async def test_wasm_demo_serves_text_stats_in_a_confined_worker(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with ProcHost(load_policy("strict"), logs_dir=logs) as proc_host:
        session = proc_host.session("wasm-demo", DEMO_DIR, load_manifest(DEMO_DIR))
        for text in ["hello wasm world\nline two", "", "héllo 👋\n\n x"]:
            result = await session.call("text.stats", {"text": text})
            words, chars, lines, fnv = reference_stats(text.encode())
            assert result == {"words": words, "chars": chars, "lines": lines,
                              "bytes": len(text.encode()), "fnv1a64": f"{fnv:016x}"}
        assert "started, confined" in (logs / "wasm-demo.log").read_text()
        with pytest.raises(KumixError) as info:
            await session.call("text.stats", {"text": 42})
        assert info.value.code == "bad_request"


async def call(session: Any, method: str, **params: Any) -> Any:
    return await session.call(method, params)


async def test_hostile_modules_end_in_typed_errors_and_the_worker_keeps_serving(
        tmp_path: Path, host: ProcHost) -> None:
    ext_dir = hostile_extension(tmp_path / "ext")
    session = host.session("wasm-hostile", ext_dir, load_manifest(ext_dir))
    pid = await call(session, "wasm.pid")

    async def attack(error: type[KumixError], method: str, **params: Any) -> KumixError:
        with pytest.raises(error) as info:
            await call(session, method, **params)
        assert await call(session, "wasm.call", module="friendly.wasm", export="add", args=[2, 3]) == 5
        return info.value

    # A runaway with the default fuel ends at whichever bound it meets first: the 4 s deadline
    # on a busy machine, the 4e9 fuel units on an idle one (a branch-only loop burns
    # 0.2-1.1e9 units/s here, depending on the load). Either way a typed error, the same worker.
    runaway = await attack(KumixError, "wasm.call", module="loop.wasm", export="spin")
    assert (isinstance(runaway, CallTimeout)
            or (isinstance(runaway, ResourceLimit) and "fuel" in runaway.message)), runaway
    fuel = await attack(ResourceLimit, "wasm.call", module="loop.wasm", export="spin", fuel=10_000_000)
    assert "fuel" in fuel.message
    stack = await attack(ResourceLimit, "wasm.call", module="recurse.wasm", export="down", args=[0])
    assert "stack overflow" in stack.message
    memory = await attack(ResourceLimit, "wasm.call", module="bomb.wasm", export="bomb")
    assert "memory" in memory.message
    # The cap under strict (maxMemoryMb 512) is 128 MiB; the greedy module stops there.
    pages = await call(session, "wasm.call", module="bomb.wasm", export="greedy")
    assert 0 < pages * 65536 <= 128 * 1024 * 1024
    await attack(OutputTooLarge, "wasm.bytes", module="huge.wasm", export="huge", data="x")
    wasi = await attack(WasmRejected, "wasm.call", module="wasi.wasm", export="ok")
    assert "wasi_snapshot_preview1.fd_write" in wasi.message
    escape = await attack(WasmRejected, "wasm.call", module="../outside.wasm", export="add", args=[1, 1])
    assert "'..'" in escape.message
    trap = await attack(KumixError, "wasm.call", module="friendly.wasm", export="boom")
    assert "WASM trapped: unreachable" in trap.message
    assert trap.code == "wasm_trap"
    for module in ("v128.wasm", "logv128.wasm", "typedref.wasm", "funcref.wasm"):
        assert (await attack(WasmRejected, "wasm.call", module=module, export="ok")).code == "wasm_rejected"
    nan = await attack(KumixError, "wasm.call", module="nan.wasm", export="nan")
    assert nan.code == "wasm_trap"
    assert "not finite" in nan.message  # details do not cross the wire; the message does

    assert await call(session, "wasm.pid") == pid, "the same worker process must still be serving"
    stats = host.stats("wasm-hostile")
    assert stats["crashes"] == 0
    assert stats["restarts"] == 0
