"""The guard, attacked with hand-made ASGI scopes: each attack is refused with the check on
and reaches the application with only that check switched off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kumix.web.headers import PAGE_CSP
from kumix.web.security import Checks, Guard
from kumix.web.sessions import Sessions, cookie_name

PORT = 4567
OWN = f"127.0.0.1:{PORT}"


class Recorder:
    def __init__(self) -> None:
        self.reached = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached = True
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await send({"type": "websocket.accept"})


def run(guard: Guard, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent


def scope(kind: str = "http", method: str = "GET", path: str = "/api/whoami", query: bytes = b"",
          **headers: str) -> dict[str, Any]:
    hs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    doc: dict[str, Any] = {"type": kind, "path": path, "query_string": query, "headers": hs}
    if kind == "http":
        doc["method"] = method
    else:
        doc["extensions"] = {"websocket.http.response": {}}
    return doc


def status(sent: list[dict[str, Any]]) -> int:
    return int(sent[0]["status"])


@pytest.fixture
def sessions() -> Sessions:
    return Sessions(PORT)


@pytest.fixture
def cookie(sessions: Sessions) -> str:
    return f"{cookie_name(PORT)}={sessions.open()}"


ATTACKS = {
    # DNS rebinding: evil.example resolves to 127.0.0.1; the browser sends its own Host.
    "host": (scope(host=f"evil.example:{PORT}", origin=f"http://evil.example:{PORT}"), Checks(host=False)),
    # CSRF: a foreign page posts a form to the server.
    "origin-post": (scope(method="POST", host=OWN, origin="http://evil.example"), Checks(origin=False)),
    "origin-missing": (scope(method="POST", host=OWN), Checks(origin=False)),
    # Cross-site WebSocket hijacking: the handshake carries the victim's cookie.
    "origin-ws": (scope("websocket", path="/api/events", host=OWN, origin="http://evil.example"),
                  Checks(origin=False)),
    "origin-ws-missing": (scope("websocket", path="/api/events", host=OWN), Checks(origin=False)),
    # Another port on the same host is same-site but not same-origin.
    "origin-other-port": (scope(method="POST", host=OWN, origin="http://127.0.0.1:1"), Checks(origin=False)),
    "fetch-site": (scope(host=OWN, sec_fetch_site="cross-site"), Checks(fetch_site=False)),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_refused_and_succeeds_without_its_check(name: str, sessions: Sessions, cookie: str) -> None:
    attack, without = ATTACKS[name]
    attack["headers"].append((b"cookie", cookie.encode()))
    app = Recorder()
    sent = run(Guard(app, sessions), dict(attack))
    assert not app.reached
    assert sent[0]["type"] in ("http.response.start", "websocket.http.response.start")
    assert status(sent) == 403
    assert b"forbidden" in sent[1]["body"]
    # The same attack with only that check off reaches the application.
    app = Recorder()
    run(Guard(app, sessions, checks=without), dict(attack))
    assert app.reached


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_no_session_is_401_and_succeeds_without_the_check(kind: str, sessions: Sessions) -> None:
    attack = scope(kind, path="/api/events", host=OWN, origin=f"http://{OWN}",
                   cookie=f"{cookie_name(PORT)}=guessed")
    app = Recorder()
    assert status(run(Guard(app, sessions), attack)) == 401
    assert not app.reached
    run(Guard(app, sessions, checks=Checks(session=False)), attack)
    assert app.reached


def test_cookie_of_another_port_is_not_a_session(sessions: Sessions) -> None:
    other = Sessions(PORT + 1)
    sid = other.open()
    app = Recorder()
    # Same value under the other server's name, and the other server's value under ours.
    for cookie in (f"{cookie_name(PORT + 1)}={sid}", f"{cookie_name(PORT)}={sid}"):
        assert status(run(Guard(app, sessions), scope(host=OWN, cookie=cookie))) == 401
    assert not app.reached


def test_token_exchange_sets_a_strict_cookie_and_redirects(sessions: Sessions) -> None:
    sent = run(Guard(Recorder(), sessions), scope(path="/", query=f"token={sessions.token}".encode(), host=OWN))
    assert status(sent) == 303
    headers = dict(sent[0]["headers"])
    assert headers[b"location"] == b"/"
    cookie = headers[b"set-cookie"].decode()
    assert cookie.startswith(f"{cookie_name(PORT)}=")
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert sessions.valid(sid)
    assert sessions.token not in cookie


@pytest.mark.parametrize("guess", ["", "x", "wrong-but-right-length-" + "a" * 20, "A" * 300])
def test_wrong_tokens_are_401(sessions: Sessions, guess: str) -> None:
    app = Recorder()
    sent = run(Guard(app, sessions), scope(path="/", query=f"token={guess}".encode(), host=OWN))
    assert status(sent) == 401
    assert not any(k == b"set-cookie" for k, _ in sent[0]["headers"])
    assert not app.reached


def test_token_of_same_length_differing_in_last_char(sessions: Sessions) -> None:
    near = sessions.token[:-1] + ("A" if sessions.token[-1] != "A" else "B")
    assert not sessions.token_matches(near)
    assert sessions.token_matches(sessions.token)


def test_every_answer_carries_the_header_set(sessions: Sessions, cookie: str) -> None:
    cases = [scope(host="evil"), scope(host=OWN), scope(host=OWN, cookie=cookie),
             scope("websocket", host=OWN)]
    for case in cases:
        sent = run(Guard(Recorder(), sessions), case)
        headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        assert headers["content-security-policy"] == PAGE_CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


def test_sessions_are_bounded() -> None:
    s = Sessions(PORT)
    first = s.open()
    for _ in range(200):
        s.open()
    assert not s.valid(first)
    assert len(s._open) == 64
