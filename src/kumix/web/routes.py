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
import secrets
import shutil
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from kumix.app import client_settings
from kumix.app.kumix import Kumix
from kumix.app.verification_flows import Decision, Flow
from kumix.core.errors import BadRequest, InputTooLarge, KumixError, NotFound, VaultLocked
from kumix.core.models import FiguresUpdate, ReceiptsUpdate, Resync, RoomsUpdate, TimelineUpdate, TypingUpdate, Update
from kumix.web import openapi
from kumix.web.bridge_link import BridgeLink
from kumix.web.errors import error_document, status_of
from kumix.web.headers import page_csp
from kumix.web.media_rules import media_answer, sniffed_image_type
from kumix.web.security import ASGIApp, Checks, Guard
from kumix.web.send_queue import SendQueue
from kumix.web.sessions import Sessions

log = logging.getLogger(__name__)

MAX_JSON_BODY = 256 * 1024
MAX_PAGE = 200
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
SUBSCRIPTION_QUEUE = 1000
MAX_NONCES = 256
"""Page nonces remembered for mounting frames: one per answer with the page (tabs, reloads)."""
PAGE_SCRIPT = b'<script type="module" src="/static/main.js"></script>'
APP_HEARTBEAT_SECONDS = 15.0
"""An application-level heartbeat frame (with the current cursor) goes through each
connection's send queue this often, so a reader that stopped is found even when the
account is quiet."""

Handler = Callable[[Request], Awaitable[Response]]


