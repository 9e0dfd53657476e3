"""The Matrix adapter: the only module of Kumix that speaks matrix-nio.

`MatrixClient` wraps one `nio.AsyncClient` (E2EE on, vodozemac backend, crypto store under
Kumix's data directory, encrypted with the vault's pickle key). Every nio response and
exception is mapped here onto Kumix errors, and every nio event onto `kumix.core.models`,
so callers never see a nio type. nio's own 429/timeout retry loops are switched off
(`max_limit_exceeded=0`, `max_timeouts=0`): the caller's backoff policy decides when to
retry, with jitter, instead of nio sleeping inside a request nobody can cancel cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import nio
from nio.crypto import decrypt_attachment

from kumix.core.errors import (
    BadRequest,
    KumixError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from kumix.core.models import (
    Account,
    Attachment,
    Event,
    HtmlSanitizer,
    Page,
    ReceiptsUpdate,
    Room,
    SyncBatch,
    TypingUpdate,
)
from kumix.matrix.funnel import REQUEST_TIMEOUT_S, call, close, guard, raise_for, raw_json
from kumix.matrix.translate import text_or_none, translate_ephemeral, translate_event, translate_room

log = logging.getLogger(__name__)

# nio logs failed schema validations at WARNING with the offending event content (other
# people's messages, decrypted text) pretty-printed. With no logging configured, Python's
# last-resort handler wrote that to the user's stderr. The adapter already maps every such
# event or response onto a Kumix model or error, so these records are dropped here.
logging.getLogger("nio").addHandler(logging.NullHandler())


SYNC_GRACE_S = 60.0
"""Beyond the long-poll timeout, how long a sync may take to arrive. Initial syncs of big
accounts take seconds; a server that says nothing for a minute is treated as down."""

DEVICE_NAME = "Kumix"

T = TypeVar("T")

def homeserver_url(text: str) -> str:
    """The homeserver base URL a login may use, or `BadRequest`.

    http(s) with a host, optionally a path prefix (a reverse proxy); no credentials (they
    would be stored in plain text in the session record and sent with every request), no
    query or fragment. A trailing slash is dropped: nio appends `/_matrix/...` to it."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise BadRequest("the homeserver must be an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("the homeserver must be an http:// or https:// URL with a host name")
    if parts.username is not None or parts.password is not None:
        # The message does not repeat the URL: it holds a secret.
        raise BadRequest("the homeserver URL must not contain a user name or password")
    if parts.query or parts.fragment:
        raise BadRequest("the homeserver URL must not have a query or fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class MatrixClient:
    """One device of one account. Use `async with`: the HTTP session is closed on exit."""

    def __init__(self, homeserver: str, store_dir: Path, *, pickle_key: str, sanitize: HtmlSanitizer) -> None:
        # `mkdir(parents=True, mode=...)` applies the mode to the last directory only: create
        # the parent (`<data dir>/matrix`) private too, not world-listable.
        store_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store_dir.mkdir(exist_ok=True, mode=0o700)
        self._store_dir = store_dir
        self._sanitize = sanitize
        config = nio.AsyncClientConfig(
            max_limit_exceeded=0,
            max_timeouts=0,
            store_sync_tokens=False,  # Kumix's own store holds the token, in the same transaction as the events
            encryption_enabled=True,
            pickle_key=pickle_key,
            request_timeout=REQUEST_TIMEOUT_S,
        )
        self._nio = nio.AsyncClient(homeserver, "", store_path=str(store_dir), config=config)
        self.homeserver = homeserver
        self._direct_rooms: set[str] = set()
        self.before_encrypted_send: Callable[[str], Awaitable[None]] | None = None
        """Called with the room id before a message to an encrypted room is encrypted: where
        kumix.app.trust applies the sharing rules (which devices get the room key)."""
        self.verification_events: list[dict[str, Any]] = []
        self.room_verification_events: list[dict[str, Any]] = []
        self._excluded_by_room: dict[str, set[tuple[str, str]]] = {}
        """To-device `m.key.verification.*` events received, for kumix.app.verification to drain."""

    async def __aenter__(self) -> MatrixClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await close(self._nio)

    # -- session ---------------------------------------------------------------------

    @property
    def account(self) -> Account:
        return Account(user_id=self._nio.user_id, device_id=self._nio.device_id, homeserver=self.homeserver)

    @property
    def access_token(self) -> str:
        return str(self._nio.access_token)

    async def login_password(self, user: str, password: str) -> Account:
        self._nio.user = user
        resp = await guard(self._nio.login(password=password, device_name=DEVICE_NAME), "login")
        raise_for(resp, "login", login=True)
        self._fix_store_permissions()
        return self.account

    async def login_token(self, access_token: str) -> Account:
        """Adopt an existing access token: whoami says whose it is and which device."""
        self._nio.access_token = access_token
        resp = await guard(self._nio.whoami(), "whoami")
        raise_for(resp, "login", login=True)
        if not resp.device_id:
            raise BadRequest("login: the homeserver did not say which device this token belongs to")
        self._nio.restore_login(resp.user_id, resp.device_id, access_token)
        self._fix_store_permissions()
        return self.account

    def restore(self, account: Account, access_token: str) -> None:
        """Resume a stored session; loads the device's Olm account from the crypto store."""
        self._nio.user = account.user_id
        self._nio.restore_login(account.user_id, account.device_id, access_token)
        self._fix_store_permissions()

    def _fix_store_permissions(self) -> None:
        for path in self._store_dir.iterdir():
            if path.is_file():
                path.chmod(0o600)

    async def logout(self) -> None:
        resp = await guard(self._nio.logout(), "logout")
        raise_for(resp, "logout")

    async def whoami(self) -> Account:
        resp = await guard(self._nio.whoami(), "whoami")
        raise_for(resp, "whoami")
        device = resp.device_id or self._nio.device_id
        return Account(user_id=resp.user_id, device_id=device, homeserver=self.homeserver)

    # -- sync ------------------------------------------------------------------------

    async def sync_once(self, since: str | None, *, timeout_ms: int = 30_000, full_state: bool = False) -> SyncBatch:
        """One /sync, then the E2EE upkeep nio's sync_forever would do: upload our keys,
        track changed device lists, claim one-time keys, flush queued to-device messages."""
        self._mute_nio_verification()
        resp = await guard(
            self._nio.sync(timeout=timeout_ms, since=since, full_state=full_state, set_presence="offline"),
            "sync",
            timeout=timeout_ms / 1000 + SYNC_GRACE_S,
        )
        raise_for(resp, "sync")
        await self._e2ee_upkeep()
        return self._translate_sync(resp)

    async def _e2ee_upkeep(self) -> None:
        n = self._nio
        if n.should_upload_keys:
            await call(n.keys_upload(), "keys upload")
        if n.should_query_keys:
            await call(n.keys_query(), "keys query")
        if n.should_claim_keys:
            await call(n.keys_claim(n.get_users_for_key_claiming()), "keys claim")
        for r in await guard(n.send_to_device_messages(), "to-device"):
            raise_for(r, "to-device")

    def _translate_sync(self, resp: Any) -> SyncBatch:
        keys_arrived: set[str] = set()
        for td in resp.to_device_events:
            source = getattr(td, "source", None)
            if isinstance(source, dict) and str(source.get("type", "")).startswith("m.key.verification."):
                self.verification_events.append(source)
            if isinstance(td, nio.RoomKeyEvent | nio.ForwardedRoomKeyEvent):
                keys_arrived.add(td.session_id)
        for ad in resp.account_data_events:
            if getattr(ad, "type", None) == "m.direct" and isinstance(getattr(ad, "content", None), dict):
                for rooms in ad.content.values():
                    if isinstance(rooms, list):
                        self._direct_rooms.update(r for r in rooms if isinstance(r, str))
        joined: list[Room] = []
        events: list[Event] = []
        prev: dict[str, str] = {}
        limited: set[str] = set()
        ephemeral: list[TypingUpdate | ReceiptsUpdate] = []
        for room_id, info in resp.rooms.join.items():
            for eph in info.ephemeral:
                update = translate_ephemeral(room_id, eph, user_id=self._nio.user_id)
                if update is not None:
                    ephemeral.append(update)
            mroom = self._nio.rooms.get(room_id)
            if mroom is not None:
                joined.append(self._room(mroom, "join"))
            if info.timeline.prev_batch:
                prev[room_id] = info.timeline.prev_batch
            if info.timeline.limited:
                limited.add(room_id)
            events.extend(self._translate_event(room_id, ev) for ev in info.timeline.events)
            for ev in info.timeline.events:
                self._collect_room_verification(room_id, ev)
        for room_id, iinfo in resp.rooms.invite.items():
            for st in iinfo.invite_state:
                content = getattr(st, "content", None)
                if getattr(st, "state_key", None) == self._nio.user_id and isinstance(content, dict) \
                        and content.get("is_direct") is True:
                    self._direct_rooms.add(room_id)
            iroom = self._nio.invited_rooms.get(room_id)
            if iroom is not None:
                joined.append(self._room(iroom, "invite"))
        return SyncBatch(
            next_batch=resp.next_batch,
            rooms=joined,
            events=events,
            left_rooms=list(resp.rooms.leave),
            prev_batches=prev,
            keys_arrived=frozenset(keys_arrived),
            limited=frozenset(limited),
            ephemeral=tuple(ephemeral),
        )

    def _translate_event(self, room_id: str, ev: Any) -> Event:
        """`translate_event`, and for a decrypted event the sender keys of its Megolm
        session: the Curve25519 key (authenticated by the Olm channel the room key came
        over) and the Ed25519 key the room key claimed. The app judges the sender's trust
        from these (`kumix.matrix.sender_trust`), never from nio's device trust."""
        event = translate_event(room_id, ev, self._sanitize)
        if not event.encrypted or event.kind == "undecryptable" or self._nio.olm is None:
            return event
        curve, session_id = getattr(ev, "sender_key", None), getattr(ev, "session_id", None)
        session = self._olm().inbound_group_store.get(room_id, curve, session_id) \
            if isinstance(curve, str) and isinstance(session_id, str) else None
        ed = getattr(session, "ed25519", None)
        if not isinstance(curve, str) or not isinstance(ed, str):
            # Decrypted, but by a session whose sender keys are unknown: judged as an
            # unknown device (withheld under MSC4153), never left without a shield.
            return dataclasses.replace(event, sender_keys=("", ""))
        forwarded = bool(getattr(session, "forwarding_chain", None))
        return dataclasses.replace(event, sender_keys=(curve, ed), sender_session=(str(session_id), forwarded))

    def _room(self, r: Any, membership: str) -> Room:
        return translate_room(r, membership, user_id=self._nio.user_id, direct_rooms=self._direct_rooms)

    def room(self, room_id: str) -> Room | None:
        r = self._nio.rooms.get(room_id)
        return self._room(r, "join") if r is not None else None

    def knows_room(self, room_id: str) -> bool:
        return room_id in self._nio.rooms

    def retry_decryption(self, event: Event) -> Event | None:
        """Try an undecryptable event again (after keys arrived or were imported)."""
        if event.source is None:
            return None
        parsed = nio.Event.parse_event(event.source)
        if not isinstance(parsed, nio.MegolmEvent):
            return None
        parsed.room_id = event.room_id
        try:
            decrypted = self._nio.decrypt_event(parsed)
        except (nio.EncryptionError, nio.LocalProtocolError):
            return None
        if isinstance(decrypted, nio.MegolmEvent) or not hasattr(decrypted, "event_id"):
            return None
        return self._translate_event(event.room_id, decrypted)

    async def request_key(self, event: Event) -> None:
        """Ask our other devices and the sender for the key of an undecryptable event."""
        if event.source is None:
            return
        parsed = nio.Event.parse_event(event.source)
        if isinstance(parsed, nio.MegolmEvent):
            parsed.room_id = event.room_id
            # nio refuses a second request for the same session: one is enough.
            with contextlib.suppress(nio.LocalProtocolError, BadRequest):
                await guard(self._nio.request_room_key(parsed), "room key request")

    # -- rooms -----------------------------------------------------------------------

    async def resolve_room(self, room: str) -> str:
        if room.startswith("!") and len(room) > 1:
            return room
        if room.startswith("#") and len(room) > 1:
            resp = await guard(self._nio.room_resolve_alias(room), "resolve alias")
            raise_for(resp, f"resolve {room}")
            return str(resp.room_id)
        raise BadRequest(f"not a room id or alias: {room[:100]!r}")

    async def join(self, room: str) -> str:
        invited = self._nio.invited_rooms.get(room)
        inviter = text_or_none(getattr(invited, "inviter", None))
        resp = await guard(self._nio.join(room), "join")
        raise_for(resp, f"join {room}")
        if str(resp.room_id) in self._direct_rooms and inviter:
            await self._mark_direct(str(resp.room_id), (inviter,))
        return str(resp.room_id)

    async def _mark_direct(self, room_id: str, user_ids: tuple[str, ...]) -> None:
        """Record the room under each peer in the account's `m.direct` data, so that every
        client of the account (not only this one) lists it as a direct chat.

        Best effort: the room exists and is joined whatever happens here, so a failure is
        logged and not raised. nio only reads `m.direct`; the write goes through its HTTP
        session with the token in the header, never in the URL."""
        try:
            current = await guard(self._nio.list_direct_rooms(), "read m.direct")
            rooms: dict[str, list[str]] = {}
            if isinstance(current, nio.DirectRoomsResponse):
                rooms = {
                    str(user): [r for r in listed if isinstance(r, str)]
                    for user, listed in current.rooms.items()
                    if isinstance(listed, list)
                }
            for user_id in user_ids:
                listed = rooms.setdefault(user_id, [])
                if room_id not in listed:
                    listed.append(room_id)
            path = "/_matrix/client/v3/user/{}/account_data/m.direct".format(
                urllib.parse.quote(str(self._nio.user_id), safe="")
            )
            response = await guard(
                self._nio.send(
                    "PUT",
                    path,
                    json.dumps(rooms),
                    headers={
                        "Authorization": f"Bearer {self._nio.access_token}",
                        "Content-Type": "application/json",
                    },
                ),
                "write m.direct",
            )
            async with response:
                if response.status != 200:
                    log.warning("could not record %s as a direct chat: HTTP %s", room_id, response.status)
        except (Unavailable, BadRequest) as exc:
            log.warning("could not record %s as a direct chat: %s", room_id, exc)

    async def leave(self, room_id: str) -> None:
        await call(self._nio.room_leave(room_id), "leave")

    async def invite(self, room_id: str, user_id: str) -> None:
        await call(self._nio.room_invite(room_id, user_id), "invite")

    async def create_room(
        self,
        *,
        name: str | None = None,
        topic: str | None = None,
        alias: str | None = None,
        encrypted: bool = True,
        invite: tuple[str, ...] = (),
        direct: bool = False,
        public: bool = False,
    ) -> str:
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            )
        resp = await guard(
            self._nio.room_create(
                visibility=nio.RoomVisibility.public if public else nio.RoomVisibility.private,
                alias=alias,
                name=name,
                topic=topic,
                invite=invite,
                is_direct=direct,
                preset=nio.RoomPreset.public_chat if public else (
                    nio.RoomPreset.trusted_private_chat if direct else nio.RoomPreset.private_chat),
                initial_state=initial_state,
            ),
            "create room",
        )
        raise_for(resp, "create room")
        if direct:
            self._direct_rooms.add(resp.room_id)
            if invite:
                await self._mark_direct(str(resp.room_id), invite)
        return str(resp.room_id)

    async def paginate(self, room_id: str, start: str, limit: int = 50) -> Page:
        resp = await guard(
            self._nio.room_messages(room_id, start=start, direction=nio.MessageDirection.back, limit=limit),
            "room messages",
        )
        raise_for(resp, "room messages")
        return Page(events=[self._translate_event(room_id, e) for e in resp.chunk], end=resp.end)

    # -- sending ---------------------------------------------------------------------

    async def send(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
        """Send with a caller-chosen transaction id: the homeserver answers a repeat of the
        same id with the first event's id instead of creating a second event."""
        if room_id not in self._nio.rooms and self._nio.olm is not None:
            raise Unavailable(f"send: room {room_id} not synced yet", details={"retry_after_ms": None})
        mroom = self._nio.rooms.get(room_id)
        if self.before_encrypted_send is not None and mroom is not None and mroom.encrypted:
            await self.before_encrypted_send(room_id)
        if event_type == "m.reaction" and mroom is not None and mroom.encrypted and self._nio.olm is not None:
            resp = await self._send_encrypted_reaction(room_id, content, txn_id)
        else:
            resp = await guard(
                self._nio.room_send(room_id, event_type, content, tx_id=txn_id, ignore_unverified_devices=True),
                "send",
            )
        raise_for(resp, "send")
        return str(resp.event_id)

    async def _send_encrypted_reaction(self, room_id: str, content: dict[str, Any], txn_id: str) -> Any:
        """nio's `room_send` sends reactions in clear even in an encrypted room (written
        before reactions were encrypted by clients), which shows the homeserver who reacted
        with what: the reaction is encrypted here, with nio's own steps of `room_send`
        (members, device keys, the room key shared), its relation left in clear as the spec
        wants for aggregation."""
        n = self._nio
        assert n.olm is not None
        if not n.rooms[room_id].members_synced:
            await call(n.joined_members(room_id), "joined members")
            if n.should_query_keys:
                await call(n.keys_query(), "keys query")
        if n.olm.should_share_group_session(room_id):
            sharing = n.sharing_session.get(room_id)
            if sharing is not None:
                await guard(sharing.wait(), "share room key")
            else:
                await call(n.share_group_session(room_id, ignore_unverified_devices=True), "share room key")
        event_type, encrypted = n.encrypt(room_id, "m.reaction", content)
        method, path, data = nio.Api.room_send(n.access_token, room_id, event_type, encrypted, txn_id)
        return await guard(n._send(nio.RoomSendResponse, method, path, data, (room_id,)), "send")

    async def redact(self, room_id: str, event_id: str, txn_id: str, reason: str | None = None) -> str:
        resp = await guard(self._nio.room_redact(room_id, event_id, reason=reason, tx_id=txn_id), "redact")
        raise_for(resp, "redact")
        return str(resp.event_id)

    async def read_receipt(self, room_id: str, event_id: str) -> None:
        resp = await guard(self._nio.room_read_markers(room_id, event_id, read_event=event_id), "read markers")
        raise_for(resp, "read markers")

    async def typing(self, room_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        resp = await guard(self._nio.room_typing(room_id, typing, timeout=timeout_ms), "typing")
        raise_for(resp, "typing")

    async def upload(
        self, data: bytes, *, filename: str, mimetype: str, encrypt: bool
    ) -> tuple[str, dict[str, Any] | None]:
        """Returns the mxc URI and, for encrypted uploads, the key material for the event."""
        resp, keys = await guard(
            self._nio.upload(io.BytesIO(data), content_type=mimetype, filename=filename,
                             encrypt=encrypt, filesize=len(data)),
            "upload",
            timeout=None,
        )
        raise_for(resp, "upload")
        return str(resp.content_uri), keys

    async def download(self, attachment: Attachment) -> bytes:
        resp = await guard(self._nio.download(attachment.url), "download", timeout=None)
        raise_for(resp, "download")
        body = bytes(resp.body)
        if attachment.encryption:
            enc = attachment.encryption
            try:
                return bytes(decrypt_attachment(body, enc["key"]["k"], enc["hashes"]["sha256"], enc["iv"]))
            except (KeyError, TypeError, nio.EncryptionError) as exc:
                raise BadRequest(f"download: attachment does not decrypt: {exc}") from None
        return body

    def known_devices(self, user_id: str) -> list[str]:
        """Device ids of `user_id` whose keys we track (what we encrypt room keys to)."""
        return sorted(d.id for d in self._nio.device_store.active_user_devices(user_id))

    def room_is_encrypted(self, room_id: str) -> bool | None:
        r = self._nio.rooms.get(room_id)
        return None if r is None else bool(r.encrypted)

    # -- hooks for Kumix's own E2EE modules (kumix.matrix.cross_signing, secret_storage,
    # key_backup; driven by kumix.app.trust): nio implements none of these, so they speak
    # the client-server API directly, through this one authenticated request. -----------

    async def request_json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, action: str, accept: tuple[int, ...] = ()
    ) -> tuple[int, dict[str, Any]]:
        """One JSON request to `/_matrix/client/...`; the token goes in the header.

        Answers 2xx and the statuses in `accept` (user-interactive auth's 401) with their
        body; anything else becomes the Kumix error `raise_for` would give."""
        status, parsed, response = await raw_json(self._nio, method, path, body, action)
        doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if 200 <= status < 300 or status in accept:
            return status, doc
        errcode = str(doc.get("errcode", ""))
        error = nio.ErrorResponse(str(doc.get("error", "")), errcode or None, doc.get("retry_after_ms"))
        error.transport_response = response
        raise_for(error, action)
        raise BadRequest(f"{action}: HTTP {status}")

    def device_keys(self) -> dict[str, Any]:
        """This device's identity keys as published (`/keys/upload` `device_keys`), self-signed."""
        olm = self._olm()
        keys: dict[str, Any] = {
            "algorithms": list(olm._algorithms),
            "device_id": self._nio.device_id,
            "user_id": self._nio.user_id,
            "keys": {
                f"curve25519:{self._nio.device_id}": olm.account.identity_keys["curve25519"],
                f"ed25519:{self._nio.device_id}": olm.account.identity_keys["ed25519"],
            },
        }
        keys["signatures"] = {self._nio.user_id: {f"ed25519:{self._nio.device_id}": olm.sign_json(keys)}}
        return keys

    def sign_with_device(self, canonical: bytes) -> str:
        """This device's Ed25519 signature of already-canonical JSON bytes."""
        return str(self._olm().account.sign(canonical.decode("utf-8")))

    def room_key_exports(self) -> list[dict[str, Any]]:
        """Every Megolm room key this device holds, in the key-export format plus
        `first_known_index` (for key backup)."""
        out: list[dict[str, Any]] = []
        for session in self._olm().inbound_group_store:
            out.append({
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": session.room_id,
                "session_id": session.id,
                "sender_key": session.sender_key,
                "sender_claimed_keys": {"ed25519": session.ed25519},
                "forwarding_curve25519_key_chain": list(session.forwarding_chain or []),
                "session_key": session.export_session(session.first_known_index),
                "first_known_index": int(session.first_known_index),
            })
        return out

    def held_sessions(self) -> dict[str, int]:
        """Session id -> first known index of every Megolm room key this device holds."""
        return {s.id: int(s.first_known_index) for s in self._olm().inbound_group_store}

    def import_room_keys(self, exports: list[dict[str, Any]]) -> list[str]:
        """Add room keys (key-export format, already validated) to the crypto store; returns
        the session ids of those that were new or better (an earlier first index) than what
        was held."""
        olm = self._olm()
        added: list[str] = []
        for e in exports:
            session = olm._import_group_session(e["session_key"], e["sender_claimed_keys"]["ed25519"],
                                                e["sender_key"], e["room_id"], e["forwarding_curve25519_key_chain"])
            if session is None or session.id != e["session_id"]:
                continue  # a key that does not decode, or filed under another session's id
            held = olm.inbound_group_store.get(e["room_id"], e["sender_key"], session.id)
            if held is not None and held.first_known_index <= session.first_known_index:
                continue  # what we hold already decrypts at least as much
            if olm.inbound_group_store.add(session):
                olm.save_inbound_group_session(session)
                added.append(session.id)
        return added

    def room_members(self, room_id: str) -> list[str]:
        mroom = self._nio.rooms.get(room_id)
        return sorted(mroom.users) if mroom is not None else []

    def set_excluded_devices(self, room_id: str, users: list[str], excluded: set[tuple[str, str]]) -> None:
        """Keep the room key from exactly the `excluded` (user, device) pairs of `users`'
        devices (nio's blacklist, which its key sharing skips); the others are allowed again.
        When the set changed since the room's last message, its outbound session is dropped:
        nio shares a session once, so a newly allowed device would never get it, and a newly
        excluded one would keep reading it."""
        olm = self._olm()
        previous = self._excluded_by_room.get(room_id)
        if previous is not None and previous != excluded:
            olm.outbound_group_sessions.pop(room_id, None)
        self._excluded_by_room[room_id] = set(excluded)
        for user_id in users:
            for device in self._nio.device_store.active_user_devices(user_id):
                if (user_id, device.id) in excluded:
                    olm.blacklist_device(device)
                elif olm.is_device_blacklisted(device):
                    olm.unblacklist_device(device)

    def _collect_room_verification(self, room_id: str, ev: Any) -> None:
        """In-room verification events (decrypted when the room is encrypted), for
        kumix.app.verification: the request is an `m.room.message`, the rest their own types."""
        source = getattr(ev, "source", None)
        if not isinstance(source, dict) or isinstance(ev, nio.MegolmEvent):
            return
        content = source.get("content")
        kind = source.get("type")
        if not isinstance(content, dict) or not isinstance(kind, str):
            return
        if kind.startswith("m.key.verification.") or (
                kind == "m.room.message" and content.get("msgtype") == "m.key.verification.request"):
            self.room_verification_events.append({**source, "room_id": room_id})

    def _mute_nio_verification(self) -> None:
        """Verification is Kumix's own (kumix.matrix.sas): nio's older SAS code would answer
        the same to-device events itself (cancelling what it does not support)."""
        if self._nio.olm is not None:
            self._nio.olm.handle_key_verification = _ignore_verification

    async def send_to_device(self, event_type: str, messages: dict[str, dict[str, Any]], txn_id: str) -> None:
        """`PUT /sendToDevice`: `messages` is user id -> device id (or "*") -> content."""
        path = (f"/_matrix/client/v3/sendToDevice/{urllib.parse.quote(event_type, safe='')}/"
                f"{urllib.parse.quote(txn_id, safe='')}")
        await self.request_json("PUT", path, {"messages": messages}, action="send to device")

    def _olm(self) -> Any:
        if self._nio.olm is None:
            raise BadRequest("end-to-end encryption is not loaded for this session")
        return self._nio.olm


    # -- keys ------------------------------------------------------------------------

    async def export_keys(self, path: Path, passphrase: str) -> None:
        # nio writes a temporary file next to the target and renames it over the target:
        # a directory or a missing parent would end in a raw OSError (and a stray temp file).
        if path.is_dir():
            raise BadRequest(f"export keys: {path} is a directory; give the path of the file to write")
        if not path.parent.is_dir():
            raise NotFound(f"export keys: directory {path.parent} does not exist")
        try:
            await guard(self._nio.export_keys(str(path), passphrase), "export keys", timeout=None)
            path.chmod(0o600)
        except OSError as exc:
            raise BadRequest(f"export keys: cannot write {path}: {exc.strerror or exc}") from None

    async def import_keys(self, path: Path, passphrase: str) -> None:
        try:
            await guard(self._nio.import_keys(str(path), passphrase), "import keys", timeout=None)
        except nio.EncryptionError as exc:
            raise Unauthorized(f"import keys: wrong passphrase or not a key export ({exc})") from None
        except FileNotFoundError:
            raise NotFound(f"import keys: file {path} does not exist") from None
        except IsADirectoryError:
            raise BadRequest(f"import keys: {path} is a directory; give the path of a key export file") from None
        except (OSError, ValueError) as exc:
            raise BadRequest(f"import keys: {exc}") from None


def _ignore_verification(event: Any) -> None:
    pass


@asynccontextmanager
async def matrix_client(
    homeserver: str, store_dir: Path, *, pickle_key: str, sanitize: HtmlSanitizer
) -> AsyncIterator[MatrixClient]:
    client = MatrixClient(homeserver, store_dir, pickle_key=pickle_key, sanitize=sanitize)
    try:
        yield client
    finally:
        await client.close()


__all__ = ["DEVICE_NAME", "KumixError", "MatrixClient", "homeserver_url", "matrix_client"]
