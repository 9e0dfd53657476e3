"""The Starlette application (Starlette lives behind this one module): pages, the JSON API,
media and the event WebSocket, over one `LiveAccount`.

Handlers parse and check their input, call `kumix.app`, and answer JSON. A `KumixError`
becomes `{"error": {...}}` with the status of `kumix.web.errors`; anything else is logged
and answered as `internal`, never as a traceback. The `Guard` (security middleware) wraps
the whole application, so no route is reachable without its checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from kumix.app.live_account import LiveAccount, TimelineItem
from kumix.core.errors import BadRequest, InputTooLarge, KumixError, NotFound
from kumix.web import openapi
from kumix.web.errors import error_document, status_of
from kumix.web.media_rules import media_answer
from kumix.web.security import ASGIApp, Checks, Guard
from kumix.web.send_queue import SendQueue
from kumix.web.sessions import Sessions

log = logging.getLogger(__name__)

MAX_JSON_BODY = 256 * 1024
MAX_PAGE = 200
APP_HEARTBEAT_SECONDS = 15.0
"""An application-level heartbeat frame (with the current cursor) goes through each
connection's send queue this often, so a reader that stopped is found even when the
account is quiet."""

Handler = Callable[[Request], Awaitable[Response]]


class Api:
    def __init__(self, live: LiveAccount, sessions: Sessions, *, queue_frames: int = 256,
                 queue_bytes: int = 4 * 1024 * 1024) -> None:
        self.live = live
        self.sessions = sessions
        self.queue_frames = queue_frames
        self.queue_bytes = queue_bytes
        self.connections = 0

    # -- plumbing ---------------------------------------------------------------------

    @staticmethod
    def _json(doc: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(doc, status_code=status)

    def guarded(self, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except KumixError as exc:
                return self._json(error_document(exc), status_of(exc))
            except Exception:
                log.exception("internal error in %s %s", request.method, request.url.path)
                return self._json(error_document(KumixError("internal error; see the server's log")), 500)

        return run

    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_JSON_BODY:
                raise InputTooLarge(f"request body larger than {MAX_JSON_BODY} bytes")
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest("request body must be a JSON object")
        return doc

    @staticmethod
    def opt(doc: dict[str, Any], key: str, *, max_len: int = 65536) -> str | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise BadRequest(f"{key} must be a string")
        if len(value) > max_len:
            raise BadRequest(f"{key} is longer than {max_len} characters")
        return value

    @classmethod
    def need(cls, doc: dict[str, Any], key: str, *, max_len: int = 65536) -> str:
        value = cls.opt(doc, key, max_len=max_len)
        if not value:
            raise BadRequest(f"{key} is required (a non-empty string)")
        return value

    @staticmethod
    def flag(doc: dict[str, Any], key: str, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            raise BadRequest(f"{key} must be true or false")
        return value

    @staticmethod
    def int_param(request: Request, key: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = request.query_params.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{key} must be an integer") from None
        if not lo <= value <= hi:
            raise BadRequest(f"{key} must be between {lo} and {hi}")
        return value

    def room_id(self, request: Request) -> str:
        room_id = str(request.path_params["room_id"])
        self.live.room(room_id)
        return room_id

    # -- pages --------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
        kind = name.rsplit(".", 1)[-1]
        if "/" in name or name.startswith(".") or kind not in types:
            raise NotFound(f"no static file {name[:100]}")
        return Response(_asset(name), media_type=types[kind])

    async def openapi_doc(self, request: Request) -> Response:
        return self._json(openapi.document())

    # -- account ------------------------------------------------------------------------

    def _whoami(self) -> dict[str, Any]:
        account = self.live.account()
        return {
            "logged_in": account is not None,
            "account": None if account is None else {
                "user_id": account.user_id, "device_id": account.device_id, "homeserver": account.homeserver},
            "syncing": self.live.logged_in and self.live.sync_problem is None,
            "problem": self.live.sync_problem,
        }

    async def whoami(self, request: Request) -> Response:
        return self._json(self._whoami())

    async def login(self, request: Request) -> Response:
        doc = await self.body(request)
        homeserver = self.need(doc, "homeserver", max_len=2048)
        token = self.opt(doc, "access_token", max_len=4096)
        if token:
            await self.live.login_token(homeserver, token)
        else:
            user = self.need(doc, "user", max_len=255)
            password = self.need(doc, "password", max_len=4096)
            await self.live.login_password(homeserver, user, password)
        return self._json(self._whoami())

    async def logout(self, request: Request) -> Response:
        await self.live.logout()
        return self._json(self._whoami())

    # -- rooms --------------------------------------------------------------------------

    async def rooms(self, request: Request) -> Response:
        rooms = self.live.rooms()
        return self._json({"rooms": [r.to_json() | {"inviter": r.inviter} for r in rooms]})

    async def create_room(self, request: Request) -> Response:
        doc = await self.body(request)
        invite = doc.get("invite", [])
        if not isinstance(invite, list) or not all(isinstance(u, str) and u for u in invite) or len(invite) > 50:
            raise BadRequest("invite must be a list of up to 50 user ids")
        s = self.live.session()
        if self.flag(doc, "direct", False):
            if len(invite) != 1:
                raise BadRequest("a direct chat invites exactly one user")
            room_id = await s.create_direct(invite[0], encrypted=self.flag(doc, "encrypted", True))
        else:
            room_id = await s.create_room(
                name=self.opt(doc, "name", max_len=255),
                topic=self.opt(doc, "topic", max_len=4096),
                encrypted=self.flag(doc, "encrypted", True), invite=tuple(invite))
        return self._json({"room_id": room_id})

    async def join(self, request: Request) -> Response:
        doc = await self.body(request)
        room = self.need(doc, "room", max_len=255)
        return self._json({"room_id": await self.live.session().join(room)})

    async def leave(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.live.session().leave(room_id)
        return self._json({"room_id": room_id})

    async def invite(self, request: Request) -> Response:
        room_id = self.room_id(request)
        user = self.need(await self.body(request), "user_id", max_len=255)
        await self.live.session().invite(room_id, user)
        return self._json({"room_id": room_id})

    async def events(self, request: Request) -> Response:
        room_id = self.room_id(request)
        limit = self.int_param(request, "limit", 50, 1, MAX_PAGE) or 50
        after = self.int_param(request, "after", None, -(2**62), 2**62)
        before = self.int_param(request, "before", None, -(2**62), 2**62)
        if after is not None and before is not None:
            raise BadRequest("give before or after, not both")
        items: list[TimelineItem]
        if after is not None:
            items = self.live.page_after(room_id, after, limit)
        else:
            items = await self.live.page_before(room_id, before, limit)
        return self._json({"events": [i.to_json() for i in items]})

    async def send(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        text = self.need(doc, "text")
        entry = await self.live.session().send_text(
            room_id, text, markdown=self.flag(doc, "markdown", True),
            reply_to=self.opt(doc, "reply_to", max_len=255))
        return self._json(entry.to_json())

    async def edit(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        event_id, text = self.need(doc, "event_id", max_len=255), self.need(doc, "text")
        entry = await self.live.session().edit(room_id, event_id, text, markdown=self.flag(doc, "markdown", True))
        return self._json(entry.to_json())

    async def react(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        event_id, key = self.need(doc, "event_id", max_len=255), self.need(doc, "key", max_len=64)
        return self._json((await self.live.session().react(room_id, event_id, key)).to_json())

    async def redact(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        event_id = self.need(doc, "event_id", max_len=255)
        reason = self.opt(doc, "reason", max_len=1024)
        return self._json((await self.live.session().redact(room_id, event_id, reason)).to_json())

    async def typing(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.live.session().typing(room_id, self.flag(await self.body(request), "typing", True))
        return self._json({"room_id": room_id})

    async def receipt(self, request: Request) -> Response:
        room_id = self.room_id(request)
        event_id = self.need(await self.body(request), "event_id", max_len=255)
        await self.live.session().read_receipt(room_id, event_id)
        return self._json({"room_id": room_id})

    async def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        if not q or len(q) > 1024:
            raise BadRequest("q must be 1 to 1024 characters")
        room = request.query_params.get("room") or None
        if room is not None:
            self.live.room(room)
        limit = self.int_param(request, "limit", 50, 1, MAX_PAGE) or 50
        hits = self.live.session().search(q, room_id=room, limit=limit)
        return self._json({"hits": [h.to_json() for h in hits]})

    # -- media --------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        room_id = self.room_id(request)
        name = request.query_params.get("name", "")
        if not name or len(name) > 255 or "/" in name:
            raise BadRequest("name must be a file name of 1 to 255 characters")
        limit = 50 * 1024 * 1024
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise InputTooLarge(f"file larger than {limit} bytes")
        mimetype = request.headers.get("content-type") or None
        entry = await self.live.upload(room_id, data, name=name, mimetype=mimetype)
        return self._json(entry.to_json())

    async def media(self, request: Request) -> Response:
        event, data = await self.live.download(str(request.path_params["event_id"]))
        assert event.attachment is not None
        answer = media_answer(event.attachment.mimetype, event.attachment.name, data)
        return Response(data, media_type=answer.content_type, headers=dict(answer.headers))

    # -- extensions, policy, settings -------------------------------------------------------

    async def extensions(self, request: Request) -> Response:
        ext = self.live.require_extensions()
        figures = ext.stats_store
        rows = []
        for s in ext.list():
            row = s.to_json()
            row["figures"] = figures.load(s.id) if figures is not None else None
            rows.append(row)
        return self._json({"extensions": rows})

    async def extension_action(self, request: Request) -> Response:
        ext = self.live.require_extensions()
        extension_id = str(request.path_params["extension_id"])
        action = str(request.path_params["action"])
        if action == "enable":
            status = ext.enable(extension_id)
        elif action == "disable":
            status = ext.disable(extension_id)
        elif action == "grant":
            capability = self.need(await self.body(request), "capability", max_len=255)
            status = ext.grant(extension_id, capability)
        else:
            raise NotFound(f"no extension action {action[:64]}")
        return self._json(status.to_json())

    async def policy(self, request: Request) -> Response:
        policy = self.live.require_extensions().policy
        doc = policy.to_json()
        doc["source"] = policy.source
        return self._json(doc)

    async def policy_check(self, request: Request) -> Response:
        ext = self.live.require_extensions()
        rows = [{"id": s.id, "allowed": bool(s.decision.allowed) if s.decision else False, "state": s.state,
                 "reason": s.reason} for s in ext.list()]
        return self._json({"policy": ext.policy.name, "extensions": rows})

    async def get_settings(self, request: Request) -> Response:
        return self._json(self.live.client_settings())

    async def put_settings(self, request: Request) -> Response:
        doc = await self.body(request)
        theme = self.opt(doc, "theme", max_len=16)
        language = self.opt(doc, "language", max_len=35)
        return self._json(self.live.update_client_settings(theme=theme, language=language))

    # -- events -------------------------------------------------------------------------

    async def events_socket(self, ws: WebSocket) -> None:
        raw_cursor = ws.query_params.get("cursor")
        try:
            cursor = int(raw_cursor) if raw_cursor is not None else self.live.cursor()
        except ValueError:
            await ws.close(code=1008)
            return
        await ws.accept()
        self.connections += 1
        try:
            await EventStream(self.live, ws, SendQueue(self.queue_frames, self.queue_bytes), cursor).run()
        finally:
            self.connections -= 1


class EventStream:
    """One WebSocket's feed: missed events from the store first, then live changes, each
    event at most once (by cursor), through the connection's bounded queue."""

    def __init__(self, live: LiveAccount, ws: WebSocket, queue: SendQueue, cursor: int) -> None:
        self.live = live
        self.ws = ws
        self.queue = queue
        self.sent = cursor
        self.wakeup = asyncio.Event()
        self.closed_by = 0

    def offer(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "event" and int(frame["cursor"]) <= self.sent:
            return
        data = json.dumps(frame).encode()
        self.queue.offer(data)
        self.wakeup.set()

    async def run(self) -> None:
        # Subscribed before the store is read: whatever arrives meanwhile is queued, and
        # the cursor check drops what the store page already carried.
        unsubscribe = self.live.subscribe(self.offer)
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._read())
                beat = tg.create_task(self._heartbeat())
                try:
                    await self._write()
                finally:
                    reader.cancel()
                    beat.cancel()
        finally:
            unsubscribe()

    async def _backlog(self) -> None:
        while True:
            items = self.live.events_after(self.sent, limit=MAX_PAGE)
            if not items:
                return
            for item in items:
                await self.ws.send_text(json.dumps({"type": "event", **item.to_json()}))
                self.sent = max(self.sent, item.cursor)

    async def _write(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._backlog()
            await self.ws.send_text(json.dumps({"type": "ready", "cursor": self.sent}))
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while (frame := self.queue.take()) is not None:
                    doc = json.loads(frame)
                    if doc.get("type") == "event":
                        if int(doc["cursor"]) <= self.sent:
                            continue
                        self.sent = int(doc["cursor"])
                    await self.ws.send_text(frame.decode())
                code = self.queue.close_code
                if code is not None:
                    self.closed_by = code
                    await self.ws.close(code=code)
                    return

    async def _read(self) -> None:
        # The page sends nothing on this socket; reading is how a close or disconnect is seen.
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        finally:
            self.queue.close()
            self.wakeup.set()

    async def _heartbeat(self) -> None:
        while self.ws.application_state == WebSocketState.CONNECTED:
            await asyncio.sleep(APP_HEARTBEAT_SECONDS)
            self.queue.offer(json.dumps({"type": "heartbeat", "cursor": self.sent}).encode())
            self.wakeup.set()


def _asset(name: str) -> bytes:
    try:
        return resources.files("kumix.web").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound(f"no static file {name[:100]}") from None


def build_app(live: LiveAccount, sessions: Sessions, *, checks: Checks | None = None,
              queue_frames: int = 256, queue_bytes: int = 4 * 1024 * 1024) -> tuple[ASGIApp, Api]:
    """The whole application, behind the guard."""
    api = Api(live, sessions, queue_frames=queue_frames, queue_bytes=queue_bytes)
    g = api.guarded

    async def not_found(request: Request, exc: Exception) -> Response:
        return api._json(error_document(NotFound(f"no route {request.url.path[:200]}")), 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return api._json(error_document(BadRequest(f"method {request.method} not allowed here")), 405)

    routes = [
        Route("/", g(api.index), methods=["GET"]),
        Route("/static/{name}", g(api.static), methods=["GET"]),
        Route("/api/openapi.json", g(api.openapi_doc), methods=["GET"]),
        Route("/api/whoami", g(api.whoami), methods=["GET"]),
        Route("/api/login", g(api.login), methods=["POST"]),
        Route("/api/logout", g(api.logout), methods=["POST"]),
        Route("/api/rooms", g(api.rooms), methods=["GET"]),
        Route("/api/rooms", g(api.create_room), methods=["POST"]),
        Route("/api/join", g(api.join), methods=["POST"]),
        Route("/api/rooms/{room_id}/leave", g(api.leave), methods=["POST"]),
        Route("/api/rooms/{room_id}/invite", g(api.invite), methods=["POST"]),
        Route("/api/rooms/{room_id}/events", g(api.events), methods=["GET"]),
        Route("/api/rooms/{room_id}/messages", g(api.send), methods=["POST"]),
        Route("/api/rooms/{room_id}/edit", g(api.edit), methods=["POST"]),
        Route("/api/rooms/{room_id}/react", g(api.react), methods=["POST"]),
        Route("/api/rooms/{room_id}/redact", g(api.redact), methods=["POST"]),
        Route("/api/rooms/{room_id}/typing", g(api.typing), methods=["POST"]),
        Route("/api/rooms/{room_id}/receipt", g(api.receipt), methods=["POST"]),
        Route("/api/rooms/{room_id}/upload", g(api.upload), methods=["POST"]),
        Route("/api/search", g(api.search), methods=["GET"]),
        Route("/api/media/{event_id}", g(api.media), methods=["GET"]),
        Route("/api/extensions", g(api.extensions), methods=["GET"]),
        Route("/api/extensions/{extension_id}/{action}", g(api.extension_action), methods=["POST"]),
        Route("/api/policy", g(api.policy), methods=["GET"]),
        Route("/api/policy/check", g(api.policy_check), methods=["GET"]),
        Route("/api/settings", g(api.get_settings), methods=["GET"]),
        Route("/api/settings", g(api.put_settings), methods=["PUT"]),
        WebSocketRoute("/api/events", api.events_socket),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return Guard(app, sessions, checks=checks), api
