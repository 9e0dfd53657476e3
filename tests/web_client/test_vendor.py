"""The vendored front-end packages are exactly the pinned ones (scripts/vendor-web writes them)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK_PATH = ROOT / "src/kumix/web/client/vendor/vendor.lock.json"
VENDOR_DIRS = (ROOT / "src/kumix/web/client/vendor", ROOT / "tests/web_client/vendor")


def lock() -> dict[str, object]:
    doc: dict[str, object] = json.loads(LOCK_PATH.read_text())
    return doc


def pinned_files() -> dict[str, str]:
    packages: dict[str, dict[str, object]] = lock()["packages"]  # type: ignore[assignment]
    out: dict[str, str] = {}
    for meta in packages.values():
        for entry in meta["files"]:  # type: ignore[attr-defined]
            out[entry["path"]] = entry["sha256"]
    return out


def mismatches(root: Path) -> list[str]:
    """Files under `root` (a checkout) that differ from their pin, are missing, or are unpinned."""
    pins = pinned_files()
    bad = [path for path, digest in pins.items()
           if not (root / path).is_file() or hashlib.sha256((root / path).read_bytes()).hexdigest() != digest]
    for directory in VENDOR_DIRS:
        base = root / directory.relative_to(ROOT)
        for file in base.rglob("*"):
            rel = file.relative_to(root).as_posix()
            if file.is_file() and file != root / LOCK_PATH.relative_to(ROOT) and rel not in pins:
                bad.append(f"unpinned: {rel}")
    return sorted(bad)


def test_every_vendored_file_matches_its_pin() -> None:
    assert mismatches(ROOT) == []


def _copy_tree(tmp_path: Path) -> Path:
    for directory in VENDOR_DIRS:
        shutil.copytree(directory, tmp_path / directory.relative_to(ROOT))
    return tmp_path


def test_a_changed_vendored_file_is_caught(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    assert mismatches(copy) == []
    target = copy / "src/kumix/web/client/vendor/purify.js"
    target.write_text(target.read_text().replace("sanitize", "sanitise", 1))
    assert mismatches(copy) == ["src/kumix/web/client/vendor/purify.js"]


def test_an_unpinned_file_in_vendor_is_caught(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    (copy / "src/kumix/web/client/vendor/extra.js").write_text("export {};\n")
    assert mismatches(copy) == ["unpinned: src/kumix/web/client/vendor/extra.js"]


def test_lock_agrees_with_the_npm_pins() -> None:
    package = json.loads((ROOT / "web-tools/package.json").read_text())["devDependencies"]
    npm_lock = json.loads((ROOT / "web-tools/package-lock.json").read_text())["packages"]
    packages: dict[str, dict[str, str]] = lock()["packages"]  # type: ignore[assignment]
    for name, meta in packages.items():
        assert package[name] == meta["version"], f"{name}: web-tools/package.json pins {package[name]}"
        assert npm_lock[f"node_modules/{name}"]["version"] == meta["version"]
        assert npm_lock[f"node_modules/{name}"]["integrity"] == meta["integrity"]
        assert meta["license"], f"{name} has no licence recorded"
    for name, version in package.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"


@pytest.mark.parametrize("path", sorted(p for p in pinned_files() if p.endswith(".js") and "/client/" in p))
def test_vendored_modules_import_only_by_relative_path(path: str) -> None:
    # The page has no import map: a bare specifier would fail to load (or need a CDN).
    text = (ROOT / path).read_text()
    specifiers = re.findall(r"""\bfrom\s*["']([^"']+)["']""", text)
    assert all(s.startswith("./") for s in specifiers), specifiers
    assert "sourceMappingURL" not in text
    # A browser has no Node globals: a leftover `process.env` throws when the code runs.
    assert not re.search(r"\bprocess\.env\b", text)