class Api:
    def __init__(self, k: Kumix, sessions: Sessions, *, queue_frames: int = 256,
                 queue_bytes: int = 4 * 1024 * 1024) -> None:
        self.k = k
        self.sessions = sessions
        self.queue_frames = queue_frames
        self.queue_bytes = queue_bytes
        self.connections = 0
        self.cut_off = 0
        """Connections closed because their reader fell behind (CLOSE_TOO_SLOW)."""
        self.nonces: OrderedDict[str, None] = OrderedDict()
        """Nonces of the page answers given out: a frame is built only with one of these."""
        self.links: dict[str, BridgeLink] = {}
        """The UI-frame side of each open event WebSocket, by its connection id."""

    def _too_slow(self) -> None:
        self.cut_off += 1

    # -- plumbing ---------------------------------------------------------------------

    @staticmethod
    def _json(doc: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(doc, status_code=status)

    def guarded(self, handler: Handler, *, when_locked: bool = False) -> Handler:
        """`handler` with errors as JSON answers; unless `when_locked`, refused with
        `vault_locked` while the vault waits for its passphrase (only the page, the account
        question, login and the unlock itself answer then)."""
        async def run(request: Request) -> Response:
            try:
                if not when_locked and self.k.vault_locked():
                    raise VaultLocked("the credential vault is locked: give its passphrase first "
                                      "(POST /api/vault/unlock)")
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
        return self.k.known_room_id(str(request.path_params["room_id"]))

    # -- pages --------------------------------------------------------------------------

    def page(self) -> Response:
        """The page, with a nonce new for this answer in its CSP and on its script tag (where
        the page reads it to mount frames: the frames' inline scripts carry it)."""
        nonce = secrets.token_urlsafe(16)
        self.nonces[nonce] = None
        while len(self.nonces) > MAX_NONCES:
            self.nonces.popitem(last=False)
        body = _asset("index.html").replace(
            PAGE_SCRIPT, f'<script type="module" nonce="{nonce}" src="/static/main.js"></script>'.encode())
        egress = tuple(self.k.policy().ui.connect_src)
        return Response(body, media_type="text/html; charset=utf-8",
                        headers={"content-security-policy": page_csp(nonce, egress)})

    async def index(self, request: Request) -> Response:
        return self.page()

    async def extension_page(self, request: Request) -> Response:
        """`/ext/{id}?room=ROOM`: the page with only that UI extension mounted (for authors)."""
        extension_id = str(request.path_params["extension_id"])
        status = self.k.extension(extension_id)
        if status.manifest is None or status.manifest.kind != "ui":
            raise NotFound(f"{extension_id[:100]!r} is not a UI extension")
        room = request.query_params.get("room")
        if not room:
            raise BadRequest("room is required: /ext/ID?room=ROOM_ID")
        self.k.known_room_id(room)
        return self.page()

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        kind = name.rsplit(".", 1)[-1]
        # Checked on the path as given, segment by segment: no empty, dot or dot-dot segment
        # (so no traversal and no hidden file), and only the file types the page is made of.
        parts = name.split("/")
        if any(not part or part.startswith(".") or "\\" in part for part in parts) or kind not in STATIC_TYPES:
            raise NotFound(f"no static file {name[:100]}")
        return Response(_asset(*parts), media_type=STATIC_TYPES[kind])

    async def openapi_doc(self, request: Request) -> Response:
        return self._json(openapi.document())

    # -- account ------------------------------------------------------------------------

    def _whoami(self) -> dict[str, Any]:
        if not self.k.has_account():
            return {"logged_in": False, "account": None, "vault_locked": False}
        account = self.k.account()
        return {"logged_in": True, "vault_locked": self.k.vault_locked(), "account": {
            "user_id": account.user_id, "device_id": account.device_id, "homeserver": account.homeserver}}

    async def whoami(self, request: Request) -> Response:
        return self._json(self._whoami())

    async def login(self, request: Request) -> Response:
        doc = await self.body(request)
        homeserver = self.need(doc, "homeserver", max_len=2048)
        token = self.opt(doc, "access_token", max_len=4096)
        # The vault key question, answered in the page when this server has no passphrase
        # file and no keyring (the answer is `unauthorized`, reason `vault_passphrase_required`).
        vault = self.opt(doc, "vault_passphrase", max_len=4096)
        if vault == "":
            raise BadRequest("vault_passphrase must not be empty")
        # "": the page can ask, and has not been asked yet.
        vault = vault or ""
        if token:
            await self.k.login_token(homeserver, token, vault_passphrase=vault)
        else:
            await self.k.login_password(homeserver, self.need(doc, "user", max_len=255),
                                        self.need(doc, "password", max_len=4096), vault_passphrase=vault)
        # The server keeps the device from now on: sync and outbox run until it stops.
        await self.k.start_live()
        return self._json(self._whoami())

    async def unlock_vault(self, request: Request) -> Response:
        # The passphrase goes to the app layer and nowhere else: not logged, not echoed.
        passphrase = self.need(await self.body(request), "passphrase", max_len=4096)
        await self.k.unlock_vault(passphrase)
        del passphrase
        return self._json(self._whoami())

    async def logout(self, request: Request) -> Response:
        await self.k.logout()
        return self._json(self._whoami())

    # -- rooms --------------------------------------------------------------------------

    async def rooms(self, request: Request) -> Response:
        rooms = await self.k.rooms() if self.k.has_account() else []
        return self._json({"rooms": [r.to_json() | {"inviter": r.inviter} for r in rooms]})

    async def create_room(self, request: Request) -> Response:
        doc = await self.body(request)
        invite = doc.get("invite", [])
        if not isinstance(invite, list) or not all(isinstance(u, str) and u for u in invite) or len(invite) > 50:
            raise BadRequest("invite must be a list of up to 50 user ids")
        encrypted = self.flag(doc, "encrypted", True)
        if self.flag(doc, "direct", False):
            if len(invite) != 1:
                raise BadRequest("a direct chat invites exactly one user")
            room_id = await self.k.create_room(encrypted=encrypted, direct_with=invite[0])
        else:
            room_id = await self.k.create_room(
                name=self.opt(doc, "name", max_len=255), topic=self.opt(doc, "topic", max_len=4096),
                encrypted=encrypted, invite=tuple(invite))
        return self._json({"room_id": room_id})

    async def join(self, request: Request) -> Response:
        room = self.need(await self.body(request), "room", max_len=255)
        return self._json({"room_id": await self.k.join(room)})

    async def leave(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.k.leave(room_id)
        return self._json({"room_id": room_id})

    async def invite(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.k.invite(room_id, self.need(await self.body(request), "user_id", max_len=255))
        return self._json({"room_id": room_id})

    async def events(self, request: Request) -> Response:
        room_id = self.room_id(request)
        limit = self.int_param(request, "limit", 50, 1, MAX_PAGE) or 50
        after = self.int_param(request, "after", None, -(2**62), 2**62)
        before = self.int_param(request, "before", None, -(2**62), 2**62)
        if after is not None and before is not None:
            raise BadRequest("give before or after, not both")
        page = await self.k.timeline(room_id, before=before, after=after, limit=limit)
        return self._json({"events": [{"cursor": u.cursor, "event": u.event.to_json()} for u in page.updates],
                           "before": page.before, "after": page.after})

    async def send(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        result = await self.k.send_text(room_id, self.need(doc, "text"), markdown=self.flag(doc, "markdown", True),
                                        reply_to=self.opt(doc, "reply_to", max_len=255))
        return self._json(result.to_json())

    async def markdown_preview(self, request: Request) -> Response:
        # The same path as a send (extension, then nh3): what the preview shows is what goes out.
        html = await self.k.preview_markdown(self.need(await self.body(request), "text"))
        return self._json({"html": html})

    async def edit(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        result = await self.k.edit(room_id, self.need(doc, "event_id", max_len=255), self.need(doc, "text"),
                                   markdown=self.flag(doc, "markdown", True))
        return self._json(result.to_json())

    async def react(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        result = await self.k.react(room_id, self.need(doc, "event_id", max_len=255),
                                    self.need(doc, "key", max_len=64))
        return self._json(result.to_json())

    async def redact(self, request: Request) -> Response:
        room_id = self.room_id(request)
        doc = await self.body(request)
        result = await self.k.redact(room_id, self.need(doc, "event_id", max_len=255),
                                     self.opt(doc, "reason", max_len=1024))
        return self._json(result.to_json())

    async def typing(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.k.typing(room_id, self.flag(await self.body(request), "typing", True))
        return self._json({"room_id": room_id})

    async def receipt(self, request: Request) -> Response:
        room_id = self.room_id(request)
        await self.k.read_receipt(room_id, self.need(await self.body(request), "event_id", max_len=255))
        return self._json({"room_id": room_id})

    async def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        if not q or len(q) > 1024:
            raise BadRequest("q must be 1 to 1024 characters")
        room = request.query_params.get("room") or None
        if room is not None:
            self.k.known_room_id(room)
        limit = self.int_param(request, "limit", 50, 1, MAX_PAGE) or 50
        hits = await self.k.search(q, room=room, limit=limit) if self.k.has_account() else []
        return self._json({"hits": [h.to_json() for h in hits]})

    # -- media --------------------------------------------------------------------------

    @staticmethod
    def file_name(request: Request) -> str:
        name = request.query_params.get("name", "")
        if not name or len(name) > 255 or "/" in name or name in (".", "..") or "\0" in name:
            raise BadRequest("name must be a file name of 1 to 255 characters")
        return name

    @staticmethod
    async def file_body(request: Request) -> bytes:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise InputTooLarge(f"file larger than {MAX_UPLOAD_BYTES} bytes")
        return bytes(data)

    async def upload_only(self, request: Request) -> Response:
        name = self.file_name(request)
        data = await self.file_body(request)
        mimetype = request.headers.get("content-type", "").split(";")[0].strip()[:255] or "application/octet-stream"
        return self._json({"url": await self.k.upload_media(data, name=name, mimetype=mimetype)})

    async def room_avatar(self, request: Request) -> Response:
        data = await self.k.room_avatar(self.room_id(request))
        answer = media_answer(sniffed_image_type(data), "avatar", data)
        return Response(data, media_type=answer.content_type, headers=dict(answer.headers))

    async def upload(self, request: Request) -> Response:
        room_id = self.room_id(request)
        name = self.file_name(request)
        data = await self.file_body(request)
        # Kumix sends files by path: the upload goes through a private directory of the
        # data directory, under the name the page gave, and is removed right after.
        spool = self.k.settings.data_dir / "uploads" / secrets.token_hex(8)
        spool.mkdir(parents=True, mode=0o700)
        try:
            path = spool / name
            path.write_bytes(data)
            result = await self.k.send_file(room_id, path)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        return self._json(result.to_json())

    async def media(self, request: Request) -> Response:
        event = self.k.event(str(request.path_params["event_id"]))
        if event.attachment is None:
            raise NotFound(f"event {event.event_id[:255]} has no attachment")
        data = await self.k.download(event)
        answer = media_answer(event.attachment.mimetype, event.attachment.name, data)
        return Response(data, media_type=answer.content_type, headers=dict(answer.headers))

    # -- extensions, policy, settings -------------------------------------------------------

    async def extensions(self, request: Request) -> Response:
        rows = []
        for status in self.k.extensions():
            row = self._extension_row(status.id, status.to_json())
            row["figures"] = self.k.figures(status.id)
            rows.append(row)
        return self._json({"extensions": rows})

    def _extension_row(self, extension_id: str, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("kind") == "ui":
            row["send_always_allowed"] = self.k.ui_frames.send_always_allowed(extension_id)
        return row

    async def extension_action(self, request: Request) -> Response:
        extension_id = str(request.path_params["extension_id"])
        action = str(request.path_params["action"])
        if action == "enable":
            status = await self.k.enable_extension(extension_id)
        elif action == "disable":
            status = await self.k.disable_extension(extension_id)
        elif action == "grant":
            status = self.k.grant(extension_id, self.need(await self.body(request), "capability", max_len=255))
        elif action == "revoke-send":
            # "Allow for this extension" taken back: every later send is confirmed again.
            self.k.extension(extension_id)
            self.k.ui_frames.revoke_send_approval(extension_id)
            status = self.k.extension(extension_id)
        else:
            raise NotFound(f"no extension action {action[:64]}")
        return self._json(self._extension_row(status.id, status.to_json()))

    # -- UI frames ----------------------------------------------------------------------

    async def mount_frame(self, request: Request) -> Response:
        """Mount a UI extension for a room on the page's event WebSocket (`connection` from
        its hello frame); answers what the page sets on the iframe."""
        doc = await self.body(request)
        nonce = self.need(doc, "nonce", max_len=128)
        if nonce not in self.nonces:
            raise BadRequest("nonce is not the nonce of a page this server gave out")
        link = self.links.get(self.need(doc, "connection", max_len=64))
        if link is None or not link.owned_by(request.cookies.get(self.sessions.cookie)):
            raise NotFound("no event connection of this session with that id")
        room_id = self.k.known_room_id(self.need(doc, "room", max_len=255))
        settings = client_settings.load(self.k.settings.data_dir)
        # The page says which theme it shows (a choice just made may not be saved yet);
        # anything but a known theme name falls back to the saved one.
        theme = self.opt(doc, "theme", max_len=16)
        if theme not in client_settings.THEMES:
            theme = settings.get("theme", "system")
        frame = await link.mount(self.need(doc, "extension", max_len=255), room_id=room_id,
                           host_origin=f"http://{request.headers['host']}", nonce=nonce,
                           theme={"name": theme}, language=settings.get("language", "en"))
        return self._json(frame.to_json())

    async def policy(self, request: Request) -> Response:
        policy = self.k.policy()
        doc = policy.to_json()
        doc["source"] = policy.source
        return self._json(doc)

    async def policy_check(self, request: Request) -> Response:
        rows = [{"id": s.id, "allowed": bool(s.decision.allowed) if s.decision else False, "state": s.state,
                 "reason": s.reason} for s in self.k.extensions()]
        return self._json({"policy": self.k.policy().name, "extensions": rows})

    async def get_settings(self, request: Request) -> Response:
        return self._json(client_settings.load(self.k.settings.data_dir))

    async def theme(self, request: Request) -> Response:
        return self._json(await self.k.theme_tokens())

    async def put_settings(self, request: Request) -> Response:
        doc = await self.body(request)
        theme = self.opt(doc, "theme", max_len=16)
        saved = client_settings.update(self.k.settings.data_dir, theme=theme,
                                       language=self.opt(doc, "language", max_len=35))
        if theme is not None:
            await self._push_theme(saved.get("theme", "system"), request.cookies.get(self.sessions.cookie))
        return self._json(saved)

    async def _push_theme(self, name: str, session_id: str | None) -> None:
        """The UI frames this session's pages show follow the theme the person chose."""
        links = [link for link in self.links.values() if link.owned_by(session_id) and link.frames]
        if not links:
            return
        tokens: dict[str, str] = {}
        if name in ("light", "dark"):
            with contextlib.suppress(KumixError):
                chosen = (await self.k.theme_tokens()).get(name)
                if isinstance(chosen, dict):
                    tokens = {str(k): str(v) for k, v in chosen.items()}
        for link in links:
            link.push_theme(name, tokens)

    # -- encryption trust ---------------------------------------------------------------
    # The use cases are `kumix.app.encryption` and `kumix.app.verification_flows`; secrets
    # a request carries (password, recovery key, passphrase) go straight to them and are
    # never logged or echoed; the new recovery key is in its one answer and nowhere else.

    async def encryption(self, request: Request) -> Response:
        e = await self.k.encryption()
        return self._json({
            "cross_signing": (await e.cross_signing_status()).to_json(),
            "recovery": (await e.recovery_status()).to_json(),
            "backup": (await e.backup_status()).to_json(),
            "exclude_insecure_devices": self.k.exclude_insecure_devices(),
        })

    async def encryption_settings(self, request: Request) -> Response:
        doc = await self.body(request)
        value = doc.get("exclude_insecure_devices")
        if value is not None and not isinstance(value, bool):
            raise BadRequest("exclude_insecure_devices must be true or false")
        return self._json({"exclude_insecure_devices": self.k.exclude_insecure_devices(value)})

    async def bootstrap_cross_signing(self, request: Request) -> Response:
        doc = await self.body(request)
        password = self.opt(doc, "password", max_len=4096)
        reset = self.flag(doc, "reset", False)

        async def ask() -> str | None:
            return password

        done, status = await (await self.k.encryption()).bootstrap_cross_signing(ask, reset=reset)
        return self._json({"done": done, "cross_signing": status.to_json()})

    async def set_up_recovery(self, request: Request) -> Response:
        e = await self.k.encryption()
        key = await e.set_up_recovery()
        return self._json({"recovery_key": key, "recovery": (await e.recovery_status()).to_json()})

    async def use_recovery(self, request: Request) -> Response:
        doc = await self.body(request)
        key = self.opt(doc, "recovery_key", max_len=1024)
        passphrase = self.opt(doc, "passphrase", max_len=4096)
        if (key is None) == (passphrase is None):
            raise BadRequest("give recovery_key or passphrase (one of them)")
        status = await (await self.k.encryption()).use_recovery(recovery_key=key, passphrase=passphrase)
        return self._json({"cross_signing": status.to_json()})

    async def enable_backup(self, request: Request) -> Response:
        e = await self.k.encryption()
        version = await e.enable_backup()
        return self._json({"version": version.version, "backup": (await e.backup_status()).to_json()})

    async def restore_backup(self, request: Request) -> Response:
        # No refresh first: the server's sync loop keeps local state current (a refresh
        # would wait for its next long poll).
        return self._json((await (await self.k.encryption()).restore_backup()).to_json())

    async def devices(self, request: Request) -> Response:
        user = request.query_params.get("user") or None
        if user is not None and (len(user) > 255 or not user.startswith("@")):
            raise BadRequest("user must be a Matrix user id of up to 255 characters")
        return self._json((await (await self.k.encryption()).devices(user)).to_json())

    async def accept_new_identity(self, request: Request) -> Response:
        user = self.need(await self.body(request), "user", max_len=255)
        if not user.startswith("@"):
            raise BadRequest("user must be a Matrix user id")
        return self._json((await (await self.k.encryption()).devices(user, accept_new_identity=True)).to_json())

    async def verifications(self, request: Request) -> Response:
        flows = await self.k.verifications()
        return self._json({"verifications": [f.to_json() for f in flows.list()]})

    async def start_verification(self, request: Request) -> Response:
        doc = await self.body(request)
        flows = await self.k.verifications()
        room = self.opt(doc, "room", max_len=255)
        flow = flows.ask(self.need(doc, "user", max_len=255), self.opt(doc, "device", max_len=255),
                         self.k.known_room_id(room) if room else None)
        return self._json(flow.to_json())

    async def verification(self, request: Request) -> Response:
        flows = await self.k.verifications()
        return self._json(flows.get(str(request.path_params["flow_id"])).to_json())

    async def verification_action(self, request: Request) -> Response:
        action = str(request.path_params["action"])
        decision = VERIFICATION_ACTIONS.get(action)
        if decision is None:
            raise NotFound(f"no verification action {action[:64]}")
        flows = await self.k.verifications()
        flow = flows.decide(str(request.path_params["flow_id"]), decision)
        return self._json(flow.to_json())

    # -- events -------------------------------------------------------------------------

    async def events_socket(self, ws: WebSocket) -> None:
        raw_cursor = ws.query_params.get("cursor")
        try:
            cursor = int(raw_cursor) if raw_cursor is not None else None
        except ValueError:
            await ws.close(code=1008)
            return
        if self.k.vault_locked():
            # Nothing to stream until the vault is unlocked; the page opens the feed after that.
            await ws.close(code=1008)
            return
        await ws.accept()
        self.connections += 1
        stream = EventStream(self.k, ws, SendQueue(self.queue_frames, self.queue_bytes), on_too_slow=self._too_slow,
                             session_id=ws.cookies.get(self.sessions.cookie))
        self.links[stream.link.connection_id] = stream.link
        try:
            await stream.run(cursor)
        finally:
            self.connections -= 1
            self.links.pop(stream.link.connection_id, None)
            stream.link.close()


VERIFICATION_ACTIONS: dict[str, Decision] = {"accept": "accept", "confirm": "confirm", "mismatch": "mismatch",
                                             "cancel": "cancel"}


def update_frame(update: Update) -> dict[str, Any]:
    if isinstance(update, TimelineUpdate):
        return {"type": "event", "cursor": update.cursor, "event": update.event.to_json()}
    if isinstance(update, RoomsUpdate):
        return {"type": "rooms", "rooms": [r.to_json() | {"inviter": r.inviter} for r in update.rooms]}
    if isinstance(update, TypingUpdate):
        return {"type": "typing"} | update.to_json()
    if isinstance(update, ReceiptsUpdate):
        return {"type": "receipts"} | update.to_json()
    if isinstance(update, FiguresUpdate):
        return {"type": "figures", "extension_id": update.extension_id, "live": update.figures}
    return {"type": "resync", "cursor": update.cursor}


class EventStream:
    """One WebSocket's feed. A pump moves the account's updates (missed ones replayed from
    the store first, by cursor; each at most once) into the connection's bounded send
    queue without ever waiting; a writer drains that queue as fast as the peer reads.
    A peer that stops reading overflows the queue and is closed with CLOSE_TOO_SLOW."""

    def __init__(self, k: Kumix, ws: WebSocket, queue: SendQueue,
                 on_too_slow: Callable[[], None] = lambda: None, session_id: str | None = None) -> None:
        self.k = k
        self.ws = ws
        self.queue = queue
        self.on_too_slow = on_too_slow
        self.wakeup = asyncio.Event()
        self.link = BridgeLink(k, self.offer, session_id)

    def offer(self, frame: dict[str, Any]) -> bool:
        accepted = self.queue.offer(json.dumps(frame).encode())
        if not accepted and self.queue.state == "overflowed":
            self.on_too_slow()
        self.wakeup.set()
        return accepted

    async def run(self, cursor: int | None) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if self.k.has_account():
                # Incoming verification requests as frames too (the page need not poll).
                def incoming(flow: Flow) -> None:
                    self.offer({"type": "verification", "verification": flow.to_json()})

                with contextlib.suppress(KumixError):
                    stack.enter_context((await self.k.verifications()).on_incoming(incoming))
            await self._run(cursor)

    async def _run(self, cursor: int | None) -> None:
        start = self.k.cursor() if cursor is None else cursor
        # The cursor the replay runs up to: frames with a cursor at or below it are catch-up.
        self.offer({"type": "hello", "cursor": self.k.cursor(), "from": start,
                    "connection": self.link.connection_id})
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(self._pump(start))
            reader = tg.create_task(self._read(tg))
            beat = tg.create_task(self._heartbeat())
            try:
                await self._write()
            finally:
                for task in (pump, reader, beat):
                    task.cancel()

    async def _pump(self, cursor: int) -> None:
        while self.queue.state == "open":
            async with self.k.subscribe(since=cursor, maxsize=SUBSCRIPTION_QUEUE) as sub:
                async for update in sub:
                    if isinstance(update, Resync):
                        # This pump fell behind the account (not the peer): replay from the
                        # store from the last cursor it handled, in a fresh subscription.
                        cursor = update.cursor
                        break
                    if isinstance(update, TimelineUpdate):
                        fresh = update.cursor > cursor
                        cursor = max(cursor, update.cursor)
                        if fresh:
                            self.link.push(update.event)
                    if not self.offer(update_frame(update)):
                        return

    async def _write(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while (frame := self.queue.take()) is not None:
                    await self.ws.send_text(frame.decode())
                code = self.queue.close_code
                if code is not None:
                    await self.ws.close(code=code)
                    return

    async def _read(self, tg: asyncio.TaskGroup) -> None:
        # The page sends only its UI frames' bridge traffic; reading is also how a close or
        # disconnect is seen. Anything else is ignored.
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if not isinstance(text, str):
                    continue
                try:
                    doc = json.loads(text)
                except (ValueError, RecursionError):
                    continue
                if isinstance(doc, dict) and str(doc.get("type", "")).startswith("bridge"):
                    await self.link.receive(doc, tg)
        finally:
            self.queue.close()
            self.wakeup.set()

    async def _heartbeat(self) -> None:
        while self.ws.application_state == WebSocketState.CONNECTED:
            await asyncio.sleep(APP_HEARTBEAT_SECONDS)
            self.offer({"type": "heartbeat", "cursor": self.k.cursor()})


STATIC_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
}
"""What the client (`kumix/web/client/`) is made of; anything else there is not served."""


def _asset(*parts: str) -> bytes:
    try:
        return resources.files("kumix.web").joinpath("client", *parts).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"no static file {'/'.join(parts)[:100]}") from None


def build_app(k: Kumix, sessions: Sessions, *, checks: Checks | None = None,
              queue_frames: int = 256, queue_bytes: int = 4 * 1024 * 1024) -> tuple[ASGIApp, Api]:
    """The whole application, behind the guard."""
    api = Api(k, sessions, queue_frames=queue_frames, queue_bytes=queue_bytes)
    g = api.guarded

    async def not_found(request: Request, exc: Exception) -> Response:
        return api._json(error_document(NotFound(f"no route {request.url.path[:200]}")), 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return api._json(error_document(BadRequest(f"method {request.method} not allowed here")), 405)

    routes = [
        Route("/", g(api.index, when_locked=True), methods=["GET"]),
        Route("/ext/{extension_id}", g(api.extension_page), methods=["GET"]),
        Route("/api/ui/frames", g(api.mount_frame), methods=["POST"]),
        Route("/static/{name:path}", g(api.static, when_locked=True), methods=["GET"]),
        Route("/api/openapi.json", g(api.openapi_doc, when_locked=True), methods=["GET"]),
        Route("/api/whoami", g(api.whoami, when_locked=True), methods=["GET"]),
        Route("/api/login", g(api.login, when_locked=True), methods=["POST"]),
        Route("/api/vault/unlock", g(api.unlock_vault, when_locked=True), methods=["POST"]),
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
        Route("/api/rooms/{room_id}/avatar", g(api.room_avatar), methods=["GET"]),
        Route("/api/upload", g(api.upload_only), methods=["POST"]),
        Route("/api/markdown/preview", g(api.markdown_preview), methods=["POST"]),
        Route("/api/search", g(api.search), methods=["GET"]),
        Route("/api/media/{event_id}", g(api.media), methods=["GET"]),
        Route("/api/extensions", g(api.extensions), methods=["GET"]),
        Route("/api/extensions/{extension_id}/{action}", g(api.extension_action), methods=["POST"]),
        Route("/api/policy", g(api.policy), methods=["GET"]),
        Route("/api/policy/check", g(api.policy_check), methods=["GET"]),
        Route("/api/settings", g(api.get_settings), methods=["GET"]),
        Route("/api/settings", g(api.put_settings), methods=["PUT"]),
        Route("/api/theme", g(api.theme), methods=["GET"]),
        Route("/api/encryption", g(api.encryption), methods=["GET"]),
        Route("/api/encryption/settings", g(api.encryption_settings), methods=["PUT"]),
        Route("/api/encryption/cross-signing", g(api.bootstrap_cross_signing), methods=["POST"]),
        Route("/api/encryption/recovery", g(api.set_up_recovery), methods=["POST"]),
        Route("/api/encryption/recovery/use", g(api.use_recovery), methods=["POST"]),
        Route("/api/encryption/backup", g(api.enable_backup), methods=["POST"]),
        Route("/api/encryption/backup/restore", g(api.restore_backup), methods=["POST"]),
        Route("/api/devices", g(api.devices), methods=["GET"]),
        Route("/api/devices/accept-new-identity", g(api.accept_new_identity), methods=["POST"]),
        Route("/api/verifications", g(api.verifications), methods=["GET"]),
        Route("/api/verifications", g(api.start_verification), methods=["POST"]),
        Route("/api/verifications/{flow_id}", g(api.verification), methods=["GET"]),
        Route("/api/verifications/{flow_id}/{action}", g(api.verification_action), methods=["POST"]),
        WebSocketRoute("/api/events", api.events_socket),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return Guard(app, sessions, checks=checks), api
