"""Trust use cases of one logged-in device: the cross-signing identity (status, bootstrap,
signing this device), and who is verified. Drives the sans-I/O modules of `kumix.matrix`
(`cross_signing`, `signing`) over the client's one authenticated request.

The private cross-signing keys persist in the vault (sealed like the access token), under
`cross_signing.<usage>`; nothing else on disk holds them.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from kumix.core.errors import BadRequest, IdentityChanged, KumixError, NotFound, SignatureInvalid, Unauthorized
from kumix.core.models import Event
from kumix.core.trust import CrossSigningStatus, DeviceInfo, DeviceTrust, UserDevices
from kumix.matrix import cross_signing, sender_trust
from kumix.matrix.client import MatrixClient
from kumix.matrix.cross_signing import CrossSigningKeys, Identity
from kumix.matrix.signing import signing_payload
from kumix.store.database import Database
from kumix.store.room_key_sources import RoomKeySources
from kumix.store.timeline import TimelineStore
from kumix.store.trust_settings import TrustSettings
from kumix.store.vault import Vault

log = logging.getLogger(__name__)

PasswordSource = Callable[[], Awaitable[str | None]]
"""Asked only when the homeserver demands user-interactive auth; None means "no password"."""

VAULT_PREFIX = "cross_signing."

API = "/_matrix/client/v3"


def held_keys(vault: Vault) -> CrossSigningKeys:
    doc = vault.load()
    return CrossSigningKeys.from_seeds(
        {k[len(VAULT_PREFIX):]: v for k, v in doc.items() if k[len(VAULT_PREFIX):] in cross_signing.USAGES
         and k.startswith(VAULT_PREFIX)})


def store_keys(vault: Vault, keys: CrossSigningKeys) -> None:
    vault.update({VAULT_PREFIX + usage: seed for usage, seed in keys.seeds().items()})


async def query_keys(client: MatrixClient, user_ids: list[str]) -> dict[str, Any]:
    _, body = await client.request_json("POST", f"{API}/keys/query",
                                        {"device_keys": {u: [] for u in user_ids}}, action="keys query")
    return body


async def _upload_with_uia(client: MatrixClient, path: str, body: dict[str, Any], password: PasswordSource,
                           action: str) -> None:
    """POST `body`; when the server answers 401 with a password flow, repeat it once with
    `m.login.password` auth (the spec's user-interactive authentication)."""
    status, answer = await client.request_json("POST", path, body, action=action, accept=(401,))
    if status != 401:
        return
    flows = answer.get("flows")
    if not isinstance(flows, list) or not any(
            isinstance(f, dict) and f.get("stages") == ["m.login.password"] for f in flows):
        raise Unauthorized(f"{action}: the homeserver asks for an authentication Kumix cannot do here "
                           "(only a password is supported); approve it in another client")
    secret = await password()
    if not secret:
        raise Unauthorized(f"{action}: the homeserver asks for the account password",
                           details={"reason": "password_required"})
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.account.user_id},
            "password": secret}
    if isinstance(answer.get("session"), str):
        auth["session"] = answer["session"]
    status, answer = await client.request_json("POST", path, body | {"auth": auth}, action=action, accept=(401,))
    if status == 401:
        raise Unauthorized(f"{action}: the homeserver refused the password", details={"reason": "password_refused"})


async def upload_signatures(client: MatrixClient, signed: dict[str, dict[str, Any]]) -> None:
    _, answer = await client.request_json("POST", f"{API}/keys/signatures/upload", signed, action="upload signatures")
    failures = answer.get("failures")
    if isinstance(failures, dict) and failures:
        raise SignatureInvalid("the homeserver refused a signature", details={"failures": failures})


async def sign_this_device(client: MatrixClient, keys: CrossSigningKeys) -> None:
    """Publish the SSK's signature of this device, and this device's signature of the
    master key (so the user's other devices see that this one vouches for the identity)."""
    account = client.account
    if keys.self_signing is None:
        raise BadRequest("this device does not hold the self-signing key")
    signed: dict[str, dict[str, Any]] = {
        account.user_id: {account.device_id: cross_signing.sign_device(account.user_id, client.device_keys(),
                                                                       keys.self_signing)}}
    if keys.master is not None:
        master = cross_signing.key_object(account.user_id, "master", keys.master.public_key)
        master["signatures"] = {account.user_id: {
            f"ed25519:{account.device_id}": client.sign_with_device(signing_payload(master))}}
        signed[account.user_id][keys.master.public_key] = master
    await upload_signatures(client, signed)


