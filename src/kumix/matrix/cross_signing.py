"""Cross-signing (Matrix spec, "Cross-signing"): the master, self-signing and user-signing
keys of an account, the bodies that publish them, and the checks that decide whether a
published identity and a device are cross-signed. Sans-I/O: no requests are made here.

Chain of trust: the master key (MSK) is the user's identity. It signs the self-signing key
(SSK), which signs the user's own devices, and the user-signing key (USK), which signs
other users' master keys once they are verified. A device is *cross-signed* when its keys
carry a valid SSK signature and the SSK carries a valid MSK signature; whether the MSK
itself is trusted (ours because we hold it or verified it; another user's because our USK
signed it) is decided by `kumix.app.trust`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumix.core.errors import BadRequest, SignatureInvalid
from kumix.matrix.crypto_primitives import SigningKey, b64decode, b64encode
from kumix.matrix.signing import sign_json, verify_signed_json

USAGES = ("master", "self_signing", "user_signing")

SECRET_NAMES = {
    "master": "m.cross_signing.master",
    "self_signing": "m.cross_signing.self_signing",
    "user_signing": "m.cross_signing.user_signing",
}
"""The secret-storage names under which the private keys (unpadded base64 seeds) live."""


@dataclass(frozen=True)
class CrossSigningKeys:
    """The private keys of an identity (any may be absent on a device that holds only some)."""

    master: SigningKey | None
    self_signing: SigningKey | None
    user_signing: SigningKey | None

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def seeds(self) -> dict[str, str]:
        """Unpadded base64 seeds by usage, for the vault and for secret storage."""
        return {u: b64encode(k.seed) for u, k in self._by_usage().items() if k is not None}

    @classmethod
    def from_seeds(cls, seeds: dict[str, str]) -> CrossSigningKeys:
        def one(usage: str) -> SigningKey | None:
            text = seeds.get(usage)
            return SigningKey(b64decode(text)) if text else None
        return cls(one("master"), one("self_signing"), one("user_signing"))

    def _by_usage(self) -> dict[str, SigningKey | None]:
        return {"master": self.master, "self_signing": self.self_signing, "user_signing": self.user_signing}

    def public(self) -> dict[str, str]:
        return {u: k.public_key for u, k in self._by_usage().items() if k is not None}


def key_object(user_id: str, usage: str, public_key: str) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public_key}": public_key}}


def upload_body(user_id: str, keys: CrossSigningKeys) -> dict[str, Any]:
    """The body of `POST /keys/device_signing/upload` (before user-interactive auth)."""
    if keys.master is None or keys.self_signing is None or keys.user_signing is None:
        raise BadRequest("publishing a cross-signing identity needs all three private keys")
    msk = keys.master
    master = key_object(user_id, "master", msk.public_key)
    ssk = sign_json(key_object(user_id, "self_signing", keys.self_signing.public_key), user_id, msk.public_key, msk)
    usk = sign_json(key_object(user_id, "user_signing", keys.user_signing.public_key), user_id, msk.public_key, msk)
    return {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}


def sign_device(user_id: str, device_keys: dict[str, Any], ssk: SigningKey) -> dict[str, Any]:
    """The device's keys with only the SSK signature, as `/keys/signatures/upload` takes them."""
    bare = {k: v for k, v in device_keys.items() if k not in ("signatures", "unsigned")}
    return sign_json(bare, user_id, ssk.public_key, ssk)


def sign_master_of(user_id: str, their_master: dict[str, Any], usk: SigningKey) -> dict[str, Any]:
    """Another user's master key object signed with our USK (after verifying them)."""
    bare = {k: v for k, v in their_master.items() if k not in ("signatures", "unsigned")}
    return sign_json(bare, user_id, usk.public_key, usk)


# -- reading what others published -----------------------------------------------------------


def published_device(query: dict[str, Any], user_id: str, device_id: str, ed25519: str) -> dict[str, Any] | None:
    """The device object `/keys/query` publishes for `user_id`'s `device_id` when it holds
    exactly the Ed25519 key `ed25519` and carries its own signature by it; None otherwise.
    What a verification confirmed is that key: an object the server changed since (another
    key, no self-signature, another device's) is not what was verified, and is not signed."""
    table = query.get("device_keys")
    devices = table.get(user_id) if isinstance(table, dict) else None
    obj = devices.get(device_id) if isinstance(devices, dict) else None
    if not isinstance(obj, dict) or obj.get("user_id") != user_id or obj.get("device_id") != device_id:
        return None
    keys = obj.get("keys")
    if not isinstance(keys, dict) or keys.get(f"ed25519:{device_id}") != ed25519:
        return None
    try:
        verify_signed_json(obj, user_id, device_id, ed25519)
    except SignatureInvalid:
        return None
    return obj


def _single_key(obj: Any, user_id: str, usage: str) -> str:
    """The public key of a published cross-signing key object, or `SignatureInvalid`."""
    if not isinstance(obj, dict) or obj.get("user_id") != user_id:
        raise SignatureInvalid(f"the {usage} key published for {user_id} belongs to someone else")
    usages = obj.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        raise SignatureInvalid(f"the {usage} key published for {user_id} is not marked for {usage}")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise SignatureInvalid(f"the {usage} key published for {user_id} does not hold exactly one key")
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"ed25519:{public}":
        raise SignatureInvalid(f"the {usage} key published for {user_id} is malformed")
    return public


@dataclass(frozen=True)
class Identity:
    """A user's published cross-signing identity whose internal signatures verified."""

    user_id: str
    master_key: str
    self_signing_key: str | None
    user_signing_key: str | None
    master_object: dict[str, Any]

    def signs_device(self, device_keys: dict[str, Any]) -> bool:
        """True when `device_keys` is a well-formed, self-signed device of this user that
        the SSK signed. Never raises: a forged or broken device is simply not cross-signed."""
        if self.self_signing_key is None or device_keys.get("user_id") != self.user_id:
            return False
        try:
            device_id = device_keys.get("device_id")
            keys = device_keys.get("keys")
            if not isinstance(device_id, str) or not isinstance(keys, dict):
                return False
            ed = keys.get(f"ed25519:{device_id}")
            if not isinstance(ed, str):
                return False
            verify_signed_json(device_keys, self.user_id, device_id, ed)
            verify_signed_json(device_keys, self.user_id, self.self_signing_key, self.self_signing_key)
        except SignatureInvalid:
            return False
        return True

    def master_signed_by(self, signer_user: str, signer_key: str) -> bool:
        try:
            verify_signed_json(self.master_object, signer_user, signer_key, signer_key)
        except SignatureInvalid:
            return False
        return True


def parse_identity(user_id: str, query: dict[str, Any]) -> Identity | None:
    """The identity `/keys/query` reports for `user_id`: None when there is none, and
    `SignatureInvalid` when there is one whose SSK or USK is not signed by its master key
    (a forgery or a broken upload: never half-trusted)."""
    masters = query.get("master_keys")
    master_obj = masters.get(user_id) if isinstance(masters, dict) else None
    if master_obj is None:
        return None
    msk = _single_key(master_obj, user_id, "master")

    def signed_sub(field: str, usage: str) -> str | None:
        table = query.get(field)
        obj = table.get(user_id) if isinstance(table, dict) else None
        if obj is None:
            return None
        public = _single_key(obj, user_id, usage)
        verify_signed_json(obj, user_id, msk, msk)
        return public

    return Identity(
        user_id=user_id,
        master_key=msk,
        self_signing_key=signed_sub("self_signing_keys", "self_signing"),
        user_signing_key=signed_sub("user_signing_keys", "user_signing"),
        master_object=master_obj,
    )
