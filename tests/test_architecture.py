"""The house rules that keep Kumix readable, checked on the source itself.

Layers: core <- matrix, store, extensions <- app <- cli (and web). Imports point downwards
only. Each third-party library that Kumix adapts sits behind one module, or one package
(a home ending in "/") whose modules share that one job.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "kumix"

LAYER_OF = {
    "core": 0,
    "matrix": 1,
    "store": 1,
    "extensions": 1,
    "sdk": 1,
    "app": 2,
    "cli": 3,
    "web": 3,
}
# The SDK is what extension code imports inside a worker; it may use the extension adapters
# it fronts (wasm loader, protocol), and the extension adapters may set its runtime context.
SIDEWAYS_ALLOWED = {("sdk", "extensions"), ("extensions", "sdk")}

ONE_HOME = {
    "nio": {"matrix/client.py"},
    "sqlite3": {"store/database.py"},
    "nh3": {"extensions/sanitize.py"},
    "wasmtime": {"extensions/wasm/"},
    "seccomp": {"extensions/proc/seccomp_filter.py"},
    "pyseccomp": {"extensions/proc/seccomp_filter.py"},
    "landlock": {"extensions/proc/landlock_rules.py"},
    "landlockpy": {"extensions/proc/landlock_rules.py"},
    "keyring": {"store/vault.py"},
    "argon2": {"store/vault.py"},
    "uvloop": {"extensions/proc/eventloop.py"},
    "vodozemac": {"matrix/crypto_primitives.py"},
}


def python_files() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "bundled/extensions" not in p.as_posix()]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_of(path: Path) -> str | None:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else None


def test_imports_point_downwards_only() -> None:
    violations = []
    for path in python_files():
        here = package_of(path)
        if here not in LAYER_OF:
            continue
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "kumix" or len(parts) < 2 or parts[1] not in LAYER_OF:
                continue
            there = parts[1]
            if there == here or (here, there) in SIDEWAYS_ALLOWED:
                continue
            if LAYER_OF[there] >= LAYER_OF[here]:
                violations.append(f"{path.relative_to(SRC)} imports {name}")
    assert violations == []


def test_each_adapted_library_lives_behind_one_module() -> None:
    homes: dict[str, set[str]] = defaultdict(set)
    for path in python_files():
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ONE_HOME:
                homes[top].add(path.relative_to(SRC).as_posix())
    for library, files in homes.items():
        outside = {f for f in files if not any(at_home(f, home) for home in ONE_HOME[library])}
        assert outside == set(), (library, sorted(outside))


def at_home(file: str, home: str) -> bool:
    return file.startswith(home) if home.endswith("/") else file == home


def test_no_grab_bag_modules() -> None:
    for path in SRC.rglob("*.py"):
        assert path.stem not in {"utils", "util", "helpers", "misc", "common"}, path
