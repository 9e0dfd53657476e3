"""Matrix use cases for one account in one data directory: login, sync, rooms, sending
through the outbox, search, keys.

Wires `kumix.matrix` (nio adapter) to the store components (timeline, outbox, search,
vault) and, for markdown, to the extension host. Layout under the data directory:
`state.db` (SQLite, WAL), `vault.json` (sealed secrets, 0600), `matrix/crypto/` (nio's
crypto store, pickled with the vault's pickle key).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import html
import logging
import mimetypes
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kumix.app import key_backup, trust
from kumix.app.events import EventHub
from kumix.core.errors import BadRequest, KumixError, NotFound, Transient, Unauthorized, Unavailable
from kumix.core.models import Account, Attachment, Event, Room, RoomsUpdate, SearchHit, SyncBatch
from kumix.core.outbox import OutboxEntry
from kumix.extensions.sanitize import sanitize_html
from kumix.matrix.backoff import Backoff
from kumix.matrix.client import MatrixClient, homeserver_url
from kumix.matrix.sync import SyncLoop
from kumix.store.database import Database
from kumix.store.key_backup_state import KeyBackupState
from kumix.store.outbox import Outbox
from kumix.store.room_key_sources import RoomKeySources
from kumix.store.search import SearchIndex
from kumix.store.session_lock import SessionLock
from kumix.store.timeline import TimelineStore
from kumix.store.trust_settings import TrustSettings
from kumix.store.vault import ENV_PASSPHRASE_FILE, Vault

log = logging.getLogger(__name__)

MarkdownRenderer = Callable[[str], Awaitable[str]]
"""Markdown source in, HTML out (may raise a KumixError: then the text goes out plain)."""

Progress = Callable[[str], None]

HTML_FORMAT = "org.matrix.custom.html"

ACTION_SYNC_WAIT_S = 60.0
"""How long a join, leave or room creation waits for the live sync to bring its result into
local state; the homeserver's answer already came, so past this the call returns anyway."""
OUTBOX_POLL_SECONDS = 1.0
"""How soon a running session notices a message another process put in the outbox."""


def _no_progress(_: str) -> None:
    pass


class MatrixPaths:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.vault = data_dir / "vault.json"
        self.crypto_dir = data_dir / "matrix" / "crypto"
        self.session_lock = data_dir / "matrix" / "session.lock"


