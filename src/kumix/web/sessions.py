"""The launch token and the browser sessions it opens.

`kumix serve` prints one URL with a fresh 32-byte token. Opening it once exchanges the token
for a session cookie (and a redirect that takes the token out of the address bar). The
token stays valid for the life of the server, so a second tab or browser can be opened with
the same printed URL; sessions live in memory and end with the process.

Comparisons use `hmac.compare_digest` on the token and a digest lookup for cookies, so the
time an answer takes says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32
MAX_SESSIONS = 64
"""Each token exchange opens one; beyond this the oldest is dropped, so a script that opens
the URL in a loop cannot grow the server's memory."""


def cookie_name(port: int) -> str:
    """Cookies are not isolated by port: two local servers on 127.0.0.1 share one jar. With
    the port in the name, one server's cookie is never sent as the other's."""
    return f"kumix_session_{port}"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token or secrets.token_urlsafe(TOKEN_BYTES)
        self._open: dict[bytes, None] = {}  # insertion-ordered: the oldest is dropped first

    @property
    def cookie(self) -> str:
        return cookie_name(self.port)

    def token_matches(self, candidate: str | None) -> bool:
        if candidate is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), self.token.encode())

    def open(self) -> str:
        """A new session id for a correct token; the caller sets it as the cookie."""
        sid = secrets.token_urlsafe(TOKEN_BYTES)
        self._open[_digest(sid)] = None
        while len(self._open) > MAX_SESSIONS:
            del self._open[next(iter(self._open))]
        return sid

    def valid(self, sid: str | None) -> bool:
        # Looked up by digest: a dict probe on the raw value would compare it byte by byte.
        return sid is not None and _digest(sid) in self._open

    def close(self, sid: str | None) -> None:
        if sid is not None:
            self._open.pop(_digest(sid), None)

    def close_all(self) -> None:
        self._open.clear()

    def set_cookie_header(self, sid: str) -> str:
        return f"{self.cookie}={sid}; HttpOnly; SameSite=Strict; Path=/"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"
