"""Finds user-visible text written into htm templates instead of taken from the catalog."""

from __future__ import annotations

import re

VISIBLE_ATTRS = ("aria-label", "aria-description", "aria-placeholder", "title", "placeholder", "alt", "label")
_HOLE = "\x00"
_LETTER = re.compile(r"[^\W\d_]")
_ENTITY = re.compile(r"&#?\w+;")
_ATTR = re.compile(r"\b(" + "|".join(VISIBLE_ATTRS) + r")\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\x00]+)")


def _skip_string(src: str, i: int) -> int:
    quote = src[i]
    i += 1
    while i < len(src) and src[i] != quote:
        i += 2 if src[i] == "\\" else 1
    return i + 1


def _code(src: str, i: int, out: list[str], stop: str | None) -> int:
    """Walk JavaScript from i up to an unmatched `stop` ('}' of a ${...}); collect templates."""
    depth = 0
    while i < len(src):
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i) % (len(src) + 1) if "\n" in src[i:] else len(src)
        elif src.startswith("/*", i):
            i = src.find("*/", i + 2) + 2 if "*/" in src[i + 2:] else len(src)
        elif c in "\"'":
            i = _skip_string(src, i)
        elif c == "`":
            tagged = src[max(0, i - 4):i] == "html"
            i = _template(src, i + 1, out if tagged else None, out)
        elif c == "{":
            depth += 1
            i += 1
        elif c == "}":
            if depth == 0 and stop == "}":
                return i + 1
            depth -= 1
            i += 1
        else:
            i += 1
    return i


def _template(src: str, i: int, sink: list[str] | None, out: list[str]) -> int:
    parts: list[str] = []
    start = i
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
        elif c == "`":
            parts.append(src[start:i])
            if sink is not None:
                sink.append(_HOLE.join(parts))
            return i + 1
        elif src.startswith("${", i):
            parts.append(src[start:i])
            i = _code(src, i + 2, out, "}")
            start = i
        else:
            i += 1
    return i


def hard_coded(src: str) -> list[str]:
    """Text and visible attribute values in html`...` templates that contain letters."""
    templates: list[str] = []
    _code(src, 0, templates, None)
    found: list[str] = []
    for markup in templates:
        for tag in re.finditer(r"<[^<>]*>", markup):
            for attr in _ATTR.finditer(tag.group(0)):
                if _LETTER.search(_ENTITY.sub("", attr.group(2))):
                    found.append(f"{attr.group(1)}={attr.group(2)}")
        text = re.sub(r"<[^<>]*>", _HOLE, markup)
        for piece in text.split(_HOLE):
            piece = _ENTITY.sub("", piece).strip()
            if _LETTER.search(piece):
                found.append(piece)
    return found
