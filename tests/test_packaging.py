"""The wheel carries everything Kumix needs at run time: bundled extensions, policies, schemas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_wheel_ships_bundled_extensions_policies_and_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(REPO_ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    wheels = list(tmp_path.glob("kumix-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    expected = {
        "kumix/py.typed",
        "kumix/bundled/policies/strict.json",
        "kumix/bundled/policies/dev.json",
        "kumix/extensions/schemas/manifest.schema.json",
        "kumix/extensions/schemas/policy.schema.json",
    }
    for ext_dir in (REPO_ROOT / "src/kumix/bundled/extensions").glob("*/*"):
        if (ext_dir / "manifest.json").exists():
            rel = ext_dir.relative_to(REPO_ROOT / "src")
            expected.add(f"{rel}/manifest.json")
    assert expected <= names, sorted(expected - names)
    assert not any("__pycache__" in n for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kumix = kumix.cli.entry:run" in zipfile.ZipFile(wheels[0]).read(entry_points).decode()
