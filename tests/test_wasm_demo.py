"""The bundled wasm-demo extension: reproducible build, pinned module, correct statistics."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumix.core.errors import CallTimeout, InputTooLarge, ResourceLimit
from kumix.extensions.manifest import load_manifest
from kumix.extensions.policy import load_policy
from kumix.extensions.registry import discover
from kumix.extensions.wasm import WasmInstance, WasmLimits, WasmLoader
from kumix.sdk import runtime_context
from kumix.sdk import wasm as sdk_wasm
from kumix.sdk.runtime_context import WorkerContext, call_deadline
from tests.conftest import REPO_ROOT

DEMO_DIR = REPO_ROOT / "src/kumix/bundled/extensions/proc/wasm-demo"
BUILD = REPO_ROOT / "scripts/build-wasm-demo"
MiB = 1024 * 1024


def reference_stats(data: bytes) -> tuple[int, int, int, int]:
    """The rules documented in text_stats.wat, written the obvious Python way."""
    fnv = 0xCBF29CE484222325
    for byte in data:
        fnv = ((fnv ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    chars = sum(1 for byte in data if byte & 0xC0 != 0x80)
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return len(data.split()), chars, lines, fnv


@pytest.fixture(scope="module")
def demo() -> WasmInstance:
    manifest = load_manifest(DEMO_DIR)
    loader = WasmLoader(DEMO_DIR, manifest.wasm, WasmLimits.for_worker(512), deadline=lambda: None)
    return loader.load("text_stats.wasm")


def stats(instance: WasmInstance, data: bytes) -> tuple[int, int, int, int]:
    record = instance.call_bytes("text_stats", data)
    assert len(record) == 24
    return (
        int.from_bytes(record[0:4], "little"),
        int.from_bytes(record[4:8], "little"),
        int.from_bytes(record[8:12], "little"),
        int.from_bytes(record[16:24], "little"),
    )


def test_committed_module_is_a_byte_for_byte_rebuild_of_its_source(tmp_path: Path) -> None:
    out = tmp_path / "rebuilt.wasm"
    subprocess.run([sys.executable, str(BUILD), "--out", str(out)], check=True, capture_output=True, timeout=60)
    committed = (DEMO_DIR / "text_stats.wasm").read_bytes()
    assert out.read_bytes() == committed
    check = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    manifest = load_manifest(DEMO_DIR)
    assert manifest.wasm[0].sha256 == hashlib.sha256(committed).hexdigest()


def test_demo_is_a_valid_bundled_extension_allowed_by_strict() -> None:
    record = next(r for r in discover() if r.id == "wasm-demo")
    assert record.valid, record.problem
    assert record.origin == "bundled"
    assert record.manifest is not None
    assert load_policy("strict").decide(record.manifest).allowed
    assert record.manifest.wasm[0].imports == ()  # least privilege: no host functions


@pytest.mark.parametrize(
    "text",
    ["", "hello", "hello world\n", "  two\twords  ", "a\nb\n\nc", "héllo wörld 👋\r\n", "\n\n", "x" * 70_000],
)
def test_stats_match_the_documented_rules(demo: WasmInstance, text: str) -> None:
    data = text.encode()
    assert stats(demo, data) == reference_stats(data)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_stats_match_the_reference_for_any_text(demo: WasmInstance, text: str) -> None:
    data = text.encode()
    assert stats(demo, data) == reference_stats(data)


def test_fnv1a_matches_published_test_vectors(demo: WasmInstance) -> None:
    # From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
    assert stats(demo, b"")[3] == 0xCBF29CE484222325
    assert stats(demo, b"a")[3] == 0xAF63DC4C8601EC8C
    assert stats(demo, b"foobar")[3] == 0x85944171F73967E8


def test_sdk_instantiate_uses_the_worker_context_and_call_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = load_manifest(DEMO_DIR)
    # The worker runtime sets this once per worker; restored after the test.
    monkeypatch.setattr(runtime_context, "_context", None)
    runtime_context.set_worker_context(WorkerContext("wasm-demo", DEMO_DIR, manifest, max_memory_mb=512))
    instance = sdk_wasm.instantiate("text_stats.wasm", max_memory_mb=4)
    assert instance.limits.max_memory_bytes == 4 * MiB
    assert sdk_wasm.instantiate("text_stats.wasm").limits.max_memory_bytes == 128 * MiB
    # The memory cap reaches the module: 4 MiB cannot hold a 3.9 MiB message plus its header.
    with pytest.raises(ResourceLimit, match="memory"):
        instance.call_bytes("text_stats", b"x" * (4 * MiB - 1000))
    assert stats(instance, b"still serving") == reference_stats(b"still serving")
    # The call's own deadline (set by the worker runtime) governs the call.
    token = call_deadline.set(time.monotonic() - 1)
    try:
        with pytest.raises(CallTimeout):
            instance.call_bytes("text_stats", b"late")
    finally:
        call_deadline.reset(token)
    with pytest.raises(InputTooLarge):
        sdk_wasm.instantiate("text_stats.wasm", max_input_bytes=10).call_bytes("text_stats", b"x" * 11)
