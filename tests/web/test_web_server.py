"""`kumix.web` through a real uvicorn on 127.0.0.1 against the real test Synapse: the
session model, every check attacked over the wire, the security headers on every kind of
answer, media served so it cannot run script, the event stream (resume, slow readers,
homeserver restarts), the OpenAPI contract under schemathesis, and a capture of all a
client ever received searched for the account's secrets. One server for the module."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kumix.app.matrix_session import MatrixService
from kumix.app.trust import VAULT_PREFIX as CROSS_SIGNING_VAULT_PREFIX
from kumix.core.models import Event, TimelineUpdate
from kumix.store.database import Database
from kumix.store.vault import Vault
from kumix.web import openapi
from kumix.web.headers import MEDIA_CSP, PAGE_CSP, page_csp
from kumix.web.send_queue import CLOSE_TOO_SLOW
from tests.conftest import run_kumix
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import MatrixUser, WebServer

pytestmark = pytest.mark.synapse

PASSPHRASE = "web tests' vault passphrase, never to be seen by a page"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def wait_until(done: Callable[[], bool], what: str, rounds: int = 600) -> None:
    for _ in range(rounds):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def vault_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("vault") / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, PASSPHRASE.encode() + b"\n")
    os.close(fd)
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(path)}


@pytest.fixture(scope="module")
def alice_user(synapse: SynapseHarness) -> TestUser:
    return synapse.user("webalice")


@pytest.fixture(scope="module")
def alice_dir(synapse: SynapseHarness, alice_user: TestUser, vault_env: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("alice") / "data"
    data_dir.mkdir(mode=0o700)
    db = Database(data_dir / "state.db")
    service = MatrixService(data_dir, db, env=vault_env, interactive=False)
    asyncio.run(service.login_password(synapse.url, alice_user.user_id, alice_user.password))
    db.close()
    return data_dir


@pytest.fixture(scope="module")
def server(alice_dir: Path, vault_env: dict[str, str]) -> Iterator[WebServer]:
    s = WebServer(alice_dir, vault_env, queue_frames=32, queue_bytes=1024 * 1024).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def other_server(tmp_path_factory: pytest.TempPathFactory, vault_env: dict[str, str]) -> Iterator[WebServer]:
    """A second server (not logged in): another port on the same host."""
    data_dir = tmp_path_factory.mktemp("other") / "data"
    data_dir.mkdir(mode=0o700)
    s = WebServer(data_dir, vault_env).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(server: WebServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def bob(synapse: SynapseHarness) -> Iterator[MatrixUser]:
    user = synapse.user("webbob")
    b = MatrixUser(synapse.url, user.user_id, user.password)
    yield b
    b.close()


@pytest.fixture(scope="module")
def room(server: WebServer, browser: httpx.Client, bob: MatrixUser) -> str:
    r = browser.post("/api/rooms", json={"name": "Web", "encrypted": False, "invite": [bob.user_id]})
    assert r.status_code == 200, r.text
    room_id = str(r.json()["room_id"])
    bob.join(room_id)
    wait_until(lambda: any(i["event"]["sender"] == bob.user_id for i in events(browser, room_id)), "bob's join")
    return room_id


def events(c: httpx.Client, room_id: str, **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"/api/rooms/{room_id}/events", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["events"]
    return items


def bodies_after(c: httpx.Client, room_id: str, cursor: int) -> list[str]:
    return [i["event"]["body"] for i in events(c, room_id, after=cursor, limit=200) if i["event"]["kind"] == "text"]


# -- sessions -----------------------------------------------------------------------------

def concrete_paths() -> list[tuple[str, str]]:
    out = []
    for path, ops in openapi.document()["paths"].items():
        concrete = (path.replace("{room_id}", "!r:x").replace("{event_id}", "$e").replace("{extension_id}", "x")
                    .replace("{action}", "enable"))
        out.extend((method.upper(), concrete) for method in ops)
    return [*out, ("GET", "/"), ("GET", "/static/main.js"), ("GET", "/static/nothing.js"),
            ("GET", "/api/no-such-route")]


def test_every_route_without_a_session_is_401(server: WebServer) -> None:
    with server.anonymous(origin=server.origin) as c:
        for method, path in concrete_paths():
            r = c.request(method, path, json={} if method != "GET" else None)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["content-security-policy"] == PAGE_CSP
        # A stale or guessed cookie is no session either.
        c.cookies.set(f"kumix_session_{server.port}", "guessed")
        assert c.get("/api/whoami").status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        server.websocket(None)
    assert refused.value.response.status_code == 401


def test_page_token_exchange_and_redirect(server: WebServer) -> None:
    with server.anonymous() as c:
        r = c.get("/")
        assert r.status_code == 401
        assert "printed" in r.text
        r = c.get("/", params={"token": server.token})
        assert r.status_code == 303
        assert r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/", f"kumix_session_{server.port}="):
            assert attr in cookie
        page = c.get("/")
        assert page.status_code == 200
        assert page_nonce(page)
        assert c.get("/api/whoami").json()["logged_in"] is True


@pytest.mark.parametrize("guess", ["", "short", "A" * 43, "A" * 44, "A" * 500])
def test_guessed_tokens_are_refused(server: WebServer, guess: str) -> None:
    assert len(server.token) == 43  # 32 bytes, URL-safe base64
    with server.anonymous() as c:
        r = c.get("/", params={"token": guess})
        assert r.status_code == 401
        assert "set-cookie" not in r.headers


def test_cookie_replayed_against_another_port_is_refused(server: WebServer, other_server: WebServer,
                                                         browser: httpx.Client) -> None:
    sid = browser.cookies[f"kumix_session_{server.port}"]
    with other_server.anonymous(origin=other_server.origin) as c:
        # As the browser would send it (both servers share 127.0.0.1's cookie jar) ...
        assert c.get("/api/whoami", headers={"cookie": f"kumix_session_{server.port}={sid}"}).status_code == 401
        # ... and renamed to the other server's cookie.
        assert c.get("/api/whoami", headers={"cookie": f"kumix_session_{other_server.port}={sid}"}).status_code == 401


# -- the guard over the wire --------------------------------------------------------------

def test_dns_rebinding_host_is_refused(server: WebServer, browser: httpx.Client) -> None:
    for host in (f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.1:{server.port + 1}", f"0.0.0.0:{server.port}"):
        r = browser.get("/api/whoami", headers={"host": host})
        assert r.status_code == 403, host
        assert r.json()["error"]["code"] == "forbidden"
    assert browser.get("/api/whoami", headers={"host": f"localhost:{server.port}"}).status_code == 200
    with pytest.raises(InvalidStatus) as refused:
        server.websocket(browser, host=f"evil.example:{server.port}")
    assert refused.value.response.status_code == 403


def test_foreign_or_missing_origin_is_refused_on_http(server: WebServer, browser: httpx.Client,
                                                      other_server: WebServer) -> None:
    for origin in ("http://evil.example", other_server.origin, f"https://127.0.0.1:{server.port}", "null"):
        r = browser.put("/api/settings", json={"theme": "dark"}, headers={"origin": origin})
        assert r.status_code == 403, origin
    r = browser.put("/api/settings", json={"theme": "dark"}, headers={"origin": ""})
    assert r.status_code == 403
    with server.anonymous() as no_origin:
        no_origin.cookies = browser.cookies
        assert no_origin.put("/api/settings", json={"theme": "dark"}).status_code == 403
        assert no_origin.get("/api/settings").status_code == 200  # GET needs no Origin
    assert browser.get("/api/settings", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert browser.get("/api/settings").json()["theme"] == "system"  # no refused write went through
    assert browser.put("/api/settings", json={"theme": "dark"}).json()["theme"] == "dark"


def test_foreign_or_missing_origin_is_refused_on_websocket(server: WebServer, browser: httpx.Client) -> None:
    for origin in ("http://evil.example", None, f"http://127.0.0.1:{server.port + 1}"):
        with pytest.raises(InvalidStatus) as refused:
            server.websocket(browser, origin=origin)
        assert refused.value.response.status_code == 403
        assert refused.value.response.headers["content-security-policy"] == PAGE_CSP
    with server.websocket(browser) as ws:
        assert server.recv_json(ws)["type"] == "hello"


def test_server_listens_on_loopback_only(server: WebServer) -> None:
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for address in addresses:
        with pytest.raises(OSError), socket.create_connection((address, server.port), timeout=5):
            pass


# -- headers on every kind of answer --------------------------------------------------------

def page_nonce(page: httpx.Response) -> str:
    """The nonce of an answer with the page: on its one module script and in its CSP."""
    match = re.search(r'<script type="module" nonce="([A-Za-z0-9_-]{22,})" src="/static/main.js">', page.text)
    assert match, page.text[:300]
    return match.group(1)


def assert_header_set(r: httpx.Response, csp: str = PAGE_CSP) -> None:
    h = r.headers
    assert h["content-security-policy"] == csp, r.url
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cross-origin-opener-policy"] == "same-origin"
    assert h["cross-origin-resource-policy"] == "same-origin"
    assert "camera=()" in h["permissions-policy"]
    assert h["cache-control"] == "no-store"
    assert "server" not in h


def test_security_headers_on_every_answer(server: WebServer, browser: httpx.Client, room: str) -> None:
    answers = [browser.get("/"), browser.get("/static/main.js"), browser.get("/api/whoami"),
               browser.get("/api/nothing"), browser.get("/static/../x.js"), browser.post("/api/whoami"),
               browser.get("/api/rooms/!nope:x/events"), browser.get("/api/whoami", headers={"host": "evil"}),
               browser.get("/", params={"token": "wrong"}), browser.get("/", params={"token": server.token})]
    assert_header_set(answers[0], page_csp(page_nonce(answers[0])))
    for r in answers[1:]:
        assert_header_set(r)
    assert answers[3].status_code == 404
    assert answers[3].json()["error"]["code"] == "not_found"
    assert answers[5].status_code == 405
    assert answers[1].headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", [
    "/static/%2e%2e/routes.py", "/static/%2e%2e/%2e%2e/web/routes.py", "/static/vendor/%2e%2e/%2e%2e/routes.py",
    "/static/.hidden.js", "/static/vm//app.js", "/static/vm%2f..%2f..%2frouter.js", "/static/..%5croutes.js",
    "/static/index.html", "/static/i18n",
])
def test_static_files_never_leave_the_client_directory(browser: httpx.Client, path: str) -> None:
    """Encoded dot segments reach the route unnormalised (httpx sends them as written): each
    is refused, and so is any file type the client is not made of."""
    r = browser.get(path)
    assert r.status_code == 404, (path, r.text[:200])
    assert r.json()["error"]["code"] == "not_found"


def test_the_client_is_served_with_its_nested_modules(browser: httpx.Client) -> None:
    page = browser.get("/")
    assert page_nonce(page)
    for path in ("/static/vendor/preact.js", "/static/i18n/ja.json", "/static/css/app.css"):
        r = browser.get(path)
        assert r.status_code == 200, path


# -- media --------------------------------------------------------------------------------

def upload(c: httpx.Client, room_id: str, name: str, data: bytes, ctype: str) -> str:
    r = c.post(f"/api/rooms/{room_id}/upload", params={"name": name}, content=data, headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["state"] == "sent", doc
    return str(doc["event_id"])


def test_html_and_svg_are_attachments_under_the_sandbox(server: WebServer, browser: httpx.Client, room: str) -> None:
    files = {
        "evil.html": (b"<html><script>alert(document.cookie)</script></html>", "text/html", False),
        "evil.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml", False),
        "fake.png": (b"<html><script>alert(1)</script>", "image/png", False),
        "real.png": (PNG, "image/png", True),
    }
    ids = {name: upload(browser, room, name, data, ctype) for name, (data, ctype, _) in files.items()}
    wait_until(lambda: all(browser.get(f"/api/media/{e}").status_code == 200 for e in ids.values()),
               "the uploads synced back")
    for name, (data, _, inline) in files.items():
        r = browser.get(f"/api/media/{ids[name]}")
        assert r.status_code == 200, r.text
        assert r.content == data
        assert_header_set(r, csp=MEDIA_CSP)
        disposition = r.headers["content-disposition"]
        if inline:
            assert disposition.startswith("inline")
            assert r.headers["content-type"] == "image/png"
        else:
            assert disposition.startswith("attachment"), name
            assert r.headers["content-type"] == "application/octet-stream"


def test_encrypted_attachment_is_decrypted_in_the_server(server: WebServer, browser: httpx.Client) -> None:
    r = browser.post("/api/rooms", json={"name": "Secret files", "encrypted": True})
    room_id = r.json()["room_id"]
    wait_until(lambda: any(x["room_id"] == room_id and x["encrypted"]
                           for x in browser.get("/api/rooms").json()["rooms"]), "the encrypted room in the list")
    event_id = upload(browser, room_id, "secret.txt", b"the plaintext of an encrypted file", "text/plain")
    wait_until(lambda: browser.get(f"/api/media/{event_id}").status_code == 200, "the file event synced back")
    r = browser.get(f"/api/media/{event_id}")
    assert r.content == b"the plaintext of an encrypted file"
    assert r.headers["content-disposition"].startswith("attachment")
    item = next(i for i in events(browser, room_id) if i["event"]["event_id"] == event_id)
    assert item["event"]["encrypted"] is True
    assert "key" not in str(item["event"]["file"])  # the attachment's key never reaches the page


# -- API basics ---------------------------------------------------------------------------

# -- spaces and avatars -------------------------------------------------------------------

def rooms_by_id(c: httpx.Client) -> dict[str, dict[str, Any]]:
    r = c.get("/api/rooms")
    assert r.status_code == 200, r.text
    return {row["room_id"]: row for row in r.json()["rooms"]}


def test_spaces_their_rooms_and_avatars(server: WebServer, browser: httpx.Client, alice_user: TestUser,
                                        bob: MatrixUser) -> None:
    """Bob builds a space with a child room (both directions of the link), sets the child's
    avatar to a file Alice uploaded through the API without sending it, and gives the space
    an SVG avatar; Alice's room list says which is the space and what it groups, and the
    avatars come through the server, the SVG only as an attachment under the sandbox."""
    up = browser.post("/api/upload", params={"name": "avatar.png"}, content=PNG,
                      headers={"content-type": "image/png"})
    assert up.status_code == 200, up.text
    png_url = up.json()["url"]
    assert png_url.startswith("mxc://")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    via = {"via": [bob.user_id.split(":", 1)[1]]}
    space = bob.create_room(name="Web space", creation_content={"type": "m.space"}, invite=[alice_user.user_id])
    child = bob.create_room(name="Space child", invite=[alice_user.user_id])
    bob.put_state(space, "m.space.child", child, via)
    bob.put_state(child, "m.space.parent", space, via | {"canonical": True})
    bob.put_state(child, "m.room.avatar", "", {"url": png_url})
    bob.put_state(space, "m.room.avatar", "", {"url": bob.upload(svg, "image/svg+xml")})
    # A removed link (content without `via`) groups nothing.
    gone = bob.create_room(name="Unlinked", invite=[alice_user.user_id])
    bob.put_state(space, "m.space.child", gone, via)
    bob.put_state(space, "m.space.child", gone, {})
    wait_until(lambda: {space, child, gone} <= set(rooms_by_id(browser)), "the invites")
    for room_id in (space, child, gone):
        assert browser.post("/api/join", json={"room": room_id}).status_code == 200
    wait_until(lambda: rooms_by_id(browser)[space]["children"] == [child]
               and rooms_by_id(browser)[child]["avatar"] == png_url
               and rooms_by_id(browser)[space]["avatar"] is not None, "the space state synced")
    rows = rooms_by_id(browser)
    assert rows[space]["space"] is True
    assert rows[child]["space"] is False
    assert rows[child]["children"] == []
    assert rows[child]["parents"] == [space]
    assert rows[gone]["parents"] == []
    assert gone not in rows[space]["children"]

    r = browser.get(f"/api/rooms/{child}/avatar")
    assert r.status_code == 200, r.text
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("inline")
    assert_header_set(r, csp=MEDIA_CSP)
    r = browser.get(f"/api/rooms/{space}/avatar")
    assert r.status_code == 200, r.text
    assert r.content == svg
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    assert_header_set(r, csp=MEDIA_CSP)
    r = browser.get(f"/api/rooms/{gone}/avatar")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_send_page_and_errors(server: WebServer, browser: httpx.Client, room: str) -> None:
    before = server.call(lambda: server.kumix.cursor())  # type: ignore[union-attr]
    r = browser.post(f"/api/rooms/{room}/messages", json={"text": "hello **web**"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "sent"
    wait_until(lambda: "hello **web**" in bodies_after(browser, room, before), "own message synced")
    page = events(browser, room, limit=2)
    assert len(page) == 2
    older = events(browser, room, before=page[0]["cursor"], limit=50)
    assert all(i["cursor"] < page[0]["cursor"] for i in older)
    bad = browser.post(f"/api/rooms/{room}/messages", json={"text": 5})
    assert bad.status_code == 400
    assert bad.json() == {"error": {"code": "bad_request", "message": "text must be a string"}}
    assert browser.post(f"/api/rooms/{room}/messages", content=b"{not json").json()["error"]["code"] == "bad_request"
    missing = browser.post("/api/rooms/!missing:x/messages", json={"text": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    huge = browser.post(f"/api/rooms/{room}/messages", content=b"x" * (300 * 1024))
    assert huge.status_code == 413


def test_login_through_the_api_and_missing_vault_key(synapse: SynapseHarness, tmp_path: Path,
                                                     vault_env: dict[str, str]) -> None:
    user = synapse.user("weblogin")
    (tmp_path / "nokey").mkdir(mode=0o700)
    nokey = WebServer(tmp_path / "nokey", {}).start()
    try:
        with nokey.client() as c:
            assert c.get("/api/whoami").json()["logged_in"] is False
            assert c.get("/api/rooms").json() == {"rooms": []}
            r = c.post("/api/login", json={"homeserver": synapse.url, "user": user.user_id, "password": user.password})
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
            assert "vault" in r.json()["error"]["message"].lower()
            assert c.get("/api/whoami").json()["logged_in"] is False
    finally:
        nokey.stop()
    (tmp_path / "withkey").mkdir(mode=0o700)
    s = WebServer(tmp_path / "withkey", vault_env).start()
    try:
        with s.client() as c:
            r = c.post("/api/login", json={"homeserver": synapse.url, "user": user.user_id, "password": "wrong"})
            assert r.status_code == 401
            r = c.post("/api/login", json={"homeserver": synapse.url, "user": user.user_id, "password": user.password})
            assert r.status_code == 200, r.text
            assert r.json()["account"]["user_id"] == user.user_id
            assert c.post("/api/logout").json()["logged_in"] is False
    finally:
        s.stop()


# -- the event stream -----------------------------------------------------------------------

def read_until(server: WebServer, ws: Any, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not done(got):
        got.append(server.recv_json(ws))
    return got


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"]["body"] for f in frames if f["type"] == "event" and f["event"]["kind"] == "text"]


def test_reconnect_with_cursor_misses_nothing_and_repeats_nothing(server: WebServer, browser: httpx.Client,
                                                                  bob: MatrixUser, room: str) -> None:
    with server.websocket(browser) as ws:
        assert server.recv_json(ws)["type"] == "hello"
        for i in range(3):
            bob.send(room, f"live {i}")
        frames = read_until(server, ws, lambda got: "live 2" in texts(got))
        assert texts(frames) == ["live 0", "live 1", "live 2"]
        last = max(f["cursor"] for f in frames if f["type"] == "event")
    for i in range(3):
        bob.send(room, f"missed {i}")
    wait_until(lambda: "missed 2" in bodies_after(browser, room, last), "the missed messages stored")
    with server.websocket(browser, cursor=last) as ws:
        frames = read_until(server, ws, lambda got: "missed 2" in texts(got))
        assert frames[0]["type"] == "hello"
        assert frames[0]["from"] == last
        assert texts(frames) == ["missed 0", "missed 1", "missed 2"]
        bob.send(room, "after reconnect")
        more = read_until(server, ws, lambda got: "after reconnect" in texts(got))
        assert texts(more) == ["after reconnect"]
    cursors = [f["cursor"] for f in frames + more if f["type"] == "event"]
    assert len(cursors) == len(set(cursors))
    assert cursors == sorted(cursors)


def test_slow_reader_is_cut_off_while_another_keeps_receiving(server: WebServer, browser: httpx.Client) -> None:
    k = server.kumix
    assert k is not None
    with server.websocket(browser) as fast, server.websocket(browser, rcvbuf=256 * 1024) as slow:
        assert server.recv_json(fast)["type"] == "hello"
        assert server.recv_json(slow)["type"] == "hello"
        cut_off(server, k, fast, slow)


def cut_off(server: WebServer, k: Any, fast: Any, slow: Any) -> None:
    assert server.api is not None
    cut_before = server.api.cut_off
    base = server.call(k.cursor) + 1_000_000  # synthetic cursors, seen only by these two connections
    received: list[int] = []

    def read_fast() -> None:
        # Not captured: megabytes of padding, and nothing of the account in them.
        while True:
            try:
                doc = json.loads(fast.recv(timeout=60))
            except (TimeoutError, ConnectionClosed):
                return
            if doc.get("type") == "event" and doc["cursor"] >= base:
                received.append(doc["cursor"] - base)
                if doc["event"]["body"] == "":
                    return

    def update(n: int, body: str) -> TimelineUpdate:
        return TimelineUpdate(base + n, Event(f"$flood{n}", "!flood:x", "@flood:x", 0, "text", body=body))

    def burst(first: int) -> None:
        # Half the test server's send queue at once: a reader that keeps up never overflows.
        # (A flood the homeserver could not produce this fast, published where sync publishes.)
        k._hub.publish(update(n, "x" * 65536) for n in range(first, first + 8))

    reader = threading.Thread(target=read_fast)
    reader.start()
    sent = 0
    try:
        for _ in range(200):
            if server.api.cut_off > cut_before:
                break
            server.call(lambda first=sent: burst(first))
            sent += 8
            wait_until(lambda s=sent: len(received) == s, "the fast client kept up")
        assert server.api.cut_off == cut_before + 1, "the slow reader was never cut off"
        server.call(lambda: k._hub.publish([update(sent, "")]))
        reader.join(60)
        assert received == list(range(sent + 1))  # every frame, in order, to the reader that reads
        # The slow client, reading at last, finds its connection closed with the documented code.
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.recv(timeout=60)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_TOO_SLOW
    finally:
        reader.join(60)


def test_typing_and_receipts_of_others_are_pushed(server: WebServer, browser: httpx.Client, bob: MatrixUser,
                                                  alice_user: TestUser, room: str) -> None:
    own = browser.post(f"/api/rooms/{room}/messages", json={"text": "read me", "markdown": False})
    assert own.status_code == 200, own.text
    event_id = own.json()["event_id"]
    with server.websocket(browser) as ws:
        assert server.recv_json(ws)["type"] == "hello"
        # Alice's own typing notice is not one of "others typing".
        assert browser.post(f"/api/rooms/{room}/typing", json={"typing": True}).status_code == 200
        bob.typing(room, True)
        frames = read_until(server, ws, lambda got: any(
            f["type"] == "typing" and f["user_ids"] for f in got))
        typing = [f for f in frames if f["type"] == "typing"]
        assert all(f["room_id"] == room for f in typing)
        assert typing[-1]["user_ids"] == [bob.user_id]
        assert all(alice_user.user_id not in f["user_ids"] for f in typing)
        bob.typing(room, False)
        frames = read_until(server, ws, lambda got: any(
            f["type"] == "typing" and not f["user_ids"] for f in got))
        bob.receipt(room, event_id)
        frames = read_until(server, ws, lambda got: any(
            f["type"] == "receipts" and any(r["user_id"] == bob.user_id for r in f["receipts"]) for f in got))
        receipt = next(r for f in frames if f["type"] == "receipts" for r in f["receipts"]
                       if r["user_id"] == bob.user_id)
        assert frames[-1]["room_id"] == room
        assert receipt["event_id"] == event_id
        assert receipt["type"] == "m.read"
        assert receipt["ts"] > 0


def test_extension_figures_are_pushed_after_each_call(server: WebServer, browser: httpx.Client, room: str) -> None:
    def figures(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f["live"] for f in got if f["type"] == "figures" and f["extension_id"] == "markdown-renderer"]

    with server.websocket(browser) as ws:
        assert server.recv_json(ws)["type"] == "hello"
        calls = []
        for text in ("*one*", "**two**"):
            r = browser.post(f"/api/rooms/{room}/messages", json={"text": text, "markdown": True})
            assert r.status_code == 200, r.text
            calls.append(figures(read_until(server, ws, lambda got: bool(figures(got))))[-1])
    assert calls[1]["calls"] == calls[0]["calls"] + 1
    assert calls[1]["ok"] == calls[0]["ok"] + 1
    assert "latency_ms" in calls[1]


def test_theme_tokens_come_from_the_theme_extension_and_stop_when_it_is_disabled(
        browser: httpx.Client) -> None:
    r = browser.get("/api/theme")
    assert r.status_code == 200, r.text
    maps = r.json()
    assert set(maps) == {"light", "dark"}
    assert maps["light"]["color-bg"] != maps["dark"]["color-bg"]
    assert browser.post("/api/extensions/theme-default/disable").status_code == 200
    try:
        refused = browser.get("/api/theme")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "disabled"
    finally:
        assert browser.post("/api/extensions/theme-default/enable").status_code == 200
    assert browser.get("/api/theme").json() == maps


def test_send_from_another_terminal_is_handed_to_the_server(server: WebServer, browser: httpx.Client, room: str,
                                                           alice_dir: Path, vault_env: dict[str, str]) -> None:
    with server.websocket(browser) as ws:
        assert server.recv_json(ws)["type"] == "hello"
        r = run_kumix("--data-dir", str(alice_dir), "send", room, "handed over", "--plain", "--json", env=vault_env)
        assert r.returncode == 0, r.stderr
        assert "using this account's device" in r.stderr
        frames = read_until(server, ws, lambda got: "handed over" in texts(got))
        assert texts(frames).count("handed over") == 1


def test_homeserver_restart_loses_and_duplicates_nothing(synapse: SynapseHarness, server: WebServer,
                                                         browser: httpx.Client, bob: MatrixUser, room: str) -> None:
    start = server.call(lambda: server.kumix.cursor())  # type: ignore[union-attr]
    try:
        bob.send(room, "before the restart")
        wait_until(lambda: "before the restart" in bodies_after(browser, room, start), "first message")
        synapse.server.kill()
        # Sent while the homeserver is down: kept in the outbox, not lost.
        queued = browser.post(f"/api/rooms/{room}/messages", json={"text": "while down", "markdown": False})
        assert queued.status_code == 200, queued.text
        assert queued.json()["state"] != "sent"
        synapse.start()
        bob.send(room, "after the restart")
        wait_until(lambda: {"while down", "after the restart"} <= set(bodies_after(browser, room, start)),
                   "both messages after the restart")
    finally:
        if not synapse.server.is_answering():
            synapse.server.kill()
            synapse.start()
    got = bodies_after(browser, room, start)
    for body in ("before the restart", "while down", "after the restart"):
        assert got.count(body) == 1, (body, got)


# -- the OpenAPI contract -----------------------------------------------------------------

class LoopBridge:
    """Runs the server's ASGI app on the server's own loop (where its live account lives)
    for schemathesis, which calls the app in-process from a loop of its own."""

    def __init__(self, server: WebServer) -> None:
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        here = asyncio.get_running_loop()

        async def r() -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(receive(), here))

        async def s(message: Any) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(message), here))

        assert self.server.loop is not None
        assert self.server.app is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.server.app(scope, r, s), self.server.loop))


# Operations that would end the session under test or reach out to arbitrary homeservers.
SKIPPED_OPERATIONS = {"/api/login", "/api/logout"}
# Operations that replace the account's cross-signing identity, secret storage or key
# backup (each undoes what other clients of the account rely on; tests/web/
# test_web_encryption.py drives them), or that query arbitrary users' keys and so reach
# out to arbitrary homeservers (/api/verifications, /api/devices...; tested there too).
SKIPPED_OPERATIONS |= {"/api/encryption/cross-signing", "/api/encryption/recovery", "/api/encryption/backup",
                       "/api/verifications", "/api/devices", "/api/devices/accept-new-identity"}


def test_openapi_document_holds_under_schemathesis(server: WebServer, browser: httpx.Client, room: str) -> None:
    headers = {"host": f"127.0.0.1:{server.port}", "origin": server.origin, "cookie": server.cookie_header(browser)}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", LoopBridge(server), headers=headers)
    assert schema.raw_schema == openapi.document()
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED_OPERATIONS:
            continue

        @settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=server.origin, headers=headers)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        given(operation.as_strategy())(run)()
        checked += 1
    assert checked >= 20


# -- last: nothing secret ever reached a client ----------------------------------------------

def test_zz_secrets_never_reach_a_client(server: WebServer, other_server: WebServer, alice_dir: Path,
                                         vault_env: dict[str, str]) -> None:
    """Runs after the module's other tests: everything every client received is captured."""
    secrets_doc = Vault(alice_dir / "vault.json", vault_env, interactive=False).load()
    blob = server.capture.blob() + other_server.capture.blob()
    assert len(blob) > 100_000  # pages, API answers, media, frames of the whole module
    # Every secret the vault holds for this device: the access token, the crypto store's
    # pickle key, and the cross-signing private keys made at the password login.
    needles = [v for v in secrets_doc.values() if isinstance(v, str)] + [PASSPHRASE]
    assert {"access_token", "pickle_key"} <= set(secrets_doc)
    assert any(key.startswith(CROSS_SIGNING_VAULT_PREFIX) for key in secrets_doc), sorted(secrets_doc)
    for needle in needles:
        assert len(needle) >= 16
        assert needle.encode() not in blob
    # The capture does hold what the clients were given (their session cookies).
    assert server.capture.chunks
    assert any(b"set-cookie: kumix_session_" in c.lower() for c in server.capture.chunks)
