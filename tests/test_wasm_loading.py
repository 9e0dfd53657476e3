"""Loading rules for WASM modules: path, pin, file kind, imports and exports.

Each hostile case ends in `WasmRejected` naming the reason, and the same loader then still
loads a good module: a rejection never leaves the worker unable to serve.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kumix.core.errors import WasmRejected, WasmTrap
from kumix.extensions.wasm import HOST_FUNCTIONS, MAX_MODULE_BYTES, wat_to_wasm
from tests.wasm_fixtures import (
    ENV_IMPORT,
    FRIENDLY,
    FRIENDLY_EXPORTS,
    LOGGER,
    LOGGER_WRONG_SIGNATURE,
    MEMORY_IMPORT,
    WASI_IMPORT,
    Module,
    loader_for,
    make_wasm_extension,
)

GOOD = Module("good.wasm", FRIENDLY, FRIENDLY_EXPORTS)


def rejected(ext_dir: Path, manifest, path: str) -> str:  # type: ignore[no-untyped-def]
    loader = loader_for(ext_dir, manifest)
    with pytest.raises(WasmRejected) as info:
        loader.load(path)
    assert info.value.code == "wasm_rejected"
    # The same loader keeps serving after a rejection.
    assert loader.load("good.wasm").call("add", 1, 1) == 2
    return info.value.message


def test_listed_pinned_module_loads_and_runs(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("sub/dir/other.wasm", FRIENDLY, ("add",))])
    loader = loader_for(ext_dir, manifest)
    assert loader.load("good.wasm").call("add", 40, 2) == 42
    assert loader.load("sub/dir/other.wasm").call("add", 1, 2) == 3


def test_path_not_listed_in_manifest_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD])
    (ext_dir / "unlisted.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    assert "not listed in the manifest" in rejected(ext_dir, manifest, "unlisted.wasm")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.wasm", "'..'"),
        ("sub/../../outside.wasm", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("https://example.org/evil.wasm", "URL"),
        ("file:good.wasm", "URL"),
        ("./good.wasm", "not a normalized"),
        ("sub//good.wasm", "not a normalized"),
        (".hidden.wasm", "not a plain relative path"),
        ("", "empty"),
    ],
)
def test_escaping_or_odd_paths_are_rejected_with_reason(tmp_path: Path, path: str, reason: str) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD])
    (tmp_path / "outside.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    assert reason in rejected(ext_dir, manifest, path)


def test_symlink_leaving_the_directory_is_rejected_even_with_a_matching_pin(tmp_path: Path) -> None:
    outside = tmp_path / "outside.wasm"
    outside.write_bytes(wat_to_wasm(FRIENDLY))
    # The pin matches the outside file: only the symlink rule stands between it and loading.
    evil = Module("evil.wasm", FRIENDLY, ("add",))
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, evil], write_files=False)
    (ext_dir / "good.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    (ext_dir / "evil.wasm").symlink_to(outside)
    assert "symlink" in rejected(ext_dir, manifest, "evil.wasm")


def test_symlinked_directory_component_is_rejected(tmp_path: Path) -> None:
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "mod.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("mods/mod.wasm", FRIENDLY, ("add",))], write_files=False)
    (ext_dir / "good.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    (ext_dir / "mods").symlink_to(outside_dir, target_is_directory=True)
    assert "symlink" in rejected(ext_dir, manifest, "mods/mod.wasm")


def test_hash_mismatch_is_rejected_naming_both_hashes(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("swapped.wasm", FRIENDLY, ("add",))])
    swapped = wat_to_wasm(FRIENDLY.replace("(i32.add (local.get 0)", "(i32.sub (local.get 0)"))
    (ext_dir / "swapped.wasm").write_bytes(swapped)
    message = rejected(ext_dir, manifest, "swapped.wasm")
    assert "sha256 mismatch" in message
    assert hashlib.sha256(swapped).hexdigest() in message


def test_fifo_under_the_module_name_is_rejected_without_blocking(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("pipe.wasm", FRIENDLY, ("add",))], write_files=False)
    (ext_dir / "good.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    os.mkfifo(ext_dir / "pipe.wasm")
    assert "not a regular file" in rejected(ext_dir, manifest, "pipe.wasm")


def test_oversized_file_is_rejected_before_hashing(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("big.wasm", FRIENDLY, ("add",))], write_files=False)
    (ext_dir / "good.wasm").write_bytes(wat_to_wasm(FRIENDLY))
    with (ext_dir / "big.wasm").open("wb") as handle:
        handle.truncate(MAX_MODULE_BYTES + 1)
    assert "module limit" in rejected(ext_dir, manifest, "big.wasm")


def test_text_format_is_rejected_even_when_pinned(tmp_path: Path) -> None:
    # wasmtime would happily compile WAT text; only shipped binaries are allowed.
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("text.wasm", FRIENDLY.encode(), ("add",))])
    assert "not a binary WASM module" in rejected(ext_dir, manifest, "text.wasm")


def test_corrupt_binary_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("bad.wasm", b"\0asm\x01\0\0\0garbage")])
    assert "not a valid WASM module" in rejected(ext_dir, manifest, "bad.wasm")


def test_wasi_import_is_rejected_naming_it(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("wasi.wasm", WASI_IMPORT, ("ok",))])
    message = rejected(ext_dir, manifest, "wasi.wasm")
    assert "wasi_snapshot_preview1.fd_write" in message
    assert "WASI is not offered" in message


def test_unexpected_env_import_is_rejected_naming_it(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("env.wasm", ENV_IMPORT, ("ok",))])
    assert "'env.abort'" in rejected(ext_dir, manifest, "env.wasm")


def test_imported_memory_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("mem.wasm", MEMORY_IMPORT, ("ok",), imports=("kumix.memory",))])
    assert "'kumix.memory'" in rejected(ext_dir, manifest, "mem.wasm")


def test_host_function_not_declared_in_manifest_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("log.wasm", LOGGER, ("memory", "hello"))])
    assert "unexpected import 'kumix.log'" in rejected(ext_dir, manifest, "log.wasm")


def test_host_function_with_wrong_signature_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("sig.wasm", LOGGER_WRONG_SIGNATURE, ("ok",), imports=("kumix.log",))])
    assert "signature" in rejected(ext_dir, manifest, "sig.wasm")


def test_declared_host_function_works_and_is_bounded(tmp_path: Path) -> None:
    assert set(HOST_FUNCTIONS) == {"kumix.log"}
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("log.wasm", LOGGER, ("memory", "hello", "chatty", "log_oob"), imports=("kumix.log",))])
    logs: list[str] = []
    instance = loader_for(ext_dir, manifest, logs=logs).load("log.wasm")
    instance.call("hello")
    assert logs == ["hello from wasm"]
    logs.clear()
    instance.call("chatty")  # 100 messages of 4096 bytes asked for
    assert all(len(text.encode()) <= 512 for text in logs)
    assert sum(len(text.encode()) for text in logs) <= 8192
    with pytest.raises(WasmTrap, match="outside memory"):
        instance.call("log_oob")
    instance.call("hello")  # a fresh instance after the trap


def test_manifest_import_that_kumix_does_not_offer_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(
        tmp_path, [GOOD, Module("x.wasm", FRIENDLY, ("add",), imports=("kumix.spawn",))])
    assert "not a Kumix host function" in rejected(ext_dir, manifest, "x.wasm")


def test_missing_declared_export_is_rejected_naming_it(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("x.wasm", FRIENDLY, ("add", "render"))])
    assert "'render'" in rejected(ext_dir, manifest, "x.wasm")


def test_calling_an_undeclared_export_is_rejected(tmp_path: Path) -> None:
    ext_dir, manifest = make_wasm_extension(tmp_path, [GOOD, Module("x.wasm", FRIENDLY, ("add",))])
    instance = loader_for(ext_dir, manifest).load("x.wasm")
    with pytest.raises(WasmRejected, match="'bump' is not declared"):
        instance.call("bump")
    assert instance.call("add", 1, 2) == 3
