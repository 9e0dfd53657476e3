"""Verification use cases over to-device messages: ask another device (ours or another
user's) to verify, or answer its request; drive `kumix.matrix.sas` with the events the
session's syncs bring; when both sides confirmed and the MACs verified, record the trust:

- another user's master key MAC'd and verified: signed with our user-signing key (uploaded);
- one of our own devices: signed with our self-signing key (uploaded), when we hold it;
- our own master key MAC'd by a device of ours: remembered in the vault as verified, so this
  device trusts the identity (it holds no private key of it).

Each step waits for the next event by syncing (bounded by `MAX_SYNCS`), never by sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kumix.app import trust
from kumix.core.errors import NotFound, VerificationFailed
from kumix.matrix import cross_signing
from kumix.matrix.sas import Outgoing, Party, SasVerification, request_is_stale, room_request_content
from kumix.store.trust_settings import TrustSettings

if TYPE_CHECKING:
    from kumix.app.matrix_session import Session

MAX_SYNCS = 120
"""Syncs (each a 1 s long-poll) one step may take before the verification is abandoned."""


class Verifier:
    """Verification flows of one session (one per `Session`)."""

    def __init__(self, session: Session,
                 events: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None) -> None:
        self.session = session
        self.client = session.client
        self._events = events
        """Where the flow's events come from: by default it syncs and takes every
        verification event itself; `kumix.app.verification_flows` hands each of its
        concurrent flows the events through this instead."""

    async def _keys_of(self, user_id: str) -> tuple[dict[str, Any], cross_signing.Identity | None]:
        query = await trust.query_keys(self.client, [user_id])
        try:
            identity = cross_signing.parse_identity(user_id, query)
        except Exception:  # a broken identity is no identity (never half-trusted)
            identity = None
        return query, identity

    async def _new(self, their_user: str, transaction_id: str, *, requester: bool,
                   room_id: str | None = None) -> SasVerification:
        me = self.client.account
        query, identity = await self._keys_of(their_user)
        devices = query.get("device_keys", {}).get(their_user, {})

        def their_keys(device_id: str) -> dict[str, str]:
            keys: dict[str, str] = {}
            dk = devices.get(device_id) if isinstance(devices, dict) else None
            ed = (dk.get("keys") or {}).get(f"ed25519:{device_id}") if isinstance(dk, dict) else None
            if isinstance(ed, str):
                keys[f"ed25519:{device_id}"] = ed
            if identity is not None:
                keys[f"ed25519:{identity.master_key}"] = identity.master_key
            return keys

        ours: dict[str, str] = {f"ed25519:{me.device_id}": self.client.device_keys()["keys"][f"ed25519:{me.device_id}"]}
        st = await trust.status(self.client, self.session.service.vault)
        if st.identity_trusted and st.master_key:
            ours[f"ed25519:{st.master_key}"] = st.master_key
        return SasVerification(us=Party(me.user_id, me.device_id), their_user=their_user,
                               transaction_id=transaction_id, our_keys=ours, their_keys=their_keys,
                               requester=requester, room_id=room_id)

    async def _send(self, v: SasVerification, out: Outgoing, *, device: str | None = None) -> None:
        for event_type, content in out:
            if v.room_id is not None:
                # In a room: a timeline event, encrypted like any other in an encrypted room.
                await self.client.send(v.room_id, event_type, content, f"kumix-{secrets.token_hex(8)}")
                continue
            target = device or v.their_device or "*"
            await self.client.send_to_device(event_type, {v.their_user: {target: content}},
                                             f"kumix-{secrets.token_hex(8)}")

    async def _next_events(self) -> list[dict[str, Any]]:
        if self._events is not None:
            return await self._events()
        await self.session.sync(timeout_ms=1000)
        return take_events(self.session)

    async def request(self, user_id: str, device_id: str | None = None) -> SasVerification:
        """Ask `user_id`'s device (all of them when None) to verify; returns once the other
        side is ready and our start is sent."""
        v = await self._new(user_id, f"kumix{secrets.token_hex(12)}", requester=True)
        await self._send(v, [("m.key.verification.request", v.request_content(int(time.time() * 1000)))],
                         device=device_id or "*")
        await self.advance(v, lambda: v.state != "requested")
        return v

    async def wait_request(self, from_user: str | None = None) -> SasVerification:
        """Answer the next verification request that arrives (from `from_user` if given)."""
        for _ in range(MAX_SYNCS):
            for ev in await self._next_events():
                content = ev.get("content")
                sender = ev.get("sender")
                if ev.get("type") != "m.key.verification.request" or not isinstance(content, dict) \
                        or not isinstance(sender, str) or (from_user and sender != from_user):
                    continue
                if not isinstance(content.get("transaction_id"), str) \
                        or request_is_stale(ev, int(time.time() * 1000)):
                    continue
                return await self.answer(ev)
        raise NotFound("no verification request arrived")

    async def answer(self, request: dict[str, Any]) -> SasVerification:
        """Answer one request event (to-device, or in-room with its `room_id`): we are ready."""
        content, sender, room_id = request.get("content"), request.get("sender"), request.get("room_id")
        if not isinstance(content, dict) or not isinstance(sender, str):
            raise VerificationFailed("not a verification request", details={"reason": "m.invalid_message"})
        if isinstance(room_id, str):
            event_id = request.get("event_id")
            if not isinstance(event_id, str):
                raise VerificationFailed("an in-room request without an event id",
                                         details={"reason": "m.invalid_message"})
            v = await self._new(sender, event_id, requester=False, room_id=room_id)
            await self._send(v, v.receive("m.key.verification.request", content))
        else:
            txn = content.get("transaction_id")
            if not isinstance(txn, str):
                raise VerificationFailed("a request without a transaction id", details={"reason": "m.invalid_message"})
            v = await self._new(sender, txn, requester=False)
            await self._send(v, v.receive("m.key.verification.request", content),
                             device=str(content.get("from_device", "*")))
        self._check(v)
        return v

    async def request_in_room(self, user_id: str, room_id: str) -> SasVerification:
        """Ask `user_id` to verify in a room (a DM, as the spec suggests): the request is a
        message there, and its event id is the transaction id."""
        me = self.client.account
        event_id = await self.client.send(room_id, "m.room.message",
                                          room_request_content(Party(me.user_id, me.device_id), user_id),
                                          f"kumix-{secrets.token_hex(8)}")
        v = await self._new(user_id, event_id, requester=True, room_id=room_id)
        await self.advance(v, lambda: v.state != "requested")
        return v

    async def wait_request_in_room(self, from_user: str | None = None) -> SasVerification:
        """Answer the next in-room verification request addressed to us."""
        me = self.client.account
        for _ in range(MAX_SYNCS):
            for ev in await self._next_events():
                content, sender, room_id = ev.get("content"), ev.get("sender"), ev.get("room_id")
                if ev.get("type") != "m.key.verification.request" or not isinstance(content, dict) \
                        or not isinstance(room_id, str) or not isinstance(sender, str) or sender == me.user_id \
                        or content.get("to") != me.user_id or (from_user and sender != from_user):
                    continue
                if not isinstance(ev.get("event_id"), str) or request_is_stale(ev, int(time.time() * 1000)):
                    continue
                return await self.answer(ev)
        raise NotFound("no verification request arrived")

    def _check(self, v: SasVerification) -> None:
        if v.cancelled:
            code, reason = v.cancel_reason or ("m.user", "")
            raise VerificationFailed(f"verification cancelled ({code}): {reason}", details={"reason": code})

    async def advance(self, v: SasVerification, done: Callable[[], bool]) -> None:
        """Process this transaction's events until `done()` (or it is cancelled: raised)."""
        for _ in range(MAX_SYNCS):
            self._check(v)
            if done():
                return
            for ev in await self._next_events():
                content = ev.get("content")
                if ev.get("sender") != v.their_user or not isinstance(content, dict) \
                        or ev.get("room_id") != v.room_id:
                    continue
                await self._send(v, v.receive(str(ev.get("type")), content))
        self._check(v)
        if not done():
            await self._send(v, v.timeout())
            raise VerificationFailed("the other side stopped answering", details={"reason": "m.timeout"})

    async def wait_for_sas(self, v: SasVerification) -> None:
        await self.advance(v, lambda: v.state == "keys")

    async def confirm(self, v: SasVerification) -> None:
        """The user said the emoji match: send our MACs, finish, and record the trust."""
        await self._send(v, v.confirm())
        await self.advance(v, lambda: v.done)
        await self._record(v)

    async def mismatch(self, v: SasVerification) -> None:
        await self._send(v, v.mismatch())

    async def cancel(self, v: SasVerification) -> None:
        await self._send(v, v.cancel())

    async def timeout(self, v: SasVerification) -> None:
        await self._send(v, v.timeout())

    async def _record(self, v: SasVerification) -> None:
        me = self.client.account
        vault = self.session.service.vault
        held = trust.held_keys(vault)
        query, identity = await self._keys_of(v.their_user)
        master_verified = identity is not None and f"ed25519:{identity.master_key}" in v.verified
        signed: dict[str, dict[str, Any]] = {}
        if v.their_user != me.user_id:
            if master_verified and identity is not None:
                TrustSettings(self.session.service.db).pin(v.their_user, identity.master_key)
            if master_verified and held.user_signing is not None and identity is not None:
                signed[v.their_user] = {identity.master_key: cross_signing.sign_master_of(
                    me.user_id, identity.master_object, held.user_signing)}
        else:
            # Only the device key whose MAC verified, as published now: a server that swapped
            # it since the MACs (or publishes an object the device did not sign) gets nothing.
            verified_key = v.verified.get(f"ed25519:{v.their_device}")
            device = cross_signing.published_device(query, me.user_id, str(v.their_device), verified_key) \
                if verified_key is not None else None
            if held.self_signing is not None and device is not None:
                signed[me.user_id] = {str(v.their_device): cross_signing.sign_device(me.user_id, device,
                                                                                   held.self_signing)}
            if master_verified and identity is not None and held.master is None:
                vault.update({trust.VAULT_VERIFIED_MASTER: identity.master_key})
        if signed:
            await trust.upload_signatures(self.client, signed)


def take_events(session: Session) -> list[dict[str, Any]]:
    """The verification events the session's syncs collected since the last call (to-device
    ones, and in-room ones with their `room_id`), taken so each is handled once."""
    client = session.client
    got = list(client.verification_events)
    got += [_as_verification(e) for e in client.room_verification_events]
    client.verification_events[:] = []
    client.room_verification_events[:] = []
    return got


def _as_verification(event: dict[str, Any]) -> dict[str, Any]:
    """An in-room request is an `m.room.message`; the state machine knows it by its own type."""
    content = event.get("content")
    if event.get("type") == "m.room.message" and isinstance(content, dict) \
            and content.get("msgtype") == "m.key.verification.request":
        return {**event, "type": "m.key.verification.request"}
    return event
