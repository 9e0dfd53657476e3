"""Markdown for outgoing messages, rendered by the `markdown-renderer` proc extension.

The extension runs in the governed host (policy, confinement, limits), so a message's
HTML never comes from code running inside Kumix itself. When the host cannot run it
(disabled, denied, `confinement_unavailable` under strict without OS confinement…), the
session sends plain text: never unsanitized HTML (`Session.render` sanitizes again).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from kumix.app.matrix_session import MarkdownRenderer
from kumix.core.errors import ProtocolError

log = logging.getLogger(__name__)

EXTENSION_ID = "markdown-renderer"
METHOD = "render.markdown"


class ExtensionCalls(Protocol):
    async def call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any: ...


def renderer_for(caller: ExtensionCalls) -> MarkdownRenderer:
    async def render(source: str) -> str:
        result = await caller.call(EXTENSION_ID, METHOD, {"source": source})
        if not isinstance(result, dict) or not isinstance(result.get("html"), str):
            raise ProtocolError(f"{EXTENSION_ID} answered {METHOD} without an html string")
        return str(result["html"])

    return render


@contextlib.asynccontextmanager
async def extension_renderer(**available: Any) -> AsyncIterator[MarkdownRenderer | None]:
    """Open the extension host's caller, if this Kumix has one, and yield a renderer.

    `available` holds what the caller may need (extension service, settings, policy);
    the constructor takes the ones it names. Without a host, yields None: plain text."""
    try:
        module = importlib.import_module("kumix.app.extension_calls")
        cls = module.ExtensionCaller
        wanted = inspect.signature(cls).parameters
        kwargs = {k: v for k, v in available.items() if k in wanted}
        caller_cm = cls(**kwargs)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        log.info("no extension host for markdown (%s); sending plain text", exc)
        yield None
        return
    async with caller_cm as caller:
        yield renderer_for(caller)
