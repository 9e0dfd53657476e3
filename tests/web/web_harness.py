"""A real `kumix.web` server for tests: the application of `kumix serve` under a real
uvicorn on 127.0.0.1, in a thread with its own event loop (so tests use blocking httpx and
WebSocket clients against it, as a browser would), plus what the tests record and need."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.sync.client import ClientConnection, connect

from kumix.app.kumix import Kumix
from kumix.app.settings import Settings
from kumix.web.routes import Api, build_app
from kumix.web.security import ASGIApp, Checks
from kumix.web.server import bind, port_of, serve
from kumix.web.sessions import Sessions

T = TypeVar("T")


class Capture:
    """Everything the clients received: status lines, headers (cookies included), bodies,
    WebSocket frames. The leak test searches it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def response(self, r: httpx.Response) -> None:
        r.read()
        self.chunks.append(f"{r.status_code} {r.reason_phrase}\n".encode())
        self.chunks.extend(k + b": " + v for k, v in r.headers.raw)
        self.chunks.append(r.content)

    def frame(self, data: str | bytes) -> None:
        self.chunks.append(data.encode() if isinstance(data, str) else data)

    def blob(self) -> bytes:
        return b"\n".join(self.chunks)


class WebServer:
    def __init__(self, data_dir: Path, env: Mapping[str, str], *, checks: Checks | None = None,
                 queue_frames: int = 256, queue_bytes: int = 4 * 1024 * 1024,
                 extension_roots: tuple[Path, ...] = ()) -> None:
        self.settings = Settings(data_dir=data_dir, extension_roots=extension_roots)
        self.env = dict(env)
        self.checks = checks
        self.queue = (queue_frames, queue_bytes)
        self.capture = Capture()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="kumix-web-test", daemon=True)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.kumix: Kumix | None = None
        self.api: Api | None = None
        self.app: ASGIApp | None = None
        self.sessions: Sessions | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> WebServer:
        self._thread.start()
        self._ready.wait(120)
        if self._error is not None:
            raise self._error
        assert self.loop is not None, "the server did not start"
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the server did not stop"
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with Kumix.open(self.settings, env=self.env, interactive=False, command="kumix web tests") as k:
            await k.resume()
            sock = bind(None)
            self.port = port_of(sock)
            self.sessions = Sessions(self.port)
            self.app, self.api = build_app(k, self.sessions, checks=self.checks, queue_frames=self.queue[0],
                                           queue_bytes=self.queue[1])
            self.kumix = k
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            try:
                await serve(self.app, sock, self._stop)
            finally:
                sock.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine in the server's loop (where its Kumix lives)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def call(self, fn: Callable[[], T]) -> T:
        async def go() -> T:
            return fn()

        return self.run(go())

    # -- clients ------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        assert self.sessions is not None
        return self.sessions.token

    def anonymous(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.origin, headers=headers, timeout=60,
                            event_hooks={"response": [self.capture.response]})

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """A browser-like client with a session: opened the printed URL, sends its Origin."""
        with self.anonymous(origin=self.origin) as c:
            r = c.get("/", params={"token": self.token})
            assert r.status_code == 303, r.text
            assert c.cookies.get(f"kumix_session_{self.port}")
            yield c

    def cookie_header(self, c: httpx.Client) -> str:
        return "; ".join(f"{k}={v}" for k, v in c.cookies.items())

    def websocket(self, c: httpx.Client | None, *, cursor: int | None = None, origin: str | None = "own",
                  rcvbuf: int | None = None, host: str | None = None) -> ClientConnection:
        path = "/api/events" + (f"?cursor={cursor}" if cursor is not None else "")
        headers: dict[str, str] = {}
        if c is not None:
            headers["Cookie"] = self.cookie_header(c)
        sock = socket.create_connection(("127.0.0.1", self.port))
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        ws_origin = self.origin if origin == "own" else origin
        # The URI names the Host header; the socket is already connected to 127.0.0.1, as
        # a rebound DNS name would be.
        return connect(f"ws://{host or f'127.0.0.1:{self.port}'}{path}", sock=sock, origin=ws_origin,  # type: ignore[arg-type]
                       additional_headers=headers, compression=None, proxy=None, max_queue=4, ping_interval=None,
                       open_timeout=30)

    def recv_json(self, ws: ClientConnection, timeout: float = 60) -> dict[str, Any]:
        data = ws.recv(timeout=timeout)
        self.capture.frame(data)
        doc: dict[str, Any] = json.loads(data)
        return doc


class MatrixUser:
    """Another Matrix user, talking to Synapse's client API directly (no Kumix)."""

    _txn = itertools.count()

    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        self.http = httpx.Client(base_url=homeserver, timeout=60)
        r = self.http.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password})
        r.raise_for_status()
        self.user_id = user_id
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def join(self, room_id: str) -> None:
        self.http.post(f"/_matrix/client/v3/join/{room_id}", json={}).raise_for_status()

    def send(self, room_id: str, body: str) -> str:
        txn = f"t{next(self._txn)}x{id(self)}"
        r = self.http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
                          json={"msgtype": "m.text", "body": body})
        r.raise_for_status()
        return str(r.json()["event_id"])

    def create_room(self, **body: Any) -> str:
        r = self.http.post("/_matrix/client/v3/createRoom", json=body)
        r.raise_for_status()
        return str(r.json()["room_id"])

    def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> None:
        self.http.put(f"/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}",
                      json=content).raise_for_status()

    def upload(self, data: bytes, content_type: str) -> str:
        r = self.http.post("/_matrix/media/v3/upload", content=data, headers={"Content-Type": content_type})
        r.raise_for_status()
        return str(r.json()["content_uri"])

    def typing(self, room_id: str, typing: bool) -> None:
        self.http.put(f"/_matrix/client/v3/rooms/{room_id}/typing/{self.user_id}",
                      json={"typing": typing, "timeout": 30_000} if typing else {"typing": False}).raise_for_status()

    def receipt(self, room_id: str, event_id: str) -> None:
        self.http.post(f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{event_id}", json={}).raise_for_status()

    def close(self) -> None:
        self.http.close()
