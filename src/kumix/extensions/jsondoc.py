"""Strict, bounded reading of the JSON documents Kumix accepts from disk (manifests, policies).

Hostile files must end in a typed error, never a traceback or a hang: size is capped before
reading, bytes must be UTF-8, duplicate keys and non-finite numbers are refused (two readers
could disagree on them), nesting depth is bounded, and no string may carry control
characters (NUL, newlines), which would otherwise slip through regex anchors.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    import hashlib
    from collections.abc import Callable
    from typing import Any

    # Imported where documents are validated: its import alone costs a command-line
    # start (`kumix --version`) ~90 ms.
    import jsonschema

SCHEMAS_DIR = Path(__file__).parent / "schemas"
"""The JSON Schemas and the digests of the shipped documents, read as plain files (see
`kumix.bundled.BUNDLED_DIR` for why not through importlib.resources)."""

MAX_DOCUMENT_BYTES = 64 * 1024
"""Manifests and policies are a few hundred bytes; 64 KiB leaves room and bounds parsing."""

MAX_DEPTH = 16
"""Neither schema nests deeper than 4; 16 refuses pathological input long before recursion."""


@dataclass(frozen=True)
class DocumentProblem:
    """Where a document is wrong: file, JSON pointer (RFC 6901) and a readable reason."""

    file: str
    pointer: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "pointer": self.pointer, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.file}: {self.pointer or '/'}: {self.reason}"


class DocumentError(Exception):
    """Raised by this module; callers turn it into their own typed Kumix error."""

    def __init__(self, problem: DocumentProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def json_pointer(parts: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    out = []
    for part in parts:
        out.append("/" + str(part).replace("~", "~0").replace("/", "~1"))
    return "".join(out)


FORBIDDEN_CHARACTERS = frozenset(
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)
"""C0 and C1 controls and DEL (NUL, newline, ESC, CSI U+009B, NEL U+0085) and the
bidirectional and line-separator formatting characters: none belongs in a manifest or
policy, and each can reorder or drive what a terminal or a page shows. The schemas carry
the same set (`$defs/plainText`); keep both in step."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def read_document_bytes(path: Path, *, display: str | None = None) -> bytes:
    """Read a regular file of bounded size without following a final symlink."""
    name = display or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DocumentError(DocumentProblem(name, "", "file does not exist")) from None
    except OSError as exc:
        raise DocumentError(DocumentProblem(name, "", f"cannot open: {exc.strerror}")) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(DocumentProblem(name, "", "not a regular file"))
        if info.st_size > MAX_DOCUMENT_BYTES:
            raise DocumentError(
                DocumentProblem(name, "", f"file is {info.st_size} bytes; limit is {MAX_DOCUMENT_BYTES}")
            )
        data = os.read(fd, MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            raise DocumentError(DocumentProblem(name, "", f"file exceeds {MAX_DOCUMENT_BYTES} bytes"))
        return data
    finally:
        os.close(fd)


def _check_tree(value: Any, path: list[Any], name: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DocumentError(DocumentProblem(name, json_pointer(path), f"nested deeper than {MAX_DEPTH}"))
    if isinstance(value, str):
        if not FORBIDDEN_CHARACTERS.isdisjoint(value):
            raise DocumentError(
                DocumentProblem(
                    name,
                    json_pointer(path),
                    "control characters (and bidirectional or line-separator marks) are not allowed in strings",
                )
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_tree(key, [*path, key], name, depth + 1)
            _check_tree(item, [*path, key], name, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_tree(item, [*path, index], name, depth + 1)


def _parse_number(text: str) -> int | float:
    """JSON Schema counts 5000.0 and 1e3 as integers, so the schemas accept them where an
    integer is required; turn such numbers into int so no float limit reaches the runtime.
    Every number in a manifest or policy is an integer, so nothing else is lost."""
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_document(data: bytes, *, display: str) -> Any:
    """Decode strict JSON from bytes; every failure is a DocumentError naming the file."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(DocumentProblem(display, "", f"document exceeds {MAX_DOCUMENT_BYTES} bytes"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            DocumentProblem(display, "", f"not valid UTF-8 (byte {exc.start})")
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        doc = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_float=_parse_number
        )
    except RecursionError:
        raise DocumentError(DocumentProblem(display, "", "nesting is too deep")) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(
            DocumentProblem(display, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        ) from None
    except ValueError as exc:
        raise DocumentError(DocumentProblem(display, "", f"invalid JSON: {exc}")) from None
    _check_tree(doc, [], display)
    return doc


SHIPPED_VALID_FILE = "shipped-valid.json"
"""Digests of the documents shipped with Kumix (bundled manifests and policies) that
conform to their schema, checked when they are written (tests/test_cli_governance.py
fails when one is missing or stale)."""


def document_digest(schema_name: str, doc: Any) -> str:
    """Identifies a parsed document together with the exact schema it is judged by."""
    # Imported here, not with the module: a proc worker's manifest code imports this module
    # and never judges a document (forkserver.py says ready sooner).
    sha256 = _sha256()
    schema = (SCHEMAS_DIR / schema_name).read_bytes()
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return sha256(sha256(schema).digest() + canonical).hexdigest()


def _sha256() -> Callable[[bytes], hashlib._Hash]:
    """SHA-256 without loading OpenSSL where the interpreter has its own implementation:
    `hashlib` loads libcrypto on import (~6 ms, a large part of `kumix policy show`), for
    one digest of a few kilobytes. Both compute the same standard SHA-256."""
    for name in ("_sha256", "_sha2"):  # Python 3.11; 3.12 renamed it
        try:
            builtin = importlib.import_module(name)
        except ImportError:
            continue
        sha256: Callable[[bytes], hashlib._Hash] = builtin.sha256
        return sha256
    from hashlib import sha256 as from_hashlib  # a build without the built-in implementations

    return from_hashlib


@cache
def _shipped_valid() -> frozenset[str]:
    path = SCHEMAS_DIR / SHIPPED_VALID_FILE
    try:
        digests = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return frozenset()
    return frozenset(d for d in digests if isinstance(d, str)) if isinstance(digests, list) else frozenset()


def shipped_and_valid(schema_name: str, doc: Any) -> bool:
    """True for a document identical to one Kumix ships, already known to conform: judging
    it again would mean importing jsonschema (~90 ms of every `kumix ext list`). Any other
    document, however small the difference, is validated."""
    return document_digest(schema_name, doc) in _shipped_valid()


def load_schema(name: str) -> dict[str, Any]:
    text = (SCHEMAS_DIR / name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_problem(validator: jsonschema.protocols.Validator, doc: Any, display: str) -> DocumentProblem | None:
    """The most relevant schema violation, or None when the document conforms."""
    import jsonschema

    errors = list(validator.iter_errors(doc))
    if not errors:
        return None
    best = jsonschema.exceptions.best_match(errors)
    # best_match prefers shallow errors; for if/then branches descend to the concrete cause.
    while best.context:
        best = jsonschema.exceptions.best_match(best.context)
    message = best.message
    if len(message) > 200:
        # The message quotes the offending value, which may be huge or hostile.
        message = message[:200] + "…"
    description = best.schema.get("description") if isinstance(best.schema, dict) else None
    if best.validator == "not" and description:
        message = str(description)
    elif best.validator == "pattern" and description:
        message = f"{message} ({description})"
    if len(message) > 400:
        message = message[:400] + "…"
    return DocumentProblem(display, json_pointer(list(best.absolute_path)), message)
