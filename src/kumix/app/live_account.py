"""One account kept live for a long-running front end (`kumix serve`): the device held, sync
and outbox running, and a change feed with cursors that pages can resume from.

`open_live_account(settings)` owns every background task in its task group: the Matrix
session task (started at open when the data directory is logged in, or by `login`) and
nothing else; leaving the context stops it and releases the device.

Cursors are the store's event positions (`seq`): new events count up across all rooms, so
"everything after cursor C" is one query, and a front end that reconnects with the last
cursor it saw gets exactly what it missed. Events already sent that change later (a late
decryption) are published as `changed` with their old cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kumix.app.extensions import ExtensionService
from kumix.app.markdown import extension_renderer
from kumix.app.matrix_session import MatrixService, Session
from kumix.app.settings import Settings
from kumix.core.errors import BadRequest, KumixError, NotFound, Unauthorized, Unavailable
from kumix.core.models import Account, Event, Room, SyncBatch
from kumix.extensions.policy import Policy, load_policy
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.extension_stats import ExtensionStatsStore
from kumix.store.outbox import OutboxEntry
from kumix.store.timeline import event_seq

log = logging.getLogger(__name__)

Frame = dict[str, Any]
"""One change as a JSON document: {"type": "event"|"changed", "cursor", "event"} or
{"type": "rooms", "rooms": [...]}."""

Subscriber = Callable[[Frame], None]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
CLIENT_SETTINGS_FILE = "client-settings.json"
THEMES = ("system", "light", "dark")
DEFAULT_CLIENT_SETTINGS = {"theme": "system", "language": "en"}


@dataclass(frozen=True)
class TimelineItem:
    cursor: int
    event: Event

    def to_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "event": self.event.to_json()}


class LiveAccount:
    def __init__(self, settings: Settings, service: MatrixService, extensions: ExtensionService | None,
                 policy: Policy | None, tg: asyncio.TaskGroup) -> None:
        self.settings = settings
        self.service = service
        self.extensions = extensions
        self.policy = policy
        self._tg = tg
        self._session: Session | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._subscribers: list[Subscriber] = []
        self._published_cursor = service.timeline.last_seq()
        self.sync_problem: str | None = None
        """Why the homeserver cannot be reached right now (None while syncing works)."""

    # -- session lifecycle --------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.service.timeline.account() is not None

    def account(self) -> Account | None:
        return self.service.timeline.account()

    async def start_session(self) -> None:
        """Take the device and start syncing; a device another process holds is `state_busy`."""
        if self._session_task is not None:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._session_task = self._tg.create_task(self._run_session(ready))
        try:
            await ready
        except BaseException:
            self._session_task = None
            raise

    async def _run_session(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self.service.session() as s:
                s.add_listener(self._on_event)
                s.add_batch_listener(self._on_batch)
                self._session = s
                ready.set_result(None)
                try:
                    await s.run(self._stop, on_retry=self._on_retry)
                finally:
                    self._session = None
        except KumixError as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("matrix session ended: %s", exc)

    def _on_retry(self, exc: Unavailable, delay: float) -> None:
        self.sync_problem = f"{exc.message}; retrying in {delay:.1f} s"

    async def stop_session(self) -> None:
        task = self._session_task
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(KumixError):
            await task
        self._session_task = None

    def session(self) -> Session:
        if self._session is None:
            raise Unauthorized("not logged in to a Matrix account")
        return self._session

    async def login_password(self, homeserver: str, user: str, password: str) -> Account:
        account = await self.service.login_password(homeserver, user, password)
        await self.start_session()
        return account

    async def login_token(self, homeserver: str, access_token: str) -> Account:
        account = await self.service.login_token(homeserver, access_token)
        await self.start_session()
        return account

    async def logout(self) -> None:
        await self.stop_session()
        await self.service.logout()

    # -- change feed ----------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every change from now on (synchronously, in the loop);
        returns the function that ends the subscription."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, frame: Frame) -> None:
        for subscriber in list(self._subscribers):
            subscriber(frame)

    def _on_event(self, ev: Event) -> None:
        seq = event_seq(self.service.db, ev.event_id)
        if seq is None:
            return
        if seq > self._published_cursor:
            self._published_cursor = seq
            kind = "event"
        else:
            kind = "changed"
        self.publish({"type": kind, "cursor": seq, "event": ev.to_json()})

    def _on_batch(self, batch: SyncBatch) -> None:
        self.sync_problem = None
        if batch.rooms or batch.left_rooms:
            self.publish({"type": "rooms", "rooms": [r.to_json() for r in self.rooms()]})

    def publish_extension_figures(self) -> None:
        if self.extensions is None or self.extensions.stats_store is None:
            return
        figures = {s.id: self.extensions.stats_store.load(s.id) for s in self.extensions.list()}
        self.publish({"type": "extensions", "figures": figures})

    def cursor(self) -> int:
        return self.service.timeline.last_seq()

    def events_after(self, cursor: int, *, room_id: str | None = None, limit: int = 200) -> list[TimelineItem]:
        return [TimelineItem(seq, ev) for seq, ev in self.service.timeline.events_after(
            cursor, room_id=room_id, limit=limit)]

    # -- rooms and timeline ---------------------------------------------------------------

    def rooms(self) -> list[Room]:
        return self.service.timeline.rooms()

    def room(self, room_id: str) -> Room:
        room = self.service.timeline.room(room_id)
        if room is None:
            raise NotFound(f"not a room of this account: {room_id[:255]}")
        return room

    async def page_before(self, room_id: str, before: int | None, limit: int) -> list[TimelineItem]:
        """The newest `limit` events before cursor `before`, oldest first; topped up from the
        homeserver (backward pagination) when the cache holds fewer."""
        self.room(room_id)
        items = self.service.timeline.events_with_seq(room_id, limit=limit, before_seq=before)
        if len(items) < limit and self._session is not None:
            try:
                await self._session.paginate(room_id, limit - len(items))
            except Unavailable:
                pass  # offline: what the cache holds is the page
            else:
                items = self.service.timeline.events_with_seq(room_id, limit=limit, before_seq=before)
        return [TimelineItem(seq, ev) for seq, ev in items]

    def page_after(self, room_id: str, after: int, limit: int) -> list[TimelineItem]:
        self.room(room_id)
        return self.events_after(after, room_id=room_id, limit=limit)

    def event(self, event_id: str) -> Event:
        ev = self.service.timeline.event(event_id)
        if ev is None:
            raise NotFound(f"unknown event {event_id[:255]}")
        return ev

    async def upload(self, room_id: str, data: bytes, *, name: str, mimetype: str | None) -> OutboxEntry:
        """Upload a file from memory (encrypted when the room is) and queue its event."""
        s = self.session()
        room = self.room(room_id)
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadRequest(f"file larger than {MAX_UPLOAD_BYTES} bytes")
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        encrypted = s.client.room_is_encrypted(room_id)
        if encrypted is None:
            encrypted = room.encrypted
        url, keys = await s.client.upload(data, filename=name, mimetype=mimetype, encrypt=encrypted)
        msgtype = "m.image" if mimetype.startswith("image/") else "m.file"
        content: dict[str, Any] = {"msgtype": msgtype, "body": name, "info": {"mimetype": mimetype, "size": len(data)}}
        if keys is not None:
            content["file"] = {**keys, "url": url}
        else:
            content["url"] = url
        return await s.enqueue(room_id, "m.room.message", content)

    async def download(self, event_id: str) -> tuple[Event, bytes]:
        ev = self.event(event_id)
        return ev, await self.session().download(ev)

    # -- client settings ------------------------------------------------------------------

    def client_settings(self) -> dict[str, str]:
        """The page's own preferences (theme, language), kept in the data directory."""
        path = self.settings.data_dir / CLIENT_SETTINGS_FILE
        doc: dict[str, str] = dict(DEFAULT_CLIENT_SETTINGS)
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                doc.update({k: v for k, v in loaded.items() if k in doc and isinstance(v, str)})
        return doc

    def update_client_settings(self, *, theme: str | None = None, language: str | None = None) -> dict[str, str]:
        doc = self.client_settings()
        if theme is not None:
            if theme not in THEMES:
                raise BadRequest(f"theme must be one of {', '.join(THEMES)}")
            doc["theme"] = theme
        if language is not None:
            if not re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", language):
                raise BadRequest("language must be a BCP 47 tag such as en or pt-BR")
            doc["language"] = language
        path = self.settings.data_dir / CLIENT_SETTINGS_FILE
        # Atomic: a crash mid-write leaves the old file, never half of a new one.
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return doc

    # -- extensions and policy ------------------------------------------------------------

    def require_extensions(self) -> ExtensionService:
        if self.extensions is None:
            raise Unavailable("the extension system could not be loaded (check the policy)")
        return self.extensions


@contextlib.asynccontextmanager
async def open_live_account(settings: Settings, *, env: Mapping[str, str] | None = None,
                            start: bool = True) -> AsyncIterator[LiveAccount]:
    """The account of `settings.data_dir`, live until the context ends. With `start`, a
    logged-in data directory starts its session (taking the device) before this yields."""
    settings.ensure_data_dir()
    db = Database(settings.state_db)
    try:
        policy: Policy | None
        extensions: ExtensionService | None
        try:
            policy = load_policy(settings.policy)
            extensions = ExtensionService(policy, ExtensionStateStore(db), settings.extension_roots,
                                          stats_store=ExtensionStatsStore(db))
        except KumixError as exc:
            log.warning("extension system unavailable: %s", exc)
            policy, extensions = None, None
        async with extension_renderer(extensions, settings) as renderer:
            service = MatrixService(settings.data_dir, db, env=env, interactive=False, renderer=renderer,
                                    command="kumix serve")
            async with asyncio.TaskGroup() as tg:
                live = LiveAccount(settings, service, extensions, policy, tg)
                try:
                    if start and live.logged_in:
                        await live.start_session()
                    yield live
                finally:
                    await live.stop_session()
    finally:
        db.close()
