"""Builders for UI extension directories used by the UI frame and bridge tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NONCE = "n0nce-of-the-host-page-AAAA"


def ui_manifest(ext_id: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": ext_id,
        "name": f"Test {ext_id}",
        "version": "1.0.0",
        "kind": "ui",
        "capabilities": ["room.context.read"],
        "entry": "entry.html",
    }
    doc.update(overrides)
    return doc


def make_ui_extension(root: Path, ext_id: str, entry_html: str, *, files: dict[str, str] | None = None,
                      **manifest: Any) -> Path:
    ext_dir = root / ext_id
    ext_dir.mkdir(parents=True)
    (ext_dir / "manifest.json").write_text(json.dumps(ui_manifest(ext_id, **manifest)))
    (ext_dir / "entry.html").write_text(entry_html)
    for name, text in (files or {}).items():
        (ext_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (ext_dir / name).write_text(text)
    return ext_dir
