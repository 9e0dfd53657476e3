"""The browser client's own preferences (theme, language), kept in the data directory.

Not Matrix account data: they belong to this Kumix installation's page. Written
atomically and 0600 like every other file of the data directory.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from kumix.core.errors import BadRequest
from kumix.fs.private_file import write_private

FILE_NAME = "client-settings.json"
THEMES = ("system", "light", "dark")
DEFAULTS = {"theme": "system", "language": "en"}
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}")


def load(data_dir: Path) -> dict[str, str]:
    doc = dict(DEFAULTS)
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads((data_dir / FILE_NAME).read_text())
        if isinstance(stored, dict):
            doc.update({k: v for k, v in stored.items() if k in doc and isinstance(v, str)})
    return doc


def update(data_dir: Path, *, theme: str | None = None, language: str | None = None) -> dict[str, str]:
    doc = load(data_dir)
    if theme is not None:
        if theme not in THEMES:
            raise BadRequest(f"theme must be one of {', '.join(THEMES)}")
        doc["theme"] = theme
    if language is not None:
        if not _LANGUAGE.fullmatch(language):
            raise BadRequest("language must be a BCP 47 tag such as en or pt-BR")
        doc["language"] = language
    write_private(data_dir / FILE_NAME, json.dumps(doc))
    return doc
