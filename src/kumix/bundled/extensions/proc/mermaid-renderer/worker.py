"""Mermaid block: escapes diagram source into `<pre class="mermaid">` for a UI-side renderer.

The worker never interprets the diagram; the page's Mermaid renderer does, inside the
sanitized block.
"""

from __future__ import annotations

import html
from typing import Any

from kumix.core.errors import BadRequest
from kumix.sdk import proc


@proc.handler("render.mermaid")
def render_mermaid(params: dict[str, Any]) -> dict[str, Any]:
    source = params.get("source")
    if not isinstance(source, str) or set(params) != {"source"}:
        raise BadRequest("params must be {'source': str}")
    return {"html": f'<pre class="mermaid">{html.escape(source, quote=True)}</pre>'}
