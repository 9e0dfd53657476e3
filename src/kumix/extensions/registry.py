"""Discovery: which extensions exist, where, and whether their directory is sound.

Bundled extensions ship in the wheel under `kumix/bundled/extensions/{proc,ui}/<id>/`.
Extra roots hold external (untrusted) extensions, either as `<root>/<id>/` or under
`<root>/{proc,ui}/<id>/`. Every problem with one extension makes that extension `invalid`
with a reason; discovery itself never fails because of what it finds on disk.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kumix.bundled import BUNDLED_DIR
from kumix.core.errors import InvalidManifest
from kumix.extensions.jsondoc import DocumentProblem
from kumix.extensions.manifest import MANIFEST_FILE, Manifest, is_valid_id, load_manifest

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Literal

    Origin = Literal["bundled", "external"]

KIND_DIRS = ("proc", "ui")
MAX_EXTENSIONS_PER_ROOT = 1_000
"""A root with more entries than this is truncated: discovery must stay fast and bounded."""
MAX_FILES_SCANNED = 2_000
"""Symlink scan bound per extension; a bigger tree is itself a reason to refuse it."""


@dataclass(frozen=True)
class ExtensionRecord:
    """One discovered extension directory; `manifest` is None when it is invalid."""

    id: str
    path: Path
    origin: Origin
    manifest: Manifest | None
    problem: DocumentProblem | None = None

    @property
    def valid(self) -> bool:
        return self.manifest is not None

    @property
    def external(self) -> bool:
        return self.origin == "external"


def bundled_root() -> Path:
    return BUNDLED_DIR / "extensions"


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _symlink_problem(ext_dir: Path) -> str | None:
    """Why the tree holds a symlink that is not allowed (one pointing outside the extension
    directory, or a loop), or None.

    The walk is iterative with an explicit stack: os.walk recurses once per directory
    level, so a tree deeper than the recursion limit would crash discovery. Symlinks are
    never followed, and the bound on entries keeps the scan short whatever the shape.
    """
    real_root = ext_dir.resolve()
    scanned = 0
    stack = [ext_dir]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                listing = list(entries)
        except OSError:
            continue  # unreadable or too long a path: nothing below it can be opened either
        for entry in listing:
            scanned += 1
            if scanned > MAX_FILES_SCANNED:
                return f"more than {MAX_FILES_SCANNED} files"
            full = Path(entry.path)
            if entry.is_symlink():
                name = str(full.relative_to(ext_dir))
                try:
                    target = full.resolve()
                except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a loop
                    return f"symlink {name!r} loops"
                if not _inside(target, real_root):
                    return f"symlink {name!r} leaves the extension directory"
                try:
                    os.stat(full)
                except OSError as exc:
                    # Newer Pythons resolve a loop without raising; refuse it the same way.
                    if exc.errno == errno.ELOOP:
                        return f"symlink {name!r} loops"
            elif entry.is_dir(follow_symlinks=False):
                stack.append(full)
    return None


def _check_member(ext_dir: Path, relative: str, manifest_file: str, pointer: str) -> DocumentProblem | None:
    real_root = ext_dir.resolve()
    candidate = ext_dir / relative
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        return DocumentProblem(manifest_file, pointer, f"{relative!r} does not exist")
    if not _inside(resolved, real_root):
        return DocumentProblem(manifest_file, pointer, f"{relative!r} leaves the extension directory")
    if not stat.S_ISREG(resolved.stat().st_mode):
        return DocumentProblem(manifest_file, pointer, f"{relative!r} is not a regular file")
    return None


def inspect_extension_dir(ext_dir: Path, *, origin: Origin, root: Path, expected_kind: str | None) -> ExtensionRecord:
    """Validate one extension directory; never raises for anything found on disk."""
    dir_name = ext_dir.name
    manifest_file = str(ext_dir / MANIFEST_FILE)

    def invalid(pointer: str, reason: str, file: str = manifest_file) -> ExtensionRecord:
        return ExtensionRecord(dir_name, ext_dir, origin, None, DocumentProblem(file, pointer, reason))

    try:
        real = ext_dir.resolve(strict=True)
    except (OSError, RuntimeError):
        return invalid("", "directory cannot be resolved (dangling or looping symlink)", str(ext_dir))
    if not _inside(real, root.resolve()):
        return invalid("", "symlink leaves the extensions root", str(ext_dir))
    if not real.is_dir():
        return invalid("", "not a directory", str(ext_dir))
    try:
        manifest = load_manifest(ext_dir, display=manifest_file)
    except InvalidManifest as exc:
        details = exc.details
        return invalid(str(details.get("pointer", "")), str(details.get("reason", exc.message)))
    if manifest.id != dir_name:
        return invalid("/id", f"id {manifest.id!r} must equal the directory name {dir_name!r}")
    if not is_valid_id(dir_name):
        return invalid("/id", f"directory name {dir_name!r} is not a valid extension id")
    if expected_kind is not None and manifest.kind != expected_kind:
        return invalid("/kind", f"kind {manifest.kind!r} found under the {expected_kind!r} directory")
    problem = _check_member(ext_dir, manifest.entry, manifest_file, "/entry")
    if problem is None:
        for index, module in enumerate(manifest.wasm):
            problem = _check_member(ext_dir, module.path, manifest_file, f"/wasm/{index}/path")
            if problem is not None:
                break
    if problem is not None:
        return ExtensionRecord(dir_name, ext_dir, origin, None, problem)
    symlink_problem = _symlink_problem(ext_dir)
    if symlink_problem is not None:
        return invalid("", symlink_problem, str(ext_dir))
    return ExtensionRecord(manifest.id, ext_dir, origin, manifest)


def _candidates(root: Path, origin: Origin) -> Iterable[tuple[Path, str | None]]:
    try:
        entries = sorted(root.iterdir())[:MAX_EXTENSIONS_PER_ROOT]
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.name in KIND_DIRS and entry.is_dir() and not (entry / MANIFEST_FILE).exists():
            try:
                inner = sorted(entry.iterdir())[:MAX_EXTENSIONS_PER_ROOT]
            except OSError:
                continue
            for ext_dir in inner:
                if not ext_dir.name.startswith(".") and ext_dir.name != "__pycache__":
                    yield ext_dir, entry.name
        elif origin == "external":
            yield entry, None


def discover(extra_roots: Sequence[Path] = (), *, include_bundled: bool = True) -> list[ExtensionRecord]:
    """Every extension in the bundled root and then the extra roots, in that order.

    The first directory to claim an id keeps it; later ones are `invalid` as duplicates,
    so an external extension can never shadow a bundled one.
    """
    found: list[ExtensionRecord] = []
    claimed: dict[str, Path] = {}
    roots: list[tuple[Path, Origin]] = []
    if include_bundled:
        roots.append((bundled_root(), "bundled"))
    roots.extend((Path(r), "external") for r in extra_roots)
    for root, origin in roots:
        for ext_dir, kind in _candidates(root, origin):
            record = inspect_extension_dir(ext_dir, origin=origin, root=root, expected_kind=kind)
            if record.id in claimed:
                record = ExtensionRecord(
                    record.id,
                    ext_dir,
                    origin,
                    None,
                    DocumentProblem(
                        str(ext_dir / MANIFEST_FILE), "/id", f"duplicate id, already provided by {claimed[record.id]}"
                    ),
                )
            else:
                claimed[record.id] = ext_dir
            found.append(record)
    return found
