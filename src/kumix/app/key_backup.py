"""Key backup use cases: enable (create or adopt the backup version), upload room keys as
this device creates and receives them (batched, retried with backoff like the outbox),
restore with progress, and the background loop a running session owns.

Upload happens only to a backup version whose `auth_data` is signed by a key this device
trusts (our master key, this device, or a device our identity signed): a version the
server or an attacker created would otherwise collect every room key. Restored keys are
imported and every undecryptable event they unlock is decrypted again.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kumix.app import trust
from kumix.core.errors import BadRequest, KumixError, NotFound, SignatureInvalid, Transient
from kumix.matrix import key_backup as kb
from kumix.matrix.backoff import Backoff
from kumix.matrix.client import MatrixClient
from kumix.matrix.crypto_primitives import PkDecryptionKey
from kumix.store.key_backup_state import KeyBackupState
from kumix.store.room_key_sources import RoomKeySources
from kumix.store.vault import Vault

if TYPE_CHECKING:
    from kumix.app.matrix_session import Session

log = logging.getLogger(__name__)

VAULT_BACKUP_KEY = "key_backup.private_key"
BATCH = 100
"""Room keys per upload request."""
POLL_SECONDS = 2.0
"""How soon a running session notices a room key it created or received."""
PAUSE_AFTER_REFUSAL_SECONDS = 300.0
"""After a permanent refusal (no trusted backup), how long until the loop looks again."""

API = trust.API


@dataclass(frozen=True)
class BackupStatus:
    version: str | None
    trusted: bool
    """The current version is signed by a key this device trusts: keys are uploaded to it."""
    have_key: bool
    """This device holds the private key of the current version: it can restore from it."""
    uploaded: int
    held: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreResult:
    total: int
    imported: int
    decrypted_events: int
    refused: tuple[dict[str, str], ...] = field(default_factory=tuple)
    """Entries that failed authentication or validation: room_id, session_id, code, message."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"refused": list(self.refused)}


async def current_version(client: MatrixClient) -> kb.BackupVersion | None:
    try:
        _, doc = await client.request_json("GET", f"{API}/room_keys/version", action="read key backup version")
    except NotFound:
        return None
    return kb.parse_version(doc)


def _held_key(vault: Vault) -> PkDecryptionKey | None:
    secret = vault.load().get(VAULT_BACKUP_KEY)
    return kb.private_key_from_secret(secret) if secret else None


async def _trusted_keys(client: MatrixClient, vault: Vault) -> dict[str, str]:
    """Key id -> Ed25519 public key of every key whose signature on a backup we accept."""
    me = client.account
    keys: dict[str, str] = {}
    own = client.device_keys()["keys"].get(f"ed25519:{me.device_id}")
    if isinstance(own, str):
        keys[me.device_id] = own
    query = await trust.query_keys(client, [me.user_id])
    identity = trust.parse_own_identity(me.user_id, query)
    # Our identity as this device trusts it: it holds the master key, or verified it by SAS
    # with another of our devices (which then signs backups it creates with that key).
    if identity is not None and trust.trusts_own_identity(vault, identity):
        keys[identity.master_key] = identity.master_key
        devices = query.get("device_keys", {}).get(me.user_id, {})
        for device_id, dk in devices.items() if isinstance(devices, dict) else ():
            ed = (dk.get("keys") or {}).get(f"ed25519:{device_id}") if isinstance(dk, dict) else None
            if isinstance(ed, str) and identity.signs_device(dk):
                keys[device_id] = ed
    return keys


async def enable(client: MatrixClient, vault: Vault) -> kb.BackupVersion:
    """Adopt the current backup when this device holds its key; create one when there is
    none. A backup this device cannot read is left alone (`BadRequest`): replacing it would
    strand the keys other devices put there."""
    version = await current_version(client)
    held = _held_key(vault)
    if version is not None:
        if held is not None and held.public_key == version.public_key:
            return version
        raise BadRequest("this account already has a key backup this device does not hold the key of; "
                         "use the recovery key (`kumix keys recovery use`) to get it")
    key = PkDecryptionKey.generate()
    auth = kb.unsigned_auth_data(key.public_key)
    me = client.account
    auth = kb.add_signature(auth, me.user_id, me.device_id, client.sign_with_device(kb.payload_to_sign(auth)))
    cs = trust.held_keys(vault)
    if cs.master is not None:
        # Signed by the master key too, so the account's other devices trust it without
        # having verified this device first.
        auth = kb.add_signature(auth, me.user_id, cs.master.public_key,
                                cs.master.sign(kb.payload_to_sign({"public_key": key.public_key})))
    # The key is sealed before the version exists: a backup nobody holds the key of is useless.
    vault.update({VAULT_BACKUP_KEY: kb.secret_of(key)})
    _, answer = await client.request_json("POST", f"{API}/room_keys/version", kb.version_body(auth),
                                          action="create key backup")
    if not isinstance(answer.get("version"), str):
        raise BadRequest("the homeserver did not say which key backup version it created")
    return kb.BackupVersion(version=answer["version"], public_key=key.public_key, auth_data=auth)


