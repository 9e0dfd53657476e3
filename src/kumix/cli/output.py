"""How commands print: JSON documents for scripts, aligned text for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from kumix.core.errors import BadRequest, KumixError

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any, TextIO


def emit_json(doc: Any, stream: TextIO | None = None) -> None:
    """ASCII-only JSON: names from disk may hold C1 controls or bidi overrides, which must
    not reach a terminal raw, or undecodable bytes (surrogate escapes), which a strict UTF-8
    stdout cannot encode at all. As \\u escapes every JSON reader gets the same strings."""
    out = stream or sys.stdout
    out.write(json.dumps(doc, indent=2, ensure_ascii=True, sort_keys=False) + "\n")


MAX_ERROR_CHARS = 2_000


HINTS = {
    "unauthorized": "log in with `kumix login`",
    "disabled": "enable it with `kumix ext enable ID`",
    "not_granted": "grant it with `kumix ext grant ID CAPABILITY` (details: missing)",
    "reload_required": "reload it with `kumix ext disable ID` and `kumix ext enable ID`",
    "circuit_open": "retry later, or re-enable it with `kumix ext enable ID`",
}
"""The command to type, which the application core's messages never name (each front end
has its own way of doing it); keyed by code, or by code and `details.reason`."""

REASON_HINTS = {
    ("bad_request", "logged_in"): "run `kumix logout` first, or use another --data-dir",
}


def hint_for(error: KumixError) -> str | None:
    if error.code == "state_busy" and "holder" in error.details:
        return "`kumix send` hands a text message to it"
    reason = error.details.get("reason")
    if isinstance(reason, str) and (error.code, reason) in REASON_HINTS:
        return REASON_HINTS[(error.code, reason)]
    return HINTS.get(error.code)


def emit_error(error: KumixError, *, as_json: bool) -> None:
    hint = hint_for(error)
    if as_json:
        body = error.to_dict()
        if hint is not None:
            body["message"] = f"{body['message']} ({hint})"
        emit_json({"error": body})
    else:
        # Messages quote paths and names found on disk: strip what could drive the terminal.
        message = printable(error.message, MAX_ERROR_CHARS)
        if hint is not None:
            message = f"{message} ({hint})"
        sys.stderr.write(f"kumix: error: {message} [{error.code}]\n")


EXIT_USAGE = 2


def usage_error(prog: str, message: str, *, as_json: bool) -> int:
    """A usage error found after parsing (a rule argparse cannot express): the same output
    as argparse's own, so scripts see one behaviour: the text on stderr, with --json also a
    `bad_request` error as JSON on stdout, and exit code 2."""
    if as_json:
        emit_error(BadRequest(f"{prog}: {message}"), as_json=True)
    sys.stderr.write(f"{prog}: error: {printable(message, MAX_ERROR_CHARS)}\n")
    return EXIT_USAGE


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
