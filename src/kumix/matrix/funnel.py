"""The one funnel every call into matrix-nio passes through (as nio's own `_send` is for
its HTTP requests): a deadline, transport failures mapped to `Unavailable` (retryable),
nio's local errors to `BadRequest`, and error responses to the Kumix error a caller can
act on. `call` does all of it; `guard` only the first part, for the few calls whose
response needs a look before it is judged (login, key import).

tests/test_architecture.py checks that no module of `kumix.matrix` awaits nio directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import nio

from kumix.core.errors import BadRequest, Forbidden, NotFound, Unauthorized, Unavailable

REQUEST_TIMEOUT_S = 30.0
"""Per request (except long-polling sync and media): a frozen homeserver is a failure to
retry, not a reason to hang forever."""

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionError,
    json.JSONDecodeError,
)


def raise_for(resp: Any, action: str, *, login: bool = False) -> None:
    """Map a nio error response onto the Kumix error a caller can act on."""
    if not isinstance(resp, nio.ErrorResponse):
        return
    errcode = str(resp.status_code or "")
    transport = getattr(resp, "transport_response", None)
    http_status = int(getattr(transport, "status", 0) or 0)
    message = f"{action}: {resp.message or errcode or 'error'}"
    if http_status and not errcode:
        # No Matrix error body: a web server, a proxy or a wrong path answered, and nio's own
        # text ("unknown error") tells the user nothing.
        message = (f"{action}: the server answered HTTP {http_status} without a Matrix error; "
                   "check that the homeserver URL points at a Matrix homeserver")
    details: dict[str, Any] = {"errcode": errcode, "status": http_status}
    if http_status == 429 or errcode == "M_LIMIT_EXCEEDED":
        details["retry_after_ms"] = resp.retry_after_ms
        raise Unavailable(message, details=details)
    if http_status >= 500 or (http_status == 0 and not errcode.startswith("M_")):
        raise Unavailable(message, details=details)
    if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED") or (
        login and errcode == "M_FORBIDDEN"
    ):
        raise Unauthorized(message, details=details)
    if errcode == "M_FORBIDDEN":
        raise Forbidden(message, details=details)
    if errcode == "M_NOT_FOUND" or http_status == 404:
        raise NotFound(message, details=details)
    raise BadRequest(message, details=details)


async def guard(awaitable: Awaitable[T], action: str, timeout: float | None = REQUEST_TIMEOUT_S) -> T:
    """Run one nio call; transport failures become `Unavailable` (retryable)."""
    try:
        if timeout is None:
            return await awaitable
        async with asyncio.timeout(timeout):
            return await awaitable
    except TRANSIENT_ERRORS as exc:
        raise Unavailable(f"{action}: homeserver unreachable ({type(exc).__name__})") from None
    except nio.LocalProtocolError as exc:
        raise BadRequest(f"{action}: {exc}") from None
    except nio.SendRetryError as exc:
        raise Unavailable(f"{action}: {exc}") from None




async def raw_json(client: nio.AsyncClient, method: str, path: str, body: dict[str, Any] | None,
                   action: str) -> tuple[int, Any, Any]:
    """One authenticated JSON request to an endpoint nio has no call for (cross-signing,
    secret storage, key backup): the HTTP status, the parsed body (`{}` when it is not
    JSON) and the transport response, for the caller to judge."""
    response = await guard(
        client.send(method, path, None if body is None else json.dumps(body),
                    headers={"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}),
        action,
    )
    async with response:
        status = int(response.status)
        try:
            parsed = await guard(response.json(content_type=None), action)
        except Unavailable:
            parsed = {}
    return status, parsed, response


async def call(awaitable: Awaitable[T], action: str, *, timeout: float | None = REQUEST_TIMEOUT_S,
               login: bool = False) -> T:
    """Run one nio request and judge its response: the response when it is not an error,
    else the matching Kumix error, raised."""
    resp = await guard(awaitable, action, timeout)
    raise_for(resp, action, login=login)
    return resp


async def close(client: nio.AsyncClient) -> None:
    """Close nio's HTTP session (no request: nothing to judge)."""
    await client.close()
