"""How commands print: JSON documents for scripts, aligned text for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from kumix.core.errors import KumixError


def emit_json(doc: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def emit_error(error: KumixError, *, as_json: bool) -> None:
    if as_json:
        emit_json({"error": error.to_dict()})
    else:
        sys.stderr.write(f"kumix: error: {error.message} [{error.code}]\n")


def emit_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sys.stdout.write(line.rstrip() + "\n")
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def printable(text: str, limit: int = 200) -> str:
    """Strip control characters from text that came from disk before echoing it to a terminal."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
