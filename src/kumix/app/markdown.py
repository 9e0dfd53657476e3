"""Markdown for outgoing messages, rendered by the `markdown-renderer` proc extension.

The extension runs in the governed host (policy, confinement, limits), so a message's
HTML never comes from code running inside Kumix itself. When the host cannot run it
(disabled, denied, `confinement_unavailable` under strict without OS confinement…), the
session sends plain text: never unsanitized HTML (`Session.render` sanitizes again).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.matrix_session import MarkdownRenderer
from kumix.app.settings import Settings
from kumix.core.errors import ProtocolError

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


@contextlib.asynccontextmanager
async def extension_renderer(
    extensions: ExtensionService | None, settings: Settings
) -> AsyncIterator[MarkdownRenderer | None]:
    """Open the governed extension host for the session's lifetime and yield a renderer.

    `extensions` is None when the extension system itself cannot be loaded (for example an
    invalid policy file): messages then go out as plain text rather than not at all."""
    if extensions is None:
        log.info("extension system unavailable; sending plain text")
        yield None
        return
    async with ExtensionCaller(extensions, settings) as caller:
        yield renderer_for(caller)
