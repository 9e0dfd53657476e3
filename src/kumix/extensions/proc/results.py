"""What a proc method may return: per-method validators the host applies to every result.

A worker's result is untrusted data. Before any caller sees it, the host checks it against
the contract of its method and sanitizes every HTML string (`kumix.extensions.sanitize`).
A result that breaks its contract fails the call with `protocol_error`; the worker keeps
running, since the bytes themselves were well-formed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kumix.core.errors import ProtocolError
from kumix.extensions.sanitize import sanitize_html

TOKEN_NAME = re.compile(r"[a-z0-9-]{1,64}")
TOKEN_VALUE_FORBIDDEN = re.compile(r"[;{}<>\\\x00-\x1f\x7f]")
"""`;{}` would end a CSS declaration or block and `<>` an enclosing <style>; a backslash
starts a CSS escape that could spell any of them, and control characters have no use here."""
TOKEN_VALUE_FORBIDDEN_FUNCTION = re.compile(
    r"(?:url|src|image|image-set|cross-fade|element|expression|paint)\(|/\*|\*/", re.IGNORECASE
)
"""A theme only colours and spaces the client. CSS functions that fetch or embed a resource
(`url(https://tracker/…)` is a tracking pixel by another name, the reason images are not
allowed in sanitized HTML either), IE's `expression(` and comment markers (an unclosed `/*`
swallows every declaration that follows it in the generated stylesheet) have no place in a
token value. Backslashes are refused already, so no escape can spell these differently;
`-webkit-image-set(` contains `image-set(`."""
MAX_TOKENS_PER_THEME = 256
"""The default theme has a few dozen tokens; a few hundred still covers a rich theme."""
MAX_TOKEN_VALUE_CHARS = 200
"""Long enough for a font stack or a gradient, too short to smuggle a stylesheet."""
THEME_MODES = ("light", "dark")

Validator = Callable[[str, Any], Any]


def _require_html(method: str, result: Any) -> dict[str, Any]:
    if not isinstance(result, dict) or set(result) != {"html"} or not isinstance(result["html"], str):
        raise ProtocolError(f"{method} must return {{'html': str}}")
    return {"html": sanitize_html(result["html"])}


def _theme_tokens(method: str, result: Any) -> dict[str, dict[str, str]]:
    if not isinstance(result, dict) or set(result) != set(THEME_MODES):
        raise ProtocolError(f"{method} must return exactly the keys {list(THEME_MODES)}")
    checked: dict[str, dict[str, str]] = {}
    for mode in THEME_MODES:
        tokens = result[mode]
        if not isinstance(tokens, dict):
            raise ProtocolError(f"{method}: {mode} must be an object of tokens")
        if len(tokens) > MAX_TOKENS_PER_THEME:
            raise ProtocolError(f"{method}: {mode} has {len(tokens)} tokens; at most {MAX_TOKENS_PER_THEME}")
        for name, value in tokens.items():
            if TOKEN_NAME.fullmatch(name) is None:
                raise ProtocolError(f"{method}: token name {name[:80]!r} is not [a-z0-9-]{{1,64}}")
            if not isinstance(value, str) or len(value) > MAX_TOKEN_VALUE_CHARS:
                raise ProtocolError(f"{method}: token {name} must be a string of at most {MAX_TOKEN_VALUE_CHARS} chars")
            if TOKEN_VALUE_FORBIDDEN.search(value):
                raise ProtocolError(f"{method}: token {name} contains a forbidden character")
            if TOKEN_VALUE_FORBIDDEN_FUNCTION.search(value):
                raise ProtocolError(f"{method}: token {name} loads a resource or opens a comment")
        checked[mode] = dict(tokens)
    return checked


VALIDATORS: dict[str, Validator] = {
    "render.markdown": _require_html,
    "render.mermaid": _require_html,
    "theme.tokens.provide": _theme_tokens,
}


def check_result(method: str, result: Any) -> Any:
    """The result as a caller may see it, or ProtocolError."""
    validator = VALIDATORS.get(method)
    if validator is not None:
        return validator(method, result)
    # Methods without a contract still never hand out unsanitized HTML under the usual key,
    # at any depth: `{"items": [{"html": …}]}` reaches a page as surely as a top-level key.
    return _sanitize_html_keys(result)


def _sanitize_html_keys(result: Any) -> Any:
    """`result` with every string under a key named `html` sanitized, at any depth. Iterative:
    a hostile result may nest as deep as the decoder allows, deeper than Python recursion."""
    root: list[Any] = [result]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        value = parent[key]
        if isinstance(value, dict):
            copy = dict(value)
            parent[key] = copy
            for name, item in copy.items():
                if name == "html" and isinstance(item, str):
                    copy[name] = sanitize_html(item)
                elif isinstance(item, dict | list):
                    stack.append((copy, name))
        elif isinstance(value, list):
            copy_list = list(value)
            parent[key] = copy_list
            stack.extend((copy_list, index) for index, item in enumerate(copy_list) if isinstance(item, dict | list))
    return root[0]
