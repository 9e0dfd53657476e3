"""The guard in front of every HTTP request and every WebSocket handshake (pure ASGI).

Starlette's CORS middleware never sees WebSockets and its host middleware knows nothing of
sessions, so one middleware does every check, for both kinds of connection, in this order:

1. `Host` is `127.0.0.1:PORT` or `localhost:PORT`: a page on another name that resolves to
   127.0.0.1 (DNS rebinding) is refused — 403 `forbidden`.
2. `Sec-Fetch-Site: cross-site` is refused: a second layer for browsers that send it — 403.
3. `Origin` is present and equal to the server's own origin on every request but GET/HEAD
   and on every WebSocket upgrade (CSRF, cross-site WebSocket hijacking) — 403.
4. A session: `GET /?token=T` with the launch token opens one (cookie, redirect to `/`);
   anything else without a valid session cookie is 401 `unauthorized`.

Every response, refusals included, gets the header set of `kumix.web.headers`. `Checks`
switches single checks off: only tests do that, to show each attack succeeding without
its check.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

from kumix.web.headers import security_headers
from kumix.web.sessions import Sessions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Checks:
    host: bool = True
    fetch_site: bool = True
    origin: bool = True
    session: bool = True


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, or None (latin-1, as HTTP/1.1 defines it)."""
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


def cookie_value(scope: Scope, name: str) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() != b"cookie":
            continue
        for part in bytes(v).decode("latin-1").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
    return None


class Guard:
    def __init__(self, app: ASGIApp, sessions: Sessions, *, checks: Checks | None = None) -> None:
        self.app = app
        self.sessions = sessions
        self.checks = checks or Checks()
        port = sessions.port
        self.hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            await _refuse(scope, send, status, code, message)
            return
        if kind == "http" and scope["path"] == "/" and scope["method"] in SAFE_METHODS:
            token = _query(scope).get("token")
            if token is not None:
                await self._exchange(scope, send, token)
                return
        if self.checks.session and not self.sessions.valid(cookie_value(scope, self.sessions.cookie)):
            await _refuse(scope, send, 401, "unauthorized",
                          "no session: open the URL that `kumix serve` printed")
            return
        await self.app(scope, receive, _with_headers(send))

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        host = header(scope, b"host")
        if self.checks.host and host not in self.hosts:
            return 403, "forbidden", "this server answers only to 127.0.0.1 and localhost on its own port"
        if self.checks.fetch_site and header(scope, b"sec-fetch-site") == "cross-site":
            return 403, "forbidden", "cross-site requests are refused"
        needs_origin = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if self.checks.origin and needs_origin and header(scope, b"origin") != f"http://{host}":
            return 403, "forbidden", "Origin must be this server's own origin"
        return None

    async def _exchange(self, scope: Scope, send: Send, token: str) -> None:
        if not self.sessions.token_matches(token):
            await _refuse(scope, send, 401, "unauthorized", "wrong token: open the URL that `kumix serve` printed")
            return
        sid = self.sessions.open()
        # 303 to "/": the token leaves the address bar, and the history entry is the bare URL.
        headers = [(b"location", b"/"), (b"set-cookie", self.sessions.set_cookie_header(sid).encode()),
                   (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": security_headers(headers)})
        await send({"type": "http.response.body", "body": b""})


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.http.response.start"):
            message = {**message, "headers": security_headers(list(message.get("headers", [])))}
        await send(message)

    return wrapped


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


REFUSAL_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Kumix</title></head>
<body><h1>Kumix</h1><p>{message}</p></body></html>"""


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if scope["path"].startswith("/api/") or scope["type"] == "websocket":
        body, ctype = error_body(code, message), b"application/json"
    else:
        body, ctype = REFUSAL_PAGE.format(message=escape(message)).encode(), b"text/html; charset=utf-8"
    headers = security_headers([(b"content-type", ctype), (b"content-length", str(len(body)).encode())])
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        # The handshake is answered with a plain HTTP response (ASGI denial extension).
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
