"""The read set's library part: the directory of every shared object mapped into the process,
and nothing for mappings that are not shared objects (the interpreter binary, anonymous maps)."""

from __future__ import annotations

import sys
from pathlib import Path

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
