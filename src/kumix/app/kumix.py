"""`Kumix`: the one object a front end (the CLI, the web server) talks to.

    async with Kumix.open(settings) as k:           # one task group for everything below
        rooms = await k.rooms()
        async with k.subscribe(rooms={room_id}) as events:
            async for update in events: ...

`Kumix.open` owns one task group: the sync loop and the outbox loop (started by
`live=True` or `start_live()`), the proc extension host with its fork server (started on
the first extension call) and, later, the web server. Leaving the block cancels every
task and closes every resource; an error in any task cancels the block's body and the
other tasks, and comes out of `async with` as that error. No stop flag exists anywhere:
cancellation is the only way to stop, so nothing can forget to check one.

Use cases return `kumix.core` models and raise `kumix.core.errors` (grouped by what a caller
does about them). Messages describe the situation, never a command to type: each front end
adds its own hint.

The device (one account's end-to-end keys) is used by one process at a time. When
another Kumix process holds it, `holder` says which, and use cases answer from the local
state that process keeps up to date; a text message is handed to it through the shared
outbox (`send_text`), and what needs the keys themselves raises `StateBusy`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

from kumix.app.settings import Settings
from kumix.core.errors import BadRequest, KumixError, NotFound, StateBusy, Transient, Unavailable, WrongPassphrase

# The event hub, the Matrix models and the outbox are imported where they are used: the
# commands that read local state only (`kumix ext list`, `ext info`, `policy check`) never
# touch them, and their dataclasses alone cost such a start ~15 ms.
TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from kumix.app.early_start import EarlyForkServer
    from kumix.app.encryption import Encryption
    from kumix.app.events import EventHub, Subscription
    from kumix.app.extension_calls import ExtensionCaller
    from kumix.app.extensions import ExtensionService, ExtensionStatus
    from kumix.app.matrix_session import MatrixService, Session
    from kumix.app.ui_frames import UiFrames
    from kumix.app.verification_flows import VerificationFlows
    from kumix.core.models import Account, DeviceHolder, Event, Room, SearchHit, TimelinePage, TimelineUpdate
    from kumix.core.outbox import OutboxEntry
    from kumix.extensions.policy import Policy
    from kumix.store.database import Database

Notice = Callable[[str], None]
"""Where the core says what it does instead (offline, device held elsewhere) or how far
a long operation is; a front end shows it (the CLI on stderr)."""

UNLOCK_FREE_TRIES = 3
UNLOCK_MAX_DELAY = 30.0
"""The vault unlock's back-off: wrong passphrases beyond the first few in a row each wait
1, 2, 4 ... seconds (at most this long) before they are answered."""
HANDOFF_WAIT_SECONDS = 30.0
"""How long `send_text` waits for the process holding the device to deliver a handed-over message."""


def _quiet(_: str) -> None:
    pass


class SendResult:
    """What became of a message: its outbox entry (state `sent` with an event id, or
    `pending` while the homeserver is unreachable) and, when another process holds the
    device, that process (the message was handed to it)."""

    def __init__(self, entry: OutboxEntry, handed_to: DeviceHolder | None = None) -> None:
        self.entry = entry
        self.handed_to = handed_to

    @property
    def sent(self) -> bool:
        from kumix.core.outbox import OutboxState

        return self.entry.state is OutboxState.SENT

    def to_json(self) -> dict[str, Any]:
        doc = self.entry.to_json()
        if self.handed_to is not None:
            doc["handed_to"] = self.handed_to.to_json()
        return doc



THEME_EXTENSION = "theme-default"
THEME_METHOD = "theme.tokens.provide"

class Kumix:
    """Application core for one data directory. Create it with `Kumix.open`."""

    def __init__(self, settings: Settings, tasks: asyncio.TaskGroup | None, *, env: Mapping[str, str] | None,
                 interactive: bool | None, notice: Notice, command: str,
                 fork_server: EarlyForkServer | None = None) -> None:
        self.settings = settings
        self._early_fork_server = fork_server
        """Launched before `open` by the front end (early_start.py); the extension host
        adopts it, or this `Kumix` closes it when it closes unused."""
        self._tasks = tasks
        self._background: list[asyncio.Task[None]] = []
        self._env = env
        self._interactive = interactive
        self._notice = notice
        self._command = command
        self._resources = AsyncExitStack()
        self._session_stack = AsyncExitStack()
        """The Matrix session (and the device it holds), closable on its own for logout."""
        self._resources.push_async_exit(self._session_stack)
        self._live_task: asyncio.Task[None] | None = None
        self._closers = ExitStack()
        """Resources that close without awaiting (the database), closed after `_resources`."""
        self._events: EventHub | None = None
        self._db: Database | None = None
        self._policy: Policy | None = None
        self._extensions: ExtensionService | None = None
        self._caller: ExtensionCaller | None = None
        self._service: MatrixService | None = None
        self._session: Session | None = None
        self._holder: DeviceHolder | None = None
        self._live = False
        self._flows: VerificationFlows | None = None
        self._unlocking: asyncio.Lock | None = None
        self._unlock_failures = 0
        self._ui_frames: UiFrames | None = None

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, live: bool = False, env: Mapping[str, str] | None = None,
                   interactive: bool | None = None, notice: Notice | None = None,
                   command: str = "kumix", fork_server: EarlyForkServer | None = None) -> AsyncIterator[Kumix]:
        """Open the data directory. `live=True` also takes the account's device and starts
        the sync and outbox loops (raises `StateBusy` when another process holds it).
        `env`/`interactive` choose how the vault key is found (default: the process's
        environment, a prompt only on a terminal); `command` names this process to others
        that find the device in use. `fork_server`: the extension host's fork server, started
        by the front end before anything else (`kumix.app.early_start`), which this `Kumix`
        then owns."""
        import asyncio

        try:
            async with asyncio.TaskGroup() as tasks:
                k = cls(settings, tasks, env=env, interactive=interactive, notice=notice or _quiet, command=command,
                        fork_server=fork_server)
                if fork_server is not None:
                    k._closers.callback(fork_server.close)  # a no-op once the host adopted it
                try:
                    with k._closers:
                        async with k._resources:
                            if live:
                                await k.start_live()
                            yield k
                finally:
                    k._stop_background()
        except BaseExceptionGroup as group:
            # One failure is re-raised as itself: callers catch `KumixError`s, not groups.
            first = _single(group)
            if first is None:
                raise
            raise first from None

    @classmethod
    @contextmanager
    def local(cls, settings: Settings) -> Iterator[Kumix]:
        """A `Kumix` for use cases that only read or change local state (extensions, policy,
        grants) without an event loop: what a command line that lists extensions needs.
        It owns no task; anything that would need one (Matrix, extension calls) refuses."""
        k = cls(settings, None, env=None, interactive=False, notice=_quiet, command="kumix")
        with k._closers:
            yield k

    def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run a task owned by this `Kumix` (the web server runs here): cancelled when the
        block is left; its failure cancels the block."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("Kumix.local owns no tasks: open it with Kumix.open")
        task = self._tasks.create_task(coro, name=name)
        self._background.append(task)
        # A finished task leaves the list: a long-running server spawns one per verification.
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._background.remove(task)

    async def start_live(self) -> None:
        """Take the device and start the sync and outbox loops (idempotent)."""
        if self._live:
            return
        session = await self._connect(required=True)
        assert session is not None
        self._live = True
        self._live_task = self.spawn(session.run(on_retry=self._say_retry), name="kumix-sync-and-outbox")

    async def _release_device(self) -> None:
        """Stop the sync and outbox loops and give the device back (for the web server's
        logout: the session must end in this process before the device can be retired)."""
        import asyncio

        if self._live_task is not None:
            self._live_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live_task
            self._forget(self._live_task)
            self._live_task = None
        self._live = False
        if self._flows is not None:
            self._flows.close()
            self._flows = None
        self._session = None
        await self._session_stack.aclose()
        self._session_stack = AsyncExitStack()
        self._resources.push_async_exit(self._session_stack)

    def _say_retry(self, exc: Transient, delay: float) -> None:
        self._notice(f"{exc.message}; retrying in {delay:.1f} s")

    @property
    def holder(self) -> DeviceHolder | None:
        """The other process holding this account's device, once a use case found one."""
        return self._holder

    # -- wiring (lazy: `kumix ext list` never opens the Matrix side) -------------------------

    @property
    def database(self) -> Database:
        if self._db is None:
            from kumix.store.database import Database

            self.settings.ensure_data_dir()
            db = Database(self.settings.state_db)
            self._closers.callback(db.close)
            self._db = db
        return self._db

    def policy(self) -> Policy:
        """The active policy (`invalid_policy` when its file is broken)."""
        if self._policy is None:
            from kumix.extensions.policy import load_policy

            self._policy = load_policy(self.settings.policy)
        return self._policy

    @property
    def extension_service(self) -> ExtensionService:
        if self._extensions is None:
            from kumix.app.extensions import ExtensionService
            from kumix.store.extension_state import ExtensionStateStore
            from kumix.store.extension_stats import ExtensionStatsStore

            self._extensions = ExtensionService(self.policy(), ExtensionStateStore(self.database),
                                                self.settings.extension_roots,
                                                stats_store=ExtensionStatsStore(self.database))
        return self._extensions

    async def _extension_caller(self) -> ExtensionCaller:
        if self._tasks is None:
            raise RuntimeError("Kumix.local runs no extension: open it with Kumix.open")
        if self._caller is None:
            from kumix.app.extension_calls import ExtensionCaller

            self._caller = await self._resources.enter_async_context(
                ExtensionCaller(self.extension_service, self.settings, on_figures=self._publish_figures,
                                launched=self._early_fork_server))
        return self._caller

    def _matrix(self) -> MatrixService:
        if self._tasks is None:
            raise RuntimeError("Kumix.local has no Matrix session: open it with Kumix.open")
        if self._service is None:
            from kumix.app.matrix_session import MatrixService

            self._service = MatrixService(self.settings.data_dir, self.database, env=self._env,
                                          interactive=self._interactive, renderer=self._render_markdown,
                                          progress=self._notice, command=self._command)
            self._service.hub = self._hub
        return self._service

    @property
    def _hub(self) -> EventHub:
        """Where updates go to subscribers; made when the first one is published or wanted."""
        if self._events is None:
            from kumix.app.events import EventHub

            self._events = EventHub()
        return self._events

    def _publish_figures(self, extension_id: str, figures: dict[str, Any]) -> None:
        from kumix.core.models import FiguresUpdate

        self._hub.publish([FiguresUpdate(extension_id, figures)])

    async def _render_markdown(self, source: str) -> str:
        from kumix.app.markdown import render_with

        return await render_with(await self._extension_caller(), source)

    async def _connect(self, *, required: bool = False) -> Session | None:
        """The logged-in session holding the device, or None (with `holder` set) when
        another process holds it and `required` is false."""
        if self._session is not None:
            return self._session
        service = self._matrix()
        try:
            self._session = await self._session_stack.enter_async_context(service.session())
        except StateBusy as busy:
            if required or "holder" not in busy.details:
                raise
            from kumix.core.models import DeviceHolder

            raw = busy.details["holder"] or {}
            self._holder = DeviceHolder(raw.get("pid"), raw.get("command"))
            who = f"pid {self._holder.pid}, {self._holder.command}" if self._holder.pid else "another process"
            self._notice(f"another Kumix process ({who}) is using this account's device; "
                         "answering from the local state it keeps up to date")
            return None
        return self._session

    async def _refresh(self, session: Session) -> bool:
        """Bring local state up to date; offline, local state still answers (said as a notice)."""
        try:
            await session.sync()
            return True
        except Unavailable as exc:
            self._notice(f"homeserver unreachable ({exc.message}); answering from local state")
            return False

    # -- account ---------------------------------------------------------------------------

    async def login_password(self, homeserver: str, user: str, password: str, *,
                             vault_passphrase: str | None = None) -> Account:
        """`vault_passphrase`: the answer to the vault key question where this process has
        no other key source (a web page's form), "" while it has none: unauthorized with
        `details.reason` `vault_passphrase_required` when one is needed, before any device
        exists."""
        return await self._matrix().login_password(homeserver, user, password, vault_passphrase=vault_passphrase)

    async def login_token(self, homeserver: str, access_token: str, *, vault_passphrase: str | None = None) -> Account:
        return await self._matrix().login_token(homeserver, access_token, vault_passphrase=vault_passphrase)

    async def resume(self) -> bool:
        """A server's start: with an account here, take the device and start the sync and
        outbox loops, unless the vault is locked (False: nothing started; `unlock_vault`
        starts them once the page gives the passphrase)."""
        if not self.has_account() or self.vault_locked():
            return False
        await self.start_live()
        return True

    def vault_locked(self) -> bool:
        """This data directory has an account whose vault needs a passphrase this process
        cannot get by itself (`kumix serve` with no passphrase file): `unlock_vault` opens it."""
        # The vault first: once it holds its key (or has no file) this is one attribute or
        # stat, cheap enough for the web server to ask on every request.
        return self._matrix().vault.locked() and self.has_account()

    async def unlock_vault(self, passphrase: str) -> None:
        """Open the locked vault with the passphrase given (the web page's unlock form), then
        take the device and start the sync and outbox loops. A wrong passphrase is
        `wrong_passphrase` and changes nothing on disk. Tries run one at a time (argon2id
        costs ~0.2 s and 64 MiB each) and, after `UNLOCK_FREE_TRIES` wrong ones in a row,
        each answer waits longer (doubling up to `UNLOCK_MAX_DELAY` s): guessing stays slow
        even for a page holding the session token."""
        import asyncio

        if self._unlocking is None:
            self._unlocking = asyncio.Lock()
        async with self._unlocking:
            if not self.vault_locked():
                raise BadRequest("the credential vault is not locked", details={"reason": "not_locked"})
            try:
                await asyncio.to_thread(self._matrix().vault.unlock, passphrase)
            except WrongPassphrase:
                self._unlock_failures += 1
                extra = self._unlock_failures - UNLOCK_FREE_TRIES
                if extra > 0:
                    await asyncio.sleep(min(UNLOCK_MAX_DELAY, 2.0 ** (extra - 1)))
                raise
            self._unlock_failures = 0
        await self.start_live()

    async def logout(self) -> None:
        """Revoke the token on the server, then remove the session and its keys here: the
        only way Kumix ever deletes a device's keys."""
        await self._release_device()
        await self._matrix().logout()

    def account(self) -> Account:
        """The account of this data directory from local state (`unauthorized` when none)."""
        return self._matrix().account()

    def has_account(self) -> bool:
        return self._matrix().timeline.account() is not None

    def relocate(self, homeserver: str) -> Account:
        """The account's homeserver answers at a new address (same server, same device and
        keys): record the address; nothing else changes."""
        return self._matrix().relocate(homeserver)

    async def whoami(self) -> Account:
        """The account as the homeserver sees it (local state when the device is held elsewhere)."""
        session = await self._connect()
        if session is None:
            return self.account()
        return await session.client.whoami()

    # -- rooms -----------------------------------------------------------------------------

    async def rooms(self) -> list[Room]:
        """Joined and invited rooms (with unread and highlight counts, direct flag, inviter)."""
        session = await self._connect()
        if session is not None and not self._live:
            await self._refresh(session)
        return self._matrix().timeline.rooms()

    async def room(self, room: str) -> Room:
        """A room of this account by id or alias (`not_found` when it is not one)."""
        session = await self._connect()
        if session is None:
            room_id = self._matrix().known_room(room)
        else:
            room_id = await session.resolve(room)
        found = self._matrix().timeline.room(room_id)
        if found is None:
            raise NotFound(f"not a room of this account: {room_id[:255]}")
        return found

    async def join(self, room: str) -> str:
        """Join by id or alias (also accepts an invite); returns the room id."""
        session = await self._require_device()
        await self._catch_up(session)
        return await session.join(room)

    async def leave(self, room_id: str) -> None:
        """Leave a room (also declines an invite)."""
        await (await self._require_device()).leave(room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        await (await self._require_device()).invite(room_id, user_id)

    async def create_room(self, *, name: str | None = None, topic: str | None = None, alias: str | None = None,
                          encrypted: bool = True, invite: tuple[str, ...] = (), public: bool = False,
                          direct_with: str | None = None) -> str:
        """Create a room (or, with `direct_with`, a direct chat with that user); returns its id."""
        session = await self._require_device()
        await self._catch_up(session)
        if direct_with is not None:
            return await session.create_direct(direct_with, encrypted=encrypted)
        return await session.create_room(name=name, topic=topic, alias=alias, encrypted=encrypted,
                                          invite=invite, public=public)

    async def _require_device(self) -> Session:
        session = await self._connect(required=True)
        assert session is not None
        return session

    async def _catch_up(self, session: Session) -> None:
        if not self._live:
            await session.sync()

    # -- timeline --------------------------------------------------------------------------

    async def history(self, room: str, limit: int = 50) -> list[Event]:
        """The newest `limit` events of a room, oldest first: what local state holds,
        topped up from the homeserver by backward pagination when it holds fewer."""
        session = await self._connect()
        if session is None:
            return self._matrix().timeline.events(self._matrix().known_room(room), limit=limit)
        online = self._live or await self._refresh(session)
        room_id = (await self.room(room)).room_id if online else self._matrix().known_room(room)
        timeline = self._matrix().timeline
        missing = limit - len(timeline.events(room_id, limit=limit))
        if missing > 0 and online:
            await session.paginate(room_id, missing)
        return timeline.events(room_id, limit=limit)

    async def timeline(self, room_id: str, *, before: int | None = None, after: int | None = None,
                       limit: int = 50) -> TimelinePage:
        """A page of a room's timeline from local state: the newest events, or those
        before/after a position (`TimelinePage.before`/`after` of an earlier page). Asking
        before the oldest held event pages further back from the homeserver."""
        timeline = self._matrix().timeline
        rows = timeline.page(room_id, before_seq=before, after_seq=after, limit=limit)
        if after is None and len(rows) < limit:
            session = await self._connect()
            if session is not None:
                with contextlib.suppress(Transient):
                    await session.paginate(room_id, limit - len(rows))
                    rows = timeline.page(room_id, before_seq=before, limit=limit)
        from kumix.core.models import TimelinePage

        older = rows[0][0] if rows else before
        newer = rows[-1][0] if rows else after
        return TimelinePage(room_id, [u for _, u in rows], before=older, after=newer)

    # -- sending ---------------------------------------------------------------------------

    async def preview_markdown(self, text: str) -> str | None:
        """The sanitized HTML a message of `text` would carry, rendered by the same governed
        markdown extension as a send (the composer's preview); None when it would go as
        plain text (plain prose, or the extension unavailable)."""
        return await self._matrix().render(text)

    async def send_text(self, room: str, text: str, *, markdown: bool = True, reply_to: str | None = None,
                        notice: bool = False) -> SendResult:
        """Send a text message (markdown rendered by the governed extension unless
        `markdown=False`). Offline it stays queued (state `pending`, sent on reconnect);
        when another process holds the device it is handed to that process. A message the
        homeserver refuses raises that error, with the outbox entry in `details`."""
        session = await self._connect()
        if session is None:
            service = self._matrix()
            content = await service.text_content(text, markdown=markdown, notice=notice, reply_to=reply_to)
            entry = service.outbox.enqueue(service.known_room(room), "m.room.message", content)
            return _checked(await self._await_delivery(entry), self._holder)
        online = self._live or await self._refresh(session)
        # Resolved, not checked against local state: the outbox decides (a room this
        # account is not in fails there, permanently, without blocking later messages).
        room_id = await session.resolve(room)
        entry = await session.send_text(room_id, text, markdown=markdown, reply_to=reply_to, notice=notice,
                                        deliver=online)
        if online and not self._live:
            # Earlier messages still queued from an offline run go out too, in order.
            with contextlib.suppress(Transient):
                await session.flush_outbox()
        return _checked(self._entry(entry.txn_id), None)

    async def _await_delivery(self, entry: OutboxEntry) -> OutboxEntry:
        import asyncio

        from kumix.core.outbox import OutboxState

        deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
        outbox = self._matrix().outbox
        while True:
            got = outbox.get(entry.txn_id)
            assert got is not None
            if got.state in (OutboxState.SENT, OutboxState.FAILED) or time.monotonic() >= deadline:
                return got
            await asyncio.sleep(0.1)

    def _entry(self, txn_id: str) -> OutboxEntry:
        got = self._matrix().outbox.get(txn_id)
        assert got is not None
        return got

    async def send_file(self, room: str, path: Path) -> SendResult:
        """Upload a file (encrypted in an encrypted room) and send it. Needs the device."""
        session = await self._require_device()
        online = self._live or await self._refresh(session)
        room_id = await session.resolve(room)
        entry = await session.send_file(room_id, path)
        if online and not self._live:
            with contextlib.suppress(Transient):
                await session.flush_outbox()
        return _checked(self._entry(entry.txn_id), None)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> SendResult:
        """Send one event of any message type through the outbox (a UI frame's vote, say).
        The caller decides which types and contents are acceptable; this needs the device."""
        session = await self._require_device()
        online = self._live or await self._refresh(session)
        entry = await session.enqueue(room_id, event_type, content, deliver=online)
        return _checked(self._entry(entry.txn_id), None)

    async def edit(self, room_id: str, event_id: str, text: str, *, markdown: bool = True) -> SendResult:
        entry = await (await self._require_device()).edit(room_id, event_id, text, markdown=markdown)
        return _checked(self._entry(entry.txn_id), None)

    async def react(self, room_id: str, event_id: str, key: str) -> SendResult:
        entry = await (await self._require_device()).react(room_id, event_id, key)
        return _checked(self._entry(entry.txn_id), None)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> SendResult:
        entry = await (await self._require_device()).redact(room_id, event_id, reason)
        return _checked(self._entry(entry.txn_id), None)

    async def typing(self, room_id: str, typing: bool = True) -> None:
        await (await self._require_device()).typing(room_id, typing)

    async def read_receipt(self, room_id: str, event_id: str) -> None:
        await (await self._require_device()).read_receipt(room_id, event_id)

    async def download(self, event: Event) -> bytes:
        """An event's attachment, decrypted when the room is encrypted."""
        return await (await self._require_device()).download(event)

    async def room_avatar(self, room_id: str) -> bytes:
        """The bytes of a room's avatar (`not_found` when it has none), through the
        authenticated media endpoint. Needs the device (its session's token)."""
        room = self._matrix().timeline.room(room_id)
        if room is None or room.avatar_url is None:
            raise NotFound(f"room {room_id[:255]} has no avatar")
        return await (await self._require_device()).download_content(room.avatar_url)

    async def upload_media(self, data: bytes, *, name: str, mimetype: str) -> str:
        """Upload a file without sending it (unencrypted); returns its mxc:// URI."""
        return await (await self._require_device()).upload_content(data, name=name, mimetype=mimetype)

    # -- for the web server (issue 12): lookups a page needs by id ---------------------------

    def event(self, event_id: str) -> Event:
        """An event held locally, by id (`not_found` otherwise): what a media URL names."""
        found = self._matrix().timeline.event(event_id)
        if found is None:
            raise NotFound(f"no event {event_id[:255]} in local state")
        return found

    def known_room_id(self, room_id: str) -> str:
        """`room_id` when it is a room of this account in local state (`not_found` otherwise),
        without a request: the web API checks path parameters with it."""
        if self._matrix().timeline.room(room_id) is None:
            raise NotFound(f"not a room of this account: {room_id[:255]}")
        return room_id

    # -- search and keys ---------------------------------------------------------------------

    async def search(self, text: str, *, room: str | None = None, limit: int = 50) -> list[SearchHit]:
        """Full-text search of the messages held (and decrypted) locally."""
        session = await self._connect()
        if session is not None and not self._live:
            await self._refresh(session)
        room_id = (await self.room(room)).room_id if room else None
        return self._matrix().search_index.search(text, room_id=room_id, limit=limit)

    # -- encryption trust (cross-signing, recovery, key backup, verification) ---------------

    async def encryption(self, *, refresh: bool = False) -> Encryption:
        """This device's encryption-trust use cases; needs the device (`state_busy` while
        another process holds it). `refresh` first brings local state up to date (a restore
        wants the room keys' events known)."""
        from kumix.app.encryption import Encryption

        session = await self._require_device()
        if refresh:
            await self._refresh(session)
        return Encryption(session, self._notice)

    async def verifications(self) -> VerificationFlows:
        """The device's verification flows for a front end that drives them by requests
        (the web API): one set per session, its tasks owned by this `Kumix`; started on
        first use (requests that arrived before are still there to answer)."""
        from kumix.app.verification_flows import VerificationFlows

        session = await self._require_device()
        if self._flows is None or self._flows.session is not session:
            if self._flows is not None:
                self._flows.close()
            self._flows = VerificationFlows(session, lambda coro, name: self.spawn(coro, name=name))
            self._flows.start()
        return self._flows

    def exclude_insecure_devices(self, value: bool | None = None) -> bool:
        """The "exclude insecure devices" setting (MSC4153): set it when `value` is given;
        the setting in force either way."""
        from kumix.app import trust

        return trust.exclude_insecure_devices(self.database, value)

    async def export_keys(self, path: Path, passphrase: str) -> None:
        self._notice("exporting room keys…")
        await (await self._require_device()).export_keys(path, passphrase)

    async def import_keys(self, path: Path, passphrase: str) -> int:
        """Import room keys; returns how many held events they decrypted."""
        session = await self._require_device()
        if not self._live:
            await self._refresh(session)
        return await session.import_keys(path, passphrase)

    # -- events ----------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *, rooms: frozenset[str] | set[str] | None = None, since: int | None = None,
                        maxsize: int | None = None) -> AsyncIterator[Subscription]:
        """Live updates (of `rooms`, or all) while the block runs; leaving it unsubscribes.
        With `since`, updates stored after that cursor are replayed first, so a client that
        reconnects (a WebSocket) misses nothing. The overflow rule is in `kumix.app.events`;
        `maxsize` is the subscriber's queue bound (default `events.DEFAULT_QUEUE`)."""
        from kumix.app.events import DEFAULT_QUEUE, Subscription

        maxsize = DEFAULT_QUEUE if maxsize is None else maxsize
        wanted = frozenset(rooms) if rooms is not None else None
        sub = Subscription(wanted, maxsize)
        self._hub.add(sub)
        try:
            if since is not None:
                _replay(sub, self._matrix().timeline.changes_since(since, rooms=wanted, limit=maxsize + 1), since)
            yield sub
        finally:
            self._hub.remove(sub)

    def cursor(self) -> int:
        """The newest change cursor held locally (to subscribe from "now")."""
        return self._matrix().timeline.last_change()

    # -- extensions ------------------------------------------------------------------------

    def extensions(self) -> list[ExtensionStatus]:
        return self.extension_service.list()

    def extension(self, extension_id: str) -> ExtensionStatus:
        return self.extension_service.get(extension_id)

    async def enable_extension(self, extension_id: str) -> ExtensionStatus:
        """Enable (or re-enable) an extension; an open crash circuit closes, a changed one reloads."""
        if self._caller is not None:
            return await self._caller.enable(extension_id)
        return self.extension_service.enable(extension_id)

    async def disable_extension(self, extension_id: str) -> ExtensionStatus:
        if self._caller is not None:
            return await self._caller.disable(extension_id)
        return self.extension_service.disable(extension_id)

    @property
    def ui_frames(self) -> UiFrames:
        """The UI frames mounted by this process's front end (one registry per process)."""
        if self._ui_frames is None:
            from kumix.app.ui_frames import UiFrames
            from kumix.store.ui_send_approvals import SendApprovalStore

            self._ui_frames = UiFrames(self.extension_service, SendApprovalStore(self.database))
        return self._ui_frames

    def grant(self, extension_id: str, capability: str) -> ExtensionStatus:
        return self.extension_service.grant(extension_id, capability)

    async def call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        """One call through the governed proc host (governance, limits, confinement)."""
        return await (await self._extension_caller()).call(extension_id, method, params)

    async def theme_tokens(self) -> dict[str, dict[str, str]]:
        """The light and dark token maps of the `theme-default` proc extension, called like any
        extension (governed, confined); only string-to-string maps come back. The page and the
        UI frames (`io.kumix.theme_tokens`) both read them from here."""
        answer = await self.call(THEME_EXTENSION, THEME_METHOD, {})
        maps: dict[str, dict[str, str]] = {}
        for scheme in ("light", "dark"):
            found = answer.get(scheme) if isinstance(answer, dict) else None
            if isinstance(found, dict):
                maps[scheme] = {str(k): v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}
        return maps

    async def ping(self, extension_id: str) -> float:
        return await (await self._extension_caller()).ping(extension_id)

    def figures(self, extension_id: str) -> dict[str, Any]:
        """Saved call figures of a proc extension (every process of this data directory)
        with the limits that apply; empty for other kinds."""
        from kumix.app.extension_figures import figures_for

        return figures_for(self.extension_service, self.policy(), self.extension(extension_id))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop the proc host is fastest on (uvloop where installed), for front ends
    whose work is mostly extension calls."""
    from kumix.extensions.proc.eventloop import new_event_loop

    return new_event_loop


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    import asyncio

    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    if len(real) == 1:
        return real[0]
    return None


def _replay(sub: Subscription, updates: list[TimelineUpdate], since: int) -> None:
    for update in updates:
        sub.offer(update)


def _checked(entry: OutboxEntry, holder: DeviceHolder | None) -> SendResult:
    """A refused message is raised as the homeserver's typed error, with the entry."""
    from kumix.core.outbox import OutboxState

    if entry.state is OutboxState.FAILED:
        error = entry.error()
        details = {**(error.details if error else {}), "outbox": entry.to_json()}
        cls = type(error) if error is not None else KumixError
        message = error.message if error is not None else "unknown failure"
        raise cls(f"not sent: {message}", details=details)
    return SendResult(entry, holder)
