"""Recovery use cases: set up secret storage with a recovery key, report its state, and
use a recovery key (or passphrase) to make this device trusted.

What is stored where: the secrets (cross-signing private keys, the key backup's private
key) live on the homeserver encrypted under the storage key, and in this device's vault.
The recovery key itself is returned once to the caller to show, and kept nowhere: not in
the vault, not in a log, not in the database.
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from kumix.app import key_backup, trust
from kumix.app.key_backup import VAULT_BACKUP_KEY
from kumix.core.errors import BadRequest, NotFound, SignatureInvalid, WrongRecoveryKey
from kumix.matrix import secret_storage as ss
from kumix.matrix.client import MatrixClient
from kumix.matrix.cross_signing import SECRET_NAMES, CrossSigningKeys
from kumix.store.vault import Vault

BACKUP_SECRET = "m.megolm_backup.v1"  # noqa: S105 (the name of a secret, not one)


@dataclass(frozen=True)
class RecoveryStatus:
    set_up: bool
    key_id: str | None
    has_passphrase: bool
    stored_secrets: tuple[str, ...]
    """Which of the secrets Kumix knows are stored under the default key."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"stored_secrets": list(self.stored_secrets)}


def _account_data_path(client: MatrixClient, event_type: str) -> str:
    user = urllib.parse.quote(client.account.user_id, safe="")
    return f"{trust.API}/user/{user}/account_data/{urllib.parse.quote(event_type, safe='')}"


async def get_account_data(client: MatrixClient, event_type: str) -> dict[str, Any] | None:
    try:
        _, body = await client.request_json("GET", _account_data_path(client, event_type), action="read account data")
    except NotFound:
        return None
    return body


async def put_account_data(client: MatrixClient, event_type: str, content: dict[str, Any]) -> None:
    await client.request_json("PUT", _account_data_path(client, event_type), content, action="write account data")


async def _default_key(client: MatrixClient) -> tuple[str, dict[str, Any]] | None:
    default = await get_account_data(client, ss.DEFAULT_KEY_EVENT)
    key_id = default.get("key") if default else None
    if not isinstance(key_id, str):
        return None
    description = await get_account_data(client, ss.KEY_EVENT_PREFIX + key_id)
    if description is None:
        return None
    return key_id, description


async def status(client: MatrixClient) -> RecoveryStatus:
    found = await _default_key(client)
    if found is None:
        return RecoveryStatus(False, None, False, ())
    key_id, description = found
    stored = []
    for name in (*SECRET_NAMES.values(), BACKUP_SECRET):
        content = await get_account_data(client, name)
        try:
            if ss.encrypted_for(content, key_id) is not None:
                stored.append(name)
        except BadRequest:
            pass
    return RecoveryStatus(True, key_id, isinstance(description.get("passphrase"), dict), tuple(stored))


async def setup(client: MatrixClient, vault: Vault) -> str:
    """Create a new storage key, make it the default, store this device's secrets under
    it; returns the recovery key (to be shown once). Needs the cross-signing private keys
    (this device created the identity, or was verified or recovered first)."""
    keys = trust.held_keys(vault)
    st = await trust.status(client, vault)
    if not st.identity_trusted or keys.master is None or keys.self_signing is None or keys.user_signing is None:
        raise BadRequest("this device does not hold the account's cross-signing keys: verify it or use the existing "
                         "recovery key first (`kumix keys recovery use`)")
    # Recovery covers history too: a key backup is created when the account has none.
    if await key_backup.current_version(client) is None:
        await key_backup.enable(client, vault)
    key = secrets.token_bytes(32)
    key_id = ss.new_key_id()
    await put_account_data(client, ss.KEY_EVENT_PREFIX + key_id, ss.key_description(key, name="Kumix recovery key"))
    seeds = keys.seeds()
    for usage, name in SECRET_NAMES.items():
        await put_account_data(client, name, ss.secret_content(key_id, ss.encrypt_secret(key, name, seeds[usage])))
    backup_key = vault.load().get(VAULT_BACKUP_KEY)
    if backup_key:
        await put_account_data(client, BACKUP_SECRET,
                               ss.secret_content(key_id, ss.encrypt_secret(key, BACKUP_SECRET, backup_key)))
    # The default last: another client switches to the new key only once all secrets are there.
    await put_account_data(client, ss.DEFAULT_KEY_EVENT, {"key": key_id})
    return ss.encode_recovery_key(key)


async def storage_key(client: MatrixClient, recovery_key: str | None = None,
                      passphrase: str | None = None) -> tuple[str, bytes]:
    """The default storage key's id and bytes, from a recovery key or passphrase that the
    key description confirms; `WrongRecoveryKey` otherwise."""
    found = await _default_key(client)
    if found is None:
        raise NotFound("this account has no secret storage (set it up with `kumix keys recovery setup`)")
    key_id, description = found
    if recovery_key is not None:
        key = ss.decode_recovery_key(recovery_key)
    elif passphrase is not None:
        info = description.get("passphrase")
        if not isinstance(info, dict):
            raise WrongRecoveryKey("this account's secret storage has no passphrase; give the recovery key")
        key = ss.key_from_passphrase(passphrase, info)
    else:
        raise BadRequest("give the recovery key or the passphrase")
    ss.check_key(key, description)
    return key_id, key


async def read_secret(client: MatrixClient, key_id: str, key: bytes, name: str) -> str | None:
    content = await get_account_data(client, name)
    enc = ss.encrypted_for(content, key_id)
    return None if enc is None else ss.decrypt_secret(key, name, enc)


async def use(client: MatrixClient, vault: Vault, *, recovery_key: str | None = None,
              passphrase: str | None = None) -> CrossSigningKeys:
    """Open secret storage, check the cross-signing keys in it against the published
    identity, keep them (and the backup key) in the vault and sign this device.

    Nothing is kept when anything fails: a wrong key, a secret that does not
    authenticate, or keys that are not the identity's (`SignatureInvalid`)."""
    key_id, key = await storage_key(client, recovery_key, passphrase)
    seeds: dict[str, str] = {}
    for usage, name in SECRET_NAMES.items():
        secret = await read_secret(client, key_id, key, name)
        if secret is not None:
            seeds[usage] = secret
    backup_key = await read_secret(client, key_id, key, BACKUP_SECRET)
    del key
    keys = CrossSigningKeys.from_seeds(seeds)
    me = client.account.user_id
    identity = trust.parse_own_identity(me, await trust.query_keys(client, [me]))
    if identity is None:
        raise NotFound("this account has no cross-signing identity to recover")
    published = {"master": identity.master_key, "self_signing": identity.self_signing_key,
                 "user_signing": identity.user_signing_key}
    for usage, public in keys.public().items():
        if public != published[usage]:
            raise SignatureInvalid(f"the {usage} key in secret storage is not the account's published {usage} key")
    if keys.master is None or keys.self_signing is None:
        raise NotFound("secret storage does not hold the master and self-signing keys")
    trust.store_keys(vault, keys)
    if backup_key:
        vault.update({VAULT_BACKUP_KEY: backup_key})
    await trust.sign_this_device(client, keys)
    return keys
