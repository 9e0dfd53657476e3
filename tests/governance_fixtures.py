"""Builders for extension directories and policy files used by the governance tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def proc_manifest(ext_id: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": ext_id,
        "name": f"Test {ext_id}",
        "version": "1.0.0",
        "kind": "proc",
        "capabilities": ["demo.echo"],
        "entry": "worker.py",
        "methods": {"demo.echo": "demo.echo"},
    }
    doc.update(overrides)
    return doc


def make_extension(root: Path, ext_id: str, manifest: dict[str, Any] | bytes | None = None,
                   *, entry: str = "worker.py", dir_name: str | None = None) -> Path:
    ext_dir = root / (dir_name or ext_id)
    ext_dir.mkdir(parents=True)
    doc = proc_manifest(ext_id) if manifest is None else manifest
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    (ext_dir / "manifest.json").write_bytes(data)
    (ext_dir / entry).write_text("# worker\n")
    return ext_dir


def write_policy(path: Path, **overrides: Any) -> Path:
    doc: dict[str, Any] = {"name": "custom", "capabilities": ["render.markdown"]}
    doc.update(overrides)
    path.write_text(json.dumps(doc))
    return path
