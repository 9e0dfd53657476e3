"""Markdown renderer: CommonMark with tables, strikethrough and linkify, to HTML.

Raw HTML in the source is escaped, not passed through; the host sanitizes the result
again anyway before any caller sees it.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

from kumix.core.errors import BadRequest
from kumix.sdk import proc

_md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False}).enable(
    ["table", "strikethrough", "linkify"]
)


@proc.handler("render.markdown")
def render_markdown(params: dict[str, Any]) -> dict[str, Any]:
    source = params.get("source")
    if not isinstance(source, str) or set(params) != {"source"}:
        raise BadRequest("params must be {'source': str}")
    return {"html": _md.render(source)}