async def bootstrap(client: MatrixClient, vault: Vault, password: PasswordSource, *, reset: bool = False) -> bool:
    """Make sure this device is cross-signed by the account's identity.

    No identity yet (or `reset`): create one, publish it (with user-interactive auth when
    the server asks), keep the private keys in the vault, sign this device. An identity
    made elsewhere whose keys this device does not hold is left alone (returns False):
    this device becomes trusted by verification or the recovery key, never by replacing
    the user's identity behind their other devices' backs."""
    me = client.account.user_id
    identity = parse_own_identity(me, await query_keys(client, [me]))
    held = held_keys(vault)
    if identity is not None and not reset:
        if held.master is None or held.master.public_key != identity.master_key or held.self_signing is None \
                or held.self_signing.public_key != identity.self_signing_key:
            return False
        await sign_this_device(client, held)
        return True
    keys = CrossSigningKeys.generate()
    await _upload_with_uia(client, f"{API}/keys/device_signing/upload", cross_signing.upload_body(me, keys),
                           password, "publish cross-signing keys")
    # Sealed before anything depends on them: an identity nobody holds the keys of would
    # strand the account (only a reset, with its password prompt, would undo it).
    store_keys(vault, keys)
    await sign_this_device(client, keys)
    return True


VAULT_VERIFIED_MASTER = "cross_signing.verified_master"
"""The master key a verification with another of our devices confirmed (kumix.app.verification)."""


def trusts_own_identity(vault: Vault, identity: Identity | None) -> bool:
    """This device trusts the account's identity: it holds its master key, or verified it
    with another of the user's devices."""
    if identity is None:
        return False
    held = held_keys(vault)
    if held.master is not None and held.master.public_key == identity.master_key:
        return True
    return vault.load().get(VAULT_VERIFIED_MASTER) == identity.master_key


def parse_own_identity(user_id: str, query: dict[str, Any]) -> Identity | None:
    return cross_signing.parse_identity(user_id, query)


def _device_list(query: dict[str, Any], user_id: str) -> dict[str, dict[str, Any]]:
    table = query.get("device_keys")
    devices = table.get(user_id) if isinstance(table, dict) else None
    if not isinstance(devices, dict):
        return {}
    return {d: v for d, v in devices.items() if isinstance(v, dict) and v.get("device_id") == d}


async def status(client: MatrixClient, vault: Vault) -> CrossSigningStatus:
    account = client.account
    query = await query_keys(client, [account.user_id])
    identity = parse_own_identity(account.user_id, query)
    held = held_keys(vault)
    mine = _device_list(query, account.user_id).get(account.device_id)
    return CrossSigningStatus(
        user_id=account.user_id,
        device_id=account.device_id,
        has_identity=identity is not None,
        master_key=identity.master_key if identity else None,
        private_keys=tuple(held.seeds()),
        identity_trusted=trusts_own_identity(vault, identity),
        device_signed=identity is not None and mine is not None and identity.signs_device(mine),
    )


async def devices(client: MatrixClient, vault: Vault, user_id: str | None = None,
                  settings: TrustSettings | None = None) -> UserDevices:
    """The devices of `user_id` (default: ourselves) and how far each is trusted."""
    me = client.account
    target = user_id or me.user_id
    query = await query_keys(client, sorted({me.user_id, target}))
    own = _safe_identity(me.user_id, query)
    own_trusted = trusts_own_identity(vault, own)
    changed = False
    if target == me.user_id:
        identity, verified = own, own_trusted
    else:
        identity = _safe_identity(target, query)
        verified = bool(identity is not None and own_trusted and own is not None and own.user_signing_key
                        and identity.master_signed_by(me.user_id, own.user_signing_key))
        pinned = settings.pinned(target) if settings is not None else None
        changed = pinned is not None and (identity is None or identity.master_key != pinned)
        verified = verified and not changed
        if verified and pinned is None and settings is not None and identity is not None:
            # Verified from another of our devices (our USK signed them): remembered, so a
            # later change of their identity is a warning here too, not a silent downgrade.
            settings.pin(target, identity.master_key)
    out: list[DeviceInfo] = []
    for device_id, keys in sorted(_device_list(query, target).items()):
        signed = identity is not None and identity.signs_device(keys)
        trust: DeviceTrust = ("verified" if verified else "cross_signed_unverified_identity") if signed \
            else "not_cross_signed"
        unsigned = keys.get("unsigned")
        name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
        ed = (keys.get("keys") or {}).get(f"ed25519:{device_id}") if isinstance(keys.get("keys"), dict) else None
        out.append(DeviceInfo(user_id=target, device_id=device_id, display_name=name if isinstance(name, str) else None,
                              ed25519=ed if isinstance(ed, str) else None, trust=trust,
                              this_device=target == me.user_id and device_id == me.device_id))
    return UserDevices(user_id=target, master_key=identity.master_key if identity else None,
                       identity_verified=verified, devices=tuple(out),
                       identity_changed=target != me.user_id and changed)