class MatrixService:
    """Account-level use cases; `session()` opens a logged-in client for the rest."""

    def __init__(
        self,
        data_dir: Path,
        db: Database,
        *,
        env: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        renderer: MarkdownRenderer | None = None,
        progress: Progress | None = None,
        command: str = "kumix",
    ) -> None:
        self.paths = MatrixPaths(data_dir)
        self.device_lock = SessionLock(self.paths.session_lock)
        self.command = command
        """Named in the refusal another process gets while this one uses the device."""
        self.db = db
        self.timeline = TimelineStore(db)
        self.outbox = Outbox(db)
        self.search_index = SearchIndex(db)
        self.vault = Vault(self.paths.vault, env, interactive=interactive)
        self.renderer = renderer
        self.progress = progress or _no_progress
        self.hub = EventHub()
        """Where sessions publish what they store; `Kumix` replaces it with its own."""

    # -- login / logout ----------------------------------------------------------------

    async def login_password(self, homeserver: str, user: str, password: str, *,
                             reset_cross_signing: bool = False, vault_passphrase: str | None = None) -> Account:
        """`reset_cross_signing`: replace an identity this device cannot use (only for
        accounts no other client uses, like the demo's: it undoes their verifications).
        `vault_passphrase`: the vault's passphrase when no other key source is here (the
        web page asks for it; see `Vault.needs_passphrase`); "" from a caller that can ask
        but has no answer yet: refused before the homeserver is asked when one is needed."""
        return await self._login(homeserver, lambda c: c.login_password(user, password), password=password,
                                 reset_cross_signing=reset_cross_signing, vault_passphrase=vault_passphrase)

    async def login_token(self, homeserver: str, access_token: str, *, vault_passphrase: str | None = None) -> Account:
        return await self._login(homeserver, lambda c: c.login_token(access_token), vault_passphrase=vault_passphrase)

    async def _login(self, homeserver: str, how: Callable[[MatrixClient], Awaitable[Account]],
                     password: str | None = None, reset_cross_signing: bool = False,
                     vault_passphrase: str | None = None) -> Account:
        self._refuse_second_login()
        homeserver = homeserver_url(homeserver)
        if vault_passphrase == "" and self.vault.needs_passphrase():
            # A caller that can ask (the web page) gives "" until it has an answer: the
            # question comes before the homeserver is asked, so no device is created for a
            # login that could not keep its token. (The command line asks on its terminal.)
            raise Unauthorized(
                "no way to protect the credential vault: no OS keyring here and no terminal to ask a passphrase. "
                f"Put a passphrase in a file only you can read (chmod 600) and set {ENV_PASSPHRASE_FILE} to its path "
                "(or, in the web page, give the vault passphrase)", details={"reason": "vault_passphrase_required"})
        with self._device():
            # Again under the lock: another process may have logged in since the first look.
            self._refuse_second_login()
            return await self._login_locked(homeserver, how, password, reset_cross_signing, vault_passphrase or None)

    def _refuse_second_login(self) -> None:
        if self.timeline.account() is not None:
            # The user's request conflicts with local state: theirs to fix, not a Kumix bug.
            raise BadRequest("already logged in with this data directory; log out first, or use another data "
                             "directory", details={"reason": "logged_in"})

    async def _login_locked(self, homeserver: str, how: Callable[[MatrixClient], Awaitable[Account]],
                            password: str | None = None, reset_cross_signing: bool = False,
                            vault_passphrase: str | None = None) -> Account:
        # A fresh device gets a fresh crypto store and pickle key; leftovers of an earlier
        # session (a crash during login) would not open with the new key. They are moved
        # aside, never deleted: keys are only ever removed by an explicit logout.
        self._set_aside_crypto_store()
        pickle_key = base64.b64encode(secrets.token_bytes(32)).decode()
        async with MatrixClient(homeserver, self.paths.crypto_dir, pickle_key=pickle_key, sanitize=sanitize_html) as c:
            account = await how(c)
            try:
                # Publish our device keys now, so others can encrypt for us before our first sync.
                first = await c.sync_once(None, timeout_ms=0)
            except BadRequest as exc:
                await self._abandon(c)
                raise BadRequest(
                    "this device already has end-to-end keys from another client; log in with a password, or "
                    f"with the token of a fresh login ({exc.message})"
                ) from None
            except KumixError:
                await self._abandon(c)
                raise
            # Seal the secrets before recording the session: a session row without a vault
            # would be a login nobody can use.
            try:
                self.vault.create({"access_token": c.access_token, "pickle_key": pickle_key},
                                  passphrase=vault_passphrase)
            except KumixError:
                # No vault key (none supplied, a bad passphrase file, Ctrl-D): the token
                # could never be used again, so the device it created is removed too.
                await self._abandon(c)
                raise
            # A data directory's first login: "exclude insecure devices" defaults to on.
            TrustSettings(self.db).exclude_insecure_devices(had_account=False)
            self.timeline.set_account(account)
            # Keep this first batch and its token: an identical token-less /sync soon after
            # would be answered from the homeserver's response cache, missing what happened since.
            await Session(self, c).apply(first)
            # Cross-signing (kumix.app.trust): a password login can publish the identity at once.
            if password is not None:
                await trust.bootstrap_at_login(c, self.vault, password, self.progress, reset=reset_cross_signing)
        return account

    @staticmethod
    async def _abandon(c: MatrixClient) -> None:
        """A login that cannot be completed must not leave a live token behind."""
        with contextlib.suppress(KumixError):
            await c.logout()

    async def logout(self) -> None:
        """Revoke the token on the server, then forget every local trace of the session."""
        account = self.timeline.account()
        if account is None:
            raise Unauthorized("not logged in")
        with self._device():
            secrets_doc = self.vault.load()
            async with MatrixClient(account.homeserver, self.paths.crypto_dir, pickle_key=secrets_doc["pickle_key"],
                                    sanitize=sanitize_html) as c:
                c.restore(account, secrets_doc["access_token"])
                # Already revoked elsewhere: the local cleanup below still has to happen.
                with contextlib.suppress(Unauthorized):
                    await c.logout()
            self._forget_after_logout()

    @contextlib.contextmanager
    def _device(self) -> Iterator[None]:
        """Use the account's device; another process using it now is `StateBusy`
        (`store/session_lock.py` says why two at once would lose keys)."""
        self.device_lock.acquire(self.command)
        try:
            yield
        finally:
            self.device_lock.release()

    def _set_aside_crypto_store(self) -> None:
        crypto = self.paths.crypto_dir
        if crypto.exists() and any(crypto.iterdir()):
            aside = crypto.with_name(f"crypto.set-aside-{int(time.time())}-{secrets.token_hex(3)}")
            crypto.rename(aside)
            log.warning("a crypto store without a session was moved to %s", aside)
            self.progress(f"keys left by an unfinished login were kept in {aside}")

    def relocate(self, homeserver: str) -> Account:
        """The same homeserver (same account, same device and keys) now answers at another
        address, e.g. the local demo server on a new port. Nothing else changes."""
        account = self.account()
        url = homeserver_url(homeserver)
        if url != account.homeserver:
            self.timeline.set_homeserver(url)
        return self.account()

    def _forget_after_logout(self) -> None:
        """Only `logout` calls this: it removes the device's keys, after revoking the token."""
        self.vault.destroy()
        self.timeline.forget_everything()
        self.search_index.forget_everything()
        self.outbox.forget_everything()
        KeyBackupState(self.db).forget_everything()
        RoomKeySources(self.db).forget_everything()
        shutil.rmtree(self.paths.crypto_dir, ignore_errors=True)

    def account(self) -> Account:
        account = self.timeline.account()
        if account is None:
            raise Unauthorized("not logged in: this data directory has no Matrix session")
        return account

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        account = self.account()
        with self._device():
            secrets_doc = self.vault.load()
            async with MatrixClient(account.homeserver, self.paths.crypto_dir, pickle_key=secrets_doc["pickle_key"],
                                    sanitize=sanitize_html) as client:
                client.restore(account, secrets_doc["access_token"])
                del secrets_doc
                trust_settings = TrustSettings(self.db)
                trust.install_sharing_rules(client, trust_settings.exclude_insecure_devices(had_account=True),
                                            trust_settings)
                # Safe only because no other process holds the device: an entry marked
                # "sending" is one this data directory's last holder never finished.
                recovered = self.outbox.recover()
                if recovered:
                    self.progress(f"{recovered} message(s) from an interrupted run will be re-sent")
                yield Session(self, client)

    # -- content -------------------------------------------------------------------------

    async def render(self, text: str) -> str | None:
        """Markdown to sanitized HTML through the extension; None means send plain text."""
        if self.renderer is None:
            return None
        try:
            rendered = await self.renderer(text)
        except KumixError as exc:
            log.info("markdown rendering unavailable (%s); sending plain text", exc.code)
            return None
        cleaned = sanitize_html(rendered).strip()
        # Plain prose renders to a single paragraph: no formatting worth a formatted_body.
        if cleaned == f"<p>{html.escape(text.strip(), quote=False)}</p>":
            return None
        return cleaned or None

    async def text_content(self, text: str, *, markdown: bool = True, notice: bool = False,
                           reply_to: str | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"msgtype": "m.notice" if notice else "m.text", "body": text}
        rendered = await self.render(text) if markdown else None
        if rendered is not None:
            content["format"] = HTML_FORMAT
            content["formatted_body"] = rendered
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return content

    def known_room(self, room: str) -> str:
        """A room id or alias resolved from local state only (no request): for handing a
        message to the process that holds the device."""
        found = self.timeline.room_by_alias(room) if room.startswith("#") else self.timeline.room(room)
        if found is None or found.membership != "join":
            raise NotFound(f"not a joined room of this account, as far as local state knows: {room[:255]}")
        return found.room_id


