"""What a confined worker may read of the Python runtime, and how it still reaches it as `nobody`.

Two questions, one module:

1. The read set. Landlock gives the worker read access to its extension directory and to the
   Python runtime; this module says what "the runtime" is: the standard library and its
   `lib-dynload`, the site-packages of the environment, the directories on `sys.path` that lie
   inside the interpreter's prefixes, the `kumix` package itself, and the directories of the
   shared libraries already mapped into the process (C extensions that load later, such as
   `_ssl` or wasmtime's library, need their neighbours; `/etc/ld.so.cache` lets the dynamic
   loader find them by name). Not the home directory, not the data directory, not /etc, /proc
   or /tmp.

2. Traversal after the uid switch. When the host runs as root, the worker becomes `nobody`, and
   an interpreter installed under /root (pyenv) is then unreachable by path: /root is 0700. The
   worker keeps a directory file descriptor (O_PATH) for every read root that `nobody` could not
   traverse, opened while it was still root, and reaches the root as `/proc/self/fd/N`. Path
   lookup through that magic link starts at the directory itself, so the permission bits of its
   ancestors are never consulted, while Landlock still checks every file finally opened against
   the read set. `sys.path` and the `__path__` of already imported packages are rewritten to
   those names, so the ordinary import system keeps working, including lazy imports of stdlib
   modules and of C extensions. The descriptor is the only "capability" kept: the process holds
   no Linux capability at all.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import kumix

_SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")
LD_SO_CACHE = Path("/etc/ld.so.cache")
DEVICE_FILES = (Path("/dev/null"), Path("/dev/urandom"))
"""Harmless devices some libraries open directly (read-only rules: writing is not granted)."""


_SYSCONFIG_PATHS: dict[str, str] = sysconfig.get_paths()
"""Computed at import, in the fork server: the first call imports the `_sysconfigdata` module
(about 10 ms), which every worker would otherwise pay again after the fork."""


def _prefixes() -> tuple[Path, ...]:
    raw = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    return tuple(Path(p).resolve() for p in sorted(raw))


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _library_names() -> frozenset[str]:
    """The files of the shared libraries mapped into this process (/proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return frozenset()
    # Each library is mapped several times (a few hundred lines after the preload): the names
    # are gathered as strings first and become paths once each, which is most of this step's
    # cost in every worker start (3.5 → 1 ms).
    names: set[str] = set()
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            name = parts[5].removesuffix(" (deleted)")
            if _SHARED_OBJECT.search(name):
                names.add(name)
    return frozenset(names)


def _library_dirs() -> set[Path]:
    return {Path(name).parent for name in _library_names()}


_computed: tuple[tuple[tuple[str, ...], frozenset[str]], tuple[Path, ...]] | None = None
"""The last read set and what it was computed from: `sys.path` and the mapped libraries."""


def python_runtime_paths() -> tuple[Path, ...]:
    """Directories (and a few files) that make up the running Python runtime.

    Computed once per input: resolving every candidate is 10-17 ms on a slow machine, and each
    worker forked from the fork server would repeat it with the very same inputs. The server
    computes it ahead (`refresh_runtime_paths`, between requests), and a worker reuses that only
    when its own `sys.path` and its own mapped libraries are exactly those it was computed from
    (checked in every worker, ~1 ms); anything else is computed afresh, as before."""
    global _computed
    key = (tuple(sys.path), _library_names())
    computed = _computed
    if computed is not None and computed[0] == key:
        return computed[1]
    paths = _compute_runtime_paths(key[1])
    _computed = (key, paths)
    return paths


def refresh_runtime_paths() -> bool:
    """Compute the read set now if its inputs changed since the last time (the fork server,
    between requests, so a worker it forks finds it ready); whether it was computed."""
    key = (tuple(sys.path), _library_names())
    if _computed is not None and _computed[0] == key:
        return False
    python_runtime_paths()
    return True


def _compute_runtime_paths(libraries: frozenset[str]) -> tuple[Path, ...]:
    prefixes = _prefixes()
    candidates: set[Path] = set()
    paths = _SYSCONFIG_PATHS
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if key in paths:
            candidates.add(Path(paths[key]))
    for entry in sys.path:
        if entry:
            path = Path(entry).resolve()
            if _inside(path, prefixes):
                candidates.add(path)
    candidates.add(Path(kumix.__file__).resolve().parent)
    candidates |= {Path(name).parent for name in libraries}
    candidates.add(LD_SO_CACHE)
    candidates.update(DEVICE_FILES)
    existing = {p.resolve() for p in candidates if p.exists()}
    return _minimal_roots(existing)


def _minimal_roots(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Drop paths that lie beneath another one in the set (Landlock rules cover hierarchies)."""
    roots: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not _inside(path, roots):
            roots.append(path)
    return tuple(sorted(roots))


def traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether uid/gid (with no supplementary groups) can walk to `path` and list it, judged by
    the mode bits of the path and each ancestor (ACLs are not consulted: a false "no" only costs
    a descriptor)."""
    try:
        chain = [path, *path.parents]
        for index, node in enumerate(chain):
            st = node.stat()
            need = stat.S_IXOTH | (stat.S_IROTH if index == 0 and stat.S_ISDIR(st.st_mode) else 0)
            if st.st_uid == uid:
                bits = (st.st_mode >> 6) & 0o7
            elif st.st_gid == gid:
                bits = (st.st_mode >> 3) & 0o7
            else:
                bits = st.st_mode & 0o7
            if bits & need != need:
                return False
    except OSError:
        return False
    return True


@dataclass
class TraversalFds:
    """Directory descriptors kept across the uid switch, and the names they give."""

    names: dict[Path, Path] = field(default_factory=dict)
    """original directory -> /proc/self/fd/N"""

    def reach(self, path: Path) -> Path:
        """The name by which the confined worker reaches `path` (unchanged if it needs none)."""
        best: Path | None = None
        for root in self.names:
            if (path == root or path.is_relative_to(root)) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        if best is None:
            return path
        return self.names[best].joinpath(path.relative_to(best))


def open_traversal_fds(roots: Iterable[Path], uid: int, gid: int) -> TraversalFds:
    """Open an O_PATH descriptor for every directory root that uid/gid could not traverse."""
    fds = TraversalFds()
    for root in roots:
        if root.is_dir() and not traversable_by(root, uid, gid):
            # Not O_CLOEXEC-sensitive (the worker never execs) but kept close-on-exec anyway.
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.names[root] = Path(f"/proc/self/fd/{fd}")
    return fds


def _remap_entry(entry: str, fds: TraversalFds) -> str:
    if not entry:
        return entry
    try:
        path = Path(entry).resolve()
    except OSError:
        return entry
    reached = fds.reach(path)
    return entry if reached == path else str(reached)


def redirect_imports(fds: TraversalFds, modules: Mapping[str, object] | None = None) -> int:
    """Point `sys.path` and every loaded package's `__path__` at the reachable names, so later
    imports go through the descriptors. Returns how many entries were rewritten."""
    if not fds.names:
        return 0
    changed = 0
    new_path = [_remap_entry(e, fds) for e in sys.path]
    changed += sum(1 for old, new in zip(sys.path, new_path, strict=True) if old != new)
    sys.path[:] = new_path
    for module in list((modules if modules is not None else sys.modules).values()):
        search = getattr(module, "__path__", None)
        # Regular packages carry a plain list (shared with __spec__.submodule_search_locations);
        # namespace packages recompute theirs from sys.path by themselves.
        if isinstance(search, list):
            remapped = [_remap_entry(e, fds) if isinstance(e, str) else e for e in search]
            if remapped != search:
                search[:] = remapped
                changed += 1
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    return changed
