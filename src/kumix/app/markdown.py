"""Markdown for outgoing messages, rendered by the `markdown-renderer` proc extension.

The extension runs in the governed host (policy, confinement, limits), so a message's
HTML never comes from code running inside Kumix itself. When the host cannot run it
(disabled, denied, `confinement_unavailable` under strict without OS confinement…), the
session sends plain text: never unsanitized HTML (`Session.render` sanitizes again).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from kumix.core.errors import ProtocolError

if TYPE_CHECKING:
    from kumix.app.matrix_session import MarkdownRenderer

log = logging.getLogger(__name__)

EXTENSION_ID = "markdown-renderer"
METHOD = "render.markdown"


class ExtensionCalls(Protocol):
    async def call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any: ...


async def render_with(caller: ExtensionCalls, source: str) -> str:
    """Markdown source to (not yet sanitized) HTML through the governed extension."""
    result = await caller.call(EXTENSION_ID, METHOD, {"source": source})
    if not isinstance(result, dict) or not isinstance(result.get("html"), str):
        raise ProtocolError(f"{EXTENSION_ID} answered {METHOD} without an html string")
    return str(result["html"])


def renderer_for(caller: ExtensionCalls) -> MarkdownRenderer:
    async def render(source: str) -> str:
        return await render_with(caller, source)

    return render
