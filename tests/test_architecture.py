"""The house rules that keep Kumix readable, checked on the source itself.

Layers: core (and fs) <- matrix, store, extensions (adapters) <- app <- cli, web. Imports
point downwards only; front ends import only `kumix.app` and `kumix.core`; adapters do not
import each other; each third-party library that Kumix adapts sits behind one module
(or one package, a home ending in "/"); every
declared dependency is used and every imported one declared. docs/architecture.md explains
each rule.
A library's home is one module, or one package (a home ending in "/") whose modules share
that one job.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from importlib import metadata
from pathlib import Path

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "kumix"

LAYER_OF = {
    "core": 0,
    "fs": 0,
    "matrix": 1,
    "store": 1,
    "extensions": 1,
    "sdk": 1,
    "app": 2,
    "cli": 3,
    "web": 3,
}
ADAPTERS = {"matrix", "store", "extensions", "sdk"}
FRONT_ENDS = {"cli", "web"}
# The SDK is what extension code imports inside a worker; it may use the extension adapters
# it fronts (wasm loader, protocol), and the worker runtime may set its runtime context.
# `kumix serve` is a CLI command that starts the web front end.
SIDEWAYS_ALLOWED = {("sdk", "extensions"), ("extensions/proc/worker.py", "sdk"), ("cli", "web")}

ONE_HOME = {
    # Only the Matrix adapter speaks nio; inside it, every request goes through the funnel.
    "nio": {"matrix/"},
    "aiohttp": {"matrix/funnel.py"},
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
    "html5lib": {"extensions/ui/html_document.py"},
    "starlette": {"web/routes.py"},
    "uvicorn": {"web/server.py"},
    "vodozemac": {"matrix/crypto_primitives.py"},
    # The wire format: the host's protocol module is the only msgspec user on the host side.
    "msgspec": {"extensions/proc/protocol.py"},
}

USED_INDIRECTLY = {
    # markdown-it-py imports it itself when the renderer enables linkify.
    "linkify-it-py": "markdown_it's linkify rule",
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


def rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def kumix_imports(path: Path) -> list[tuple[str, str]]:
    """(imported module, its top-level package under kumix) for each `kumix.X…` import."""
    found = []
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "kumix" and len(parts) >= 2:
            found.append((name, parts[1]))
    return found


def test_imports_point_downwards_only() -> None:
    violations = []
    for path in python_files():
        here = package_of(path)
        if here not in LAYER_OF:
            continue
        for name, there in kumix_imports(path):
            if there not in LAYER_OF or there == here:
                continue
            if (here, there) in SIDEWAYS_ALLOWED or (rel(path), there) in SIDEWAYS_ALLOWED:
                continue
            if LAYER_OF[there] >= LAYER_OF[here]:
                violations.append(f"{rel(path)} imports {name}")
    assert violations == []


def test_front_ends_import_only_the_application_core_and_core_models() -> None:
    violations = []
    for path in python_files():
        here = package_of(path)
        if here not in FRONT_ENDS:
            continue
        for name, there in kumix_imports(path):
            if there not in {"app", "core", here} and name != "kumix" and (here, there) not in SIDEWAYS_ALLOWED:
                violations.append(f"{rel(path)} imports {name}")
    assert violations == []


def test_adapters_do_not_import_each_other() -> None:
    violations = []
    for path in python_files():
        here = package_of(path)
        if here not in ADAPTERS:
            continue
        for name, there in kumix_imports(path):
            if there in ADAPTERS and there != here and (here, there) not in SIDEWAYS_ALLOWED \
                    and (rel(path), there) not in SIDEWAYS_ALLOWED:
                violations.append(f"{rel(path)} imports {name}")
    assert violations == []


def test_the_host_side_of_the_proc_package_does_not_import_the_authors_sdk() -> None:
    """The SDK is the worker's side of the wire; the host side (everything in
    extensions/proc except the worker runtime) must not depend on it."""
    violations = [
        f"{rel(path)} imports {name}"
        for path in (SRC / "extensions" / "proc").glob("*.py")
        if path.name != "worker.py"
        for name, there in kumix_imports(path)
        if there == "sdk"
    ]
    assert violations == []


def _home_matches(file: str, homes: set[str]) -> bool:
    return any(file == h or (h.endswith("/") and file.startswith(h)) for h in homes)


def test_each_adapted_library_lives_behind_one_module() -> None:
    homes: dict[str, set[str]] = defaultdict(set)
    for path in python_files():
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ONE_HOME:
                homes[top].add(rel(path))
    for library, files in homes.items():
        assert all(_home_matches(f, ONE_HOME[library]) for f in files), (library, sorted(files))


def _awaits_nio_directly(node: ast.AST) -> bool:
    """`await self._nio.x(...)` or `await n.x(...)` (n = self._nio) outside the funnel."""
    if not isinstance(node, ast.Await) or not isinstance(node.value, ast.Call):
        return False
    func = node.value.func
    while isinstance(func, ast.Attribute):
        if func.attr == "_nio":
            return True
        func = func.value
    return isinstance(func, ast.Name) and func.id in {"n", "nio"}


def test_every_call_into_nio_passes_through_the_funnel() -> None:
    violations = []
    for path in (SRC / "matrix").rglob("*.py"):
        if path.name == "funnel.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _awaits_nio_directly(node):
                violations.append(f"{rel(path)}:{node.lineno}")
    assert violations == []


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _declared() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {_normalise(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _used_distributions() -> dict[str, set[str]]:
    """Installed distributions whose top-level modules Kumix imports (bundled workers and
    the worker template's preloaded modules included: they run in Kumix's environment)."""
    from kumix.extensions.proc.preload import PRELOAD_MODULES

    by_module = metadata.packages_distributions()
    used: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        for name in imports_of(path):
            modules.setdefault(name.split(".")[0], rel(path))
    for name in PRELOAD_MODULES:
        modules.setdefault(name.split(".")[0], "extensions/proc/preload.py")
    for top, where in modules.items():
        if top in sys.stdlib_module_names or top in {"kumix", "__future__"}:
            continue
        for dist in by_module.get(top, []):
            used[_normalise(dist)].add(where)
    return used


def test_every_declared_dependency_is_used_and_every_imported_one_declared() -> None:
    declared = _declared()
    used = _used_distributions()
    # Optional extras (synapse for the demo, test tools) are imported only by tests.
    assert set(used) - declared == set(), {d: sorted(used[d]) for d in set(used) - declared}
    unused = declared - set(used) - {_normalise(d) for d in USED_INDIRECTLY}
    assert unused == set()


def test_no_grab_bag_modules() -> None:
    for path in SRC.rglob("*.py"):
        assert path.stem not in {"utils", "util", "helpers", "misc", "common"}, path