class Session:
    """A logged-in client plus Kumix's store. Not thread-safe; one per process."""

    def __init__(self, service: MatrixService, client: MatrixClient) -> None:
        self.service = service
        self.client = client
        self.timeline = service.timeline
        self.outbox = service.outbox
        self._synced_full_state = False
        self._outbox_wakeup = asyncio.Event()
        self.outbox_backoff = Backoff()
        # One /sync at a time: two in flight would race to store their tokens. While the
        # sync loop runs (`run`), a use case that needs fresh state waits for its next batch
        # instead of asking on its own.
        self._sync_lock = asyncio.Lock()
        self._looping = False
        self._batch_applied = asyncio.Condition()
        # One flusher at a time: the outbox loop and an interactive send may both try, and
        # two attempts of one entry in parallel would be two requests racing for one txn id.
        self._flush_lock = asyncio.Lock()
        self._last_batch: SyncBatch | None = None

    @property
    def account(self) -> Account:
        return self.client.account

    @property
    def looping(self) -> bool:
        """The sync loop runs (`run`): a use case waits for its batches instead of syncing."""
        return self._looping

    # -- sync ----------------------------------------------------------------------------

    async def sync(self, *, timeout_ms: int = 0) -> SyncBatch:
        """One sync from the stored token, persisted. The first of a session asks for full
        state so nio knows every room's members and encryption again."""
        if self._looping and timeout_ms == 0:
            return await self._next_batch()
        async with self._sync_lock:
            since = self.timeline.sync_token()
            if since is None:
                self.service.progress("initial sync…")
            full = not self._synced_full_state and since is not None
            batch = await self.client.sync_once(since, timeout_ms=0 if full else timeout_ms, full_state=full)
            await self.apply(batch)
            if since is None:
                self.service.progress(f"initial sync done: {len(batch.rooms)} rooms, {len(batch.events)} events")
            return batch

    async def _next_batch(self) -> SyncBatch:
        """Wait for the sync loop's next batch (the homeserver answers its long poll as soon
        as anything happens, such as the room a use case just created)."""
        async with self._batch_applied:
            await self._batch_applied.wait()
            assert self._last_batch is not None
            return self._last_batch

    async def apply(self, batch: SyncBatch) -> None:
        """Persist a batch atomically (events, rooms, search, token), then retry
        decryption of events whose keys just arrived."""
        self._synced_full_state = True
        batch = dataclasses.replace(batch, events=await self.judge_senders(batch.events))
        before = self.timeline.last_change()
        with self.service.db.transaction() as tx:
            TimelineStore.put_rooms(tx, batch.rooms, batch.prev_batches, batch.left_rooms, batch.limited)
            changed = TimelineStore.put_events(tx, batch.events)
            SearchIndex.index(tx, changed)
            TimelineStore.set_sync_token(tx, batch.next_batch)
        if batch.keys_arrived:
            await self.retry_undecryptable(batch.keys_arrived)
        for ev in batch.events:
            if ev.kind == "undecryptable":
                await self.client.request_key(ev)
        hub = self.service.hub
        if batch.rooms or batch.left_rooms:
            touched = {r.room_id for r in batch.rooms} | set(batch.left_rooms)
            hub.publish([RoomsUpdate([r for r in self.timeline.rooms(include_left=True) if r.room_id in touched])])
        hub.publish(self.timeline.changes_since(before, limit=1_000_000))
        hub.publish(batch.ephemeral)
        self._outbox_wakeup.set()
        self._last_batch = batch
        async with self._batch_applied:
            self._batch_applied.notify_all()

    async def judge_senders(self, events: list[Event]) -> list[Event]:
        """The shields: each decrypted event with its sending device's trust (and, with
        "exclude insecure devices" on, insecure senders' events withheld)."""
        return await trust.judge_senders(self.client, self.service.vault, TrustSettings(self.service.db), events,
                                         RoomKeySources(self.service.db))

    async def retry_undecryptable(self, session_ids: frozenset[str] | None = None) -> int:
        """Decrypt what can be decrypted now; returns how many events were recovered."""
        recovered: list[Event] = []
        before = self.timeline.last_change()
        for ev in self.timeline.undecryptable(session_ids):
            fixed = self.client.retry_decryption(ev)
            if fixed is not None:
                recovered.append(fixed)
        # Judged now: an insecure sender's event stays undecryptable (withheld), marked why.
        judged = await self.judge_senders(recovered)
        if judged:
            with self.service.db.transaction() as tx:
                SearchIndex.index(tx, TimelineStore.put_events(tx, judged))
            self.service.hub.publish(self.timeline.changes_since(before, limit=1_000_000))
        return sum(1 for e in judged if e.kind != "undecryptable")

    async def run(self, *, on_retry: Callable[[Transient, float], None] | None = None) -> None:
        """Sync and deliver the outbox until cancelled; a fatal error in either loop ends both."""
        loop = SyncLoop(self._sync_step, on_retry=on_retry)
        self._looping = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(loop.run())
                tg.create_task(self._outbox_loop())
                tg.create_task(key_backup.backup_loop(self, KeyBackupState(self.service.db)))
        finally:
            self._looping = False

    async def _sync_step(self, long_poll_ms: int) -> None:
        # The first request of a process asks for full state (in `sync`), because nio keeps
        # room state (members, encryption) only in memory.
        async with self._sync_lock:
            since = self.timeline.sync_token()
            full = not self._synced_full_state and since is not None
            batch = await self.client.sync_once(since, timeout_ms=0 if full or since is None else long_poll_ms,
                                                full_state=full)
            await self.apply(batch)

    async def _outbox_loop(self) -> None:
        while True:
            self._outbox_wakeup.clear()
            try:
                await self.flush_outbox()
            except Unavailable as exc:
                await asyncio.sleep(self.outbox_backoff.next_delay(exc.details.get("retry_after_ms")))
                continue
            # Woken by this process's own sends and syncs, and at least every
            # OUTBOX_POLL_SECONDS for messages another process handed over (`kumix send`
            # while this one holds the device) through the shared outbox table.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTBOX_POLL_SECONDS):
                    await self._outbox_wakeup.wait()

    # -- rooms ---------------------------------------------------------------------------

    def rooms(self) -> list[Room]:
        return self.timeline.rooms()

    async def resolve(self, room: str) -> str:
        if room.startswith("#"):
            cached = self.timeline.room_by_alias(room)
            try:
                return await self.client.resolve_room(room)
            except Unavailable:
                if cached is not None:
                    return cached.room_id
                raise
        return await self.client.resolve_room(room)

    async def _sync_until(self, done: Callable[[], bool]) -> None:
        """Local state after an action of ours: one sync when no loop runs; with the loop, its
        batches until `done()` holds. Checked first: the loop's long poll is answered as soon
        as the action happens and may be applied before this is called, and waiting for "the
        next batch" then waited out a whole long poll (a room creation that took 30 s)."""
        if not self._looping:
            await self.sync()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACTION_SYNC_WAIT_S), self._batch_applied:
                await self._batch_applied.wait_for(done)

    def _joined(self, room_id: str) -> Callable[[], bool]:
        def joined() -> bool:
            room = self.timeline.room(room_id)
            return room is not None and room.membership == "join"
        return joined

    async def join(self, room: str) -> str:
        room_id = await self.client.join(room)
        await self._sync_until(self._joined(room_id))
        return room_id

    async def leave(self, room_id: str) -> None:
        await self.client.leave(room_id)

        def left() -> bool:
            room = self.timeline.room(room_id)
            return room is None or room.membership != "join"
        await self._sync_until(left)

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.client.invite(room_id, user_id)

    async def create_room(self, *, name: str | None = None, topic: str | None = None, alias: str | None = None,
                          encrypted: bool = True, invite: tuple[str, ...] = (), public: bool = False) -> str:
        room_id = await self.client.create_room(name=name, topic=topic, alias=alias, encrypted=encrypted,
                                                invite=invite, public=public)
        await self._sync_until(self._joined(room_id))
        return room_id

    async def create_direct(self, user_id: str, *, encrypted: bool = True) -> str:
        room_id = await self.client.create_room(encrypted=encrypted, invite=(user_id,), direct=True)
        await self._sync_until(self._joined(room_id))
        self.timeline.mark_direct(room_id)
        return room_id

    async def paginate(self, room_id: str, limit: int = 50) -> list[Event]:
        """Fetch older events from the server into the cache; returns them oldest first."""
        token = self.timeline.prev_batch(room_id)
        if token is None:
            return []
        page = await self.client.paginate(room_id, token, limit)
        events = await self.judge_senders(list(page.events))
        older = list(reversed(events))
        with self.service.db.transaction() as tx:
            SearchIndex.index(tx, TimelineStore.put_events(tx, events, older=True))
            TimelineStore.set_prev_batch(tx, room_id, page.end if page.events else None)
        return older

    async def read_receipt(self, room_id: str, event_id: str) -> None:
        await self.client.read_receipt(room_id, event_id)

    async def typing(self, room_id: str, typing: bool = True) -> None:
        await self.client.typing(room_id, typing)

    # -- sending -------------------------------------------------------------------------

    async def render(self, text: str) -> str | None:
        return await self.service.render(text)

    async def text_content(self, text: str, *, markdown: bool = True, notice: bool = False) -> dict[str, Any]:
        return await self.service.text_content(text, markdown=markdown, notice=notice)

    async def send_text(self, room_id: str, text: str, *, markdown: bool = True, reply_to: str | None = None,
                        notice: bool = False, deliver: bool = True) -> OutboxEntry:
        content = await self.service.text_content(text, markdown=markdown, notice=notice, reply_to=reply_to)
        return await self.enqueue(room_id, "m.room.message", content, deliver=deliver)

    async def edit(self, room_id: str, event_id: str, text: str, *, markdown: bool = True) -> OutboxEntry:
        new = await self.text_content(text, markdown=markdown)
        content = {**new, "body": f"* {text}", "m.new_content": new,
                   "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}
        content.pop("formatted_body", None)
        content.pop("format", None)
        return await self.enqueue(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> OutboxEntry:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.enqueue(room_id, "m.reaction", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> OutboxEntry:
        content: dict[str, Any] = {"redacts": event_id}
        if reason:
            content["reason"] = reason
        return await self.enqueue(room_id, "m.room.redaction", content)

    async def send_file(self, room_id: str, path: Path) -> OutboxEntry:
        """Upload (encrypted when the room is) and queue the file event."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"send file: {path} does not exist") from None
        except IsADirectoryError:
            raise BadRequest(f"send file: {path} is a directory, not a file") from None
        except OSError as exc:
            raise BadRequest(f"send file: cannot read {path}: {exc.strerror or exc}") from None
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        encrypted = self.client.room_is_encrypted(room_id)
        if encrypted is None:
            room = self.timeline.room(room_id)
            if room is None:
                raise NotFound(f"unknown room {room_id}")
            encrypted = room.encrypted
        url, keys = await self.client.upload(data, filename=path.name, mimetype=mimetype, encrypt=encrypted)
        msgtype = "m.image" if mimetype.startswith("image/") else "m.file"
        content: dict[str, Any] = {
            "msgtype": msgtype, "body": path.name, "info": {"mimetype": mimetype, "size": len(data)}}
        if keys is not None:
            content["file"] = {**keys, "url": url}
        else:
            content["url"] = url
        return await self.enqueue(room_id, "m.room.message", content)

    async def download(self, event: Event) -> bytes:
        if event.attachment is None:
            raise NotFound(f"event {event.event_id} has no attachment")
        return await self.client.download(event.attachment)

    async def download_content(self, url: str) -> bytes:
        """Unencrypted content by its mxc:// URI (a room avatar), through authenticated media."""
        return await self.client.download(Attachment(url=url, name="content", mimetype=None, size=None))

    async def upload_content(self, data: bytes, *, name: str, mimetype: str) -> str:
        """Upload without sending (for a room avatar, say): unencrypted, since no event will
        carry the key. Returns the mxc:// URI."""
        url, _ = await self.client.upload(data, filename=name, mimetype=mimetype, encrypt=False)
        return url

    async def enqueue(self, room_id: str, event_type: str, content: dict[str, Any], *,
                      deliver: bool = True) -> OutboxEntry:
        """Write the event to the outbox first; then try to deliver now. A homeserver that
        is down leaves it pending, to go out (same transaction id) on reconnect."""
        entry = self.outbox.enqueue(room_id, event_type, content)
        self._outbox_wakeup.set()
        if deliver:
            try:
                await self.flush_outbox()
            except Unavailable as exc:
                log.info("homeserver unavailable (%s); message kept in the outbox", exc.code)
        got = self.outbox.get(entry.txn_id)
        assert got is not None
        return got

    async def flush_outbox(self) -> list[OutboxEntry]:
        """Deliver open entries in order. Stops at the first transient failure (raised),
        so later messages never overtake an earlier one."""
        async with self._flush_lock:
            return await self._flush_outbox_locked()

    async def _flush_outbox_locked(self) -> list[OutboxEntry]:
        delivered: list[OutboxEntry] = []
        for entry in self.outbox.open_entries():
            needs_room = entry.event_type != "m.room.redaction" and not self.client.knows_room(entry.room_id)
            if needs_room and not self._synced_full_state:
                await self.sync()
            self.outbox.mark_sending(entry.txn_id)
            if needs_room and self._synced_full_state and not self.client.knows_room(entry.room_id):
                # A full sync lists every joined room: this one is not (a typo, a room we
                # left or were never in). That is permanent; left pending as "not synced
                # yet" it would be retried forever with every later message queued behind it.
                self.outbox.mark_failed(entry.txn_id, NotFound(f"not a joined room of this account: "
                                                               f"{entry.room_id}"))
                continue
            try:
                if entry.event_type == "m.room.redaction":
                    event_id = await self.client.redact(entry.room_id, str(entry.content["redacts"]), entry.txn_id,
                                                        entry.content.get("reason"))
                else:
                    event_id = await self.client.send(entry.room_id, entry.event_type, entry.content, entry.txn_id)
            except Unavailable as exc:
                self.outbox.mark_retry(entry.txn_id, exc)
                raise
            except KumixError as exc:
                self.outbox.mark_failed(entry.txn_id, exc)
                continue
            self.outbox.mark_sent(entry.txn_id, event_id)
            self.outbox_backoff.reset()
            got = self.outbox.get(entry.txn_id)
            assert got is not None
            delivered.append(got)
        return delivered

    # -- search and keys -------------------------------------------------------------------

    def search(self, text: str, *, room_id: str | None = None, limit: int = 50) -> list[SearchHit]:
        return self.service.search_index.search(text, room_id=room_id, limit=limit)

    async def export_keys(self, path: Path, passphrase: str) -> None:
        await self.client.export_keys(path, passphrase)

    async def import_keys(self, path: Path, passphrase: str) -> int:
        """Import room keys, then decrypt every held event they unlock; returns that count."""
        self.service.progress("importing keys…")
        before = self.client.held_sessions()
        await self.client.import_keys(path, passphrase)
        # A key file, like a backup, only claims who each key's sender is.
        RoomKeySources(self.service.db).mark_insecure(
            [sid for sid, index in self.client.held_sessions().items() if before.get(sid, index + 1) > index],
            "key_export")
        self.service.progress("retrying undecryptable events…")
        return await self.retry_undecryptable()