def _safe_identity(user_id: str, query: dict[str, Any]) -> Identity | None:
    """A published identity that fails its own signatures counts as none (and is logged)."""
    try:
        return cross_signing.parse_identity(user_id, query)
    except SignatureInvalid as exc:
        log.warning("cross-signing identity of %s refused: %s", user_id, exc.message)
        return None


async def bootstrap_at_login(client: MatrixClient, vault: Vault, password: str,
                             progress: Callable[[str], None], *, reset: bool = False) -> None:
    """The login hook: a fresh account gets its identity at once; a failure here does not
    undo the login (the device works, only unverified), it is reported instead."""
    async def give() -> str | None:
        return password
    try:
        done = await bootstrap(client, vault, give)
        if not done and reset:
            done = await bootstrap(client, vault, give, reset=True)
    except KumixError as exc:
        progress(f"cross-signing not set up ({exc.code}: {exc.message}); "
                 "run `kumix keys cross-signing bootstrap` to retry")
        return
    if done:
        progress("this device is cross-signed")
    else:
        progress("this account already has a cross-signing identity: this device is not verified yet; "
                 "verify it from another device (`kumix verify`) or with the recovery key "
                 "(`kumix keys recovery use`)")


def quote(user_id: str) -> str:
    return urllib.parse.quote(user_id, safe="")


# -- sharing rules (MSC4153) -------------------------------------------------------------------


class SharingRules:
    """Before each encrypted send: with "exclude insecure devices" on, the room key goes
    only to devices their owner cross-signed (a device of a user without any identity is
    insecure too); off, to every device (the pre-MSC4153 behaviour). Installed on the
    client by `MatrixService.session()`."""

    def __init__(self, client: MatrixClient, exclude_insecure: bool, settings: TrustSettings | None = None) -> None:
        self.client = client
        self.exclude_insecure = exclude_insecure
        self.settings = settings

    async def __call__(self, room_id: str) -> None:
        members = self.client.room_members(room_id)
        if not members:
            return
        if self.settings is not None:
            # Read at each send: the setting can change while the session runs (the web
            # page's encryption settings), and the next room key must follow it.
            self.exclude_insecure = self.settings.exclude_insecure_devices(had_account=True)
        excluded: set[tuple[str, str]] = set()
        pinned = {u: k for u in members if (k := self.settings.pinned(u)) is not None} if self.settings else {}
        if self.exclude_insecure or pinned:
            query = await query_keys(self.client, members)
            for user_id, master in pinned.items():
                now = _safe_identity(user_id, query)
                if now is None or now.master_key != master:
                    # A verified user's identity changed: nothing is encrypted for the new
                    # one until the user looks at it (re-verifies, or accepts it).
                    raise IdentityChanged(
                        f"{user_id}'s cross-signing identity changed since you verified them; verify them again "
                        f"(`kumix verify {user_id}`) or accept the new identity (`kumix devices {user_id} "
                        "--accept-new-identity`)", details={"user_id": user_id})
        if self.exclude_insecure:
            for user_id in members:
                identity = _safe_identity(user_id, query)
                for device_id, keys in _device_list(query, user_id).items():
                    if identity is None or not identity.signs_device(keys):
                        excluded.add((user_id, device_id))
        self.client.set_excluded_devices(room_id, members, excluded)


