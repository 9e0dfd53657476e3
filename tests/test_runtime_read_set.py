"""The read set's library part: the directory of every shared object mapped into the process,
and nothing for mappings that are not shared objects (the interpreter binary, anonymous maps)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kumix.extensions.proc import runtime_access


def test_library_dirs_name_each_mapped_shared_object_directory_once() -> None:
    import msgspec._core as core  # a C extension: mapped from site-packages

    dirs = runtime_access._library_dirs()
    assert Path(core.__file__).resolve().parent in dirs
    assert Path(sys.executable).resolve().parent not in dirs, "the interpreter binary is not a .so"
    assert all(d.is_absolute() for d in dirs)
    mapped = [line.split(maxsplit=5) for line in Path("/proc/self/maps").read_text().splitlines()]
    shared = {Path(parts[5].removesuffix(" (deleted)")).parent for parts in mapped
              if len(parts) == 6 and ".so" in parts[5].rsplit("/", 1)[-1]}
    assert dirs <= shared, "only directories of shared objects"


def test_the_read_set_is_reused_only_while_its_inputs_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Computed once per input (the fork server computes it ahead for the workers it forks), but
    a process whose sys.path or mapped libraries differ gets its own, never a stale one."""
    import ctypes
    import shutil

    first = runtime_access.python_runtime_paths()
    assert runtime_access.python_runtime_paths() is first, "unchanged inputs: reused"
    assert first == runtime_access._compute_runtime_paths(runtime_access._library_names())

    # A shared library from a directory nothing else maps: the read set must now cover it.
    import _json

    library_dir = tmp_path / "libs"
    library_dir.mkdir()
    library = library_dir / "libkumix_read_set_probe.so"
    shutil.copy(_json.__file__, library)
    ctypes.CDLL(str(library))
    after = runtime_access.python_runtime_paths()
    assert after is not first
    assert library_dir.resolve() in after, "a library mapped since the last computation is readable"
    assert not runtime_access.refresh_runtime_paths(), "and that result is the current one"

    # An entry on sys.path inside the interpreter's prefixes counts as well.
    inside = Path(runtime_access._SYSCONFIG_PATHS["purelib"]) / "kumix"
    monkeypatch.setattr(sys, "path", [*sys.path, str(inside)])
    assert runtime_access.refresh_runtime_paths(), "sys.path changed: computed again"


def test_the_fork_server_leaves_a_read_set_its_workers_can_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    from kumix.extensions.proc import forkserver

    monkeypatch.setattr(runtime_access, "_computed", None)
    preloader = forkserver._Preloader(["json"])
    preloader.step()
    assert runtime_access._computed is not None
    assert not runtime_access.refresh_runtime_paths(), "computed ahead for the current inputs"