async def status(client: MatrixClient, vault: Vault, state: KeyBackupState) -> BackupStatus:
    version = await current_version(client)
    held_count = len(client.room_key_exports())
    if version is None:
        return BackupStatus(None, False, False, 0, held_count)
    held = _held_key(vault)
    trusted = kb.trusted_by(version, client.account.user_id, await _trusted_keys(client, vault)) is not None
    return BackupStatus(version.version, trusted, held is not None and held.public_key == version.public_key,
                        len(state.uploaded(version.version)), held_count)


async def upload_pending(client: MatrixClient, vault: Vault, state: KeyBackupState) -> int:
    """Upload every room key not yet in the current backup (or held now from an earlier
    index); returns how many. `SignatureInvalid` when the current backup is not one this
    device trusts: nothing is uploaded then."""
    version = await current_version(client)
    if version is None:
        return 0
    if kb.trusted_by(version, client.account.user_id, await _trusted_keys(client, vault)) is None:
        raise SignatureInvalid("the account's current key backup is not signed by a key this device trusts; "
                               "room keys are not uploaded to it")
    done = state.uploaded(version.version)
    pending = [e for e in client.room_key_exports()
               if e["session_id"] not in done or done[e["session_id"]] > e["first_known_index"]]
    for start in range(0, len(pending), BATCH):
        chunk = pending[start:start + BATCH]
        rooms: dict[str, Any] = {}
        for e in chunk:
            data = kb.encrypt_session(version.public_key, e, first_message_index=e["first_known_index"],
                                      forwarded_count=len(e["forwarding_curve25519_key_chain"]), is_verified=False)
            rooms.setdefault(e["room_id"], {"sessions": {}})["sessions"][e["session_id"]] = data
        query = urllib.parse.urlencode({"version": version.version})
        await client.request_json("PUT", f"{API}/room_keys/keys?{query}", {"rooms": rooms},
                                  action="upload room keys to the backup")
        # Marked only once the server has them: an interrupted upload is repeated, never lost.
        state.mark_uploaded(version.version, [(e["session_id"], e["first_known_index"]) for e in chunk])
    return len(pending)


async def restore(session: Session, progress: Callable[[str], None] | None = None) -> RestoreResult:
    """Download the current backup, import every entry that authenticates under our key,
    and decrypt the held events they unlock. Entries that fail are reported, not fatal."""
    client, vault = session.client, session.service.vault
    say = progress or (lambda _: None)
    version = await current_version(client)
    if version is None:
        raise NotFound("this account has no key backup")
    key = _held_key(vault)
    if key is None or key.public_key != version.public_key:
        raise BadRequest("this device does not hold the key of the current key backup; "
                         "use the recovery key first (`kumix keys recovery use`)")
    query = urllib.parse.urlencode({"version": version.version})
    _, doc = await client.request_json("GET", f"{API}/room_keys/keys?{query}", action="download the key backup")
    found = kb.entries(doc)
    say(f"restoring {len(found)} room key(s) from backup version {version.version}…")
    good: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    for n, (room_id, session_id, data) in enumerate(found, 1):
        try:
            good.append(kb.decrypt_session(key, room_id, session_id, data))
        except KumixError as exc:
            refused.append({"room_id": room_id, "session_id": session_id, "code": exc.code, "message": exc.message})
        if n % BATCH == 0:
            say(f"{n}/{len(found)} room keys checked")
    imported = client.import_room_keys(good)
    # Marked before anything is decrypted with them: a backup entry's claim of its sender
    # is only as good as whoever could write to the backup.
    RoomKeySources(session.service.db).mark_insecure(imported, "key_backup")
    say(f"{len(imported)} room key(s) imported; retrying undecryptable events…")
    decrypted = await session.retry_undecryptable()
    return RestoreResult(total=len(found), imported=len(imported), decrypted_events=decrypted,
                         refused=tuple(refused))


async def backup_loop(session: Session, state: KeyBackupState) -> None:
    """Owned by `Session.run`: upload new room keys while the session runs. A homeserver
    that is down is retried with backoff; an untrusted or missing backup is looked at again
    after a pause, and never stops the session. Runs until cancelled."""
    backoff = Backoff()
    held = -1
    while True:
        delay = POLL_SECONDS
        count = len(session.client.room_key_exports())
        if count != held:
            try:
                await upload_pending(session.client, session.service.vault, state)
                held = count
                backoff.reset()
            except Transient as exc:
                delay = backoff.next_delay(exc.details.get("retry_after_ms"))
            except KumixError as exc:
                log.warning("key backup: %s", exc)
                held = count
                delay = PAUSE_AFTER_REFUSAL_SECONDS
        await asyncio.sleep(delay)


def state_of(session: Session) -> KeyBackupState:
    """What this data directory uploaded to which backup version."""
    return KeyBackupState(session.service.db)