def install_sharing_rules(client: MatrixClient, exclude_insecure: bool,
                          settings: TrustSettings | None = None) -> SharingRules:
    rules = SharingRules(client, exclude_insecure, settings)
    client.before_encrypted_send = rules
    return rules


def exclude_insecure_devices(db: Database, value: bool | None = None) -> bool:
    """The data directory's "exclude insecure devices" setting, set first when `value` is given."""
    settings = TrustSettings(db)
    if value is not None:
        settings.set_exclude_insecure_devices(value)
    # Not fixed yet: a data directory without an account is a new one (default on).
    return settings.exclude_insecure_devices(had_account=TimelineStore(db).account() is not None)


async def accept_new_identity(client: MatrixClient, db: Database, user_id: str) -> str:
    """The user looked at a changed identity and accepts it: pin the current master key
    (it is not *verified* by this; `kumix verify` does that)."""
    identity = _safe_identity(user_id, await query_keys(client, [user_id]))
    if identity is None:
        raise NotFound(f"{user_id} has no cross-signing identity")
    TrustSettings(db).pin(user_id, identity.master_key)
    return identity.master_key


def settings_of(db: Database) -> TrustSettings:
    return TrustSettings(db)


# -- shields: the trust of the device each message came from -------------------------------


WITHHELD_BODY = {
    "not_cross_signed": "** withheld: sent from a device its owner has not cross-signed **",
    "unknown_device": "** withheld: sent from an unknown device **",
    "identity_changed": "** withheld: the sender's identity changed since you verified them **",
}


async def judge_senders(client: MatrixClient, vault: Vault, settings: TrustSettings,
                        events: list[Event], sources: RoomKeySources | None = None) -> list[Event]:
    """Each decrypted event with the trust of its sending device, as of now (one
    `/keys/query` for all their senders); the others unchanged.

    With "exclude insecure devices" on (MSC4153), an event whose verdict is in
    `sender_trust.WITHHELD` is withheld: it becomes an undecryptable event (its plaintext
    is dropped here, before anything stores or shows it), marked with why. An event whose
    room key came forwarded, or from a key backup (`sources`), is at best `unauthenticated`."""
    todo = [e for e in events if e.sender_keys is not None]
    if not todo:
        return events
    me = client.account.user_id
    query = await query_keys(client, sorted({me} | {e.sender for e in todo}))
    own_trusted = trusts_own_identity(vault, _safe_identity(me, query))
    exclude = settings.exclude_insecure_devices(had_account=True)
    mine = client.device_keys()["keys"]
    this_device = (mine[f"curve25519:{client.account.device_id}"], mine[f"ed25519:{client.account.device_id}"])
    from_backup = sources.insecure(e.sender_session[0] for e in todo if e.sender_session is not None) \
        if sources is not None else set()
    out: list[Event] = []
    for ev in events:
        if ev.sender_keys is None:
            out.append(ev)
            continue
        curve, ed = ev.sender_keys
        verdict = sender_trust.judge(query, me=me, sender=ev.sender, curve25519=curve, ed25519=ed,
                                     own_identity_trusted=own_trusted,
                                     pinned_master=settings.pinned(ev.sender) if ev.sender != me else None)
        if verdict.trust == "verified" and ev.sender != me and settings.pinned(ev.sender) is None:
            # Seen verified (our USK signed them, perhaps from another device): remembered,
            # so that a later change of their identity warns (`identity_changed`).
            seen = _safe_identity(ev.sender, query)
            if seen is not None:
                settings.pin(ev.sender, seen.master_key)
        if ev.sender_session is not None and (ev.sender_session[1] or ev.sender_session[0] in from_backup):
            verdict = sender_trust.from_insecure_source(verdict)
        # This device's own messages are never withheld from itself (it holds the Olm
        # account that sent them); their mark still says whether it is cross-signed.
        if exclude and verdict.trust in sender_trust.WITHHELD and ev.sender_keys != this_device:
            out.append(Event(event_id=ev.event_id, room_id=ev.room_id, sender=ev.sender, origin_ts=ev.origin_ts,
                             kind="undecryptable", body=WITHHELD_BODY[verdict.trust], encrypted=True,
                             transaction_id=ev.transaction_id, sender_trust=verdict.trust,
                             sender_device=verdict.device_id))
        else:
            out.append(dataclasses.replace(ev, sender_trust=verdict.trust, sender_device=verdict.device_id))
    return out
