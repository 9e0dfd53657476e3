"""Which device sent a decrypted message, and how far Kumix trusts it: a pure decision
over the `/keys/query` answer (untrusted JSON from the homeserver) and the keys the Megolm
session names (its sender's Curve25519 key, authenticated by the Olm channel the room key
came over, and the Ed25519 key that room key claimed).

Nothing here uses nio's own device trust: the verdict comes only from cross-signing
signatures this module checks itself (through `cross_signing`/`signing`). Every doubt
lowers the verdict; nothing the server or the sender can forge raises it to `verified`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumix.core.errors import SignatureInvalid
from kumix.core.trust import SenderTrust
from kumix.matrix import cross_signing
from kumix.matrix.cross_signing import Identity
from kumix.matrix.signing import verify_signed_json


@dataclass(frozen=True)
class SenderVerdict:
    trust: SenderTrust
    device_id: str | None
    """The sending device, when one of the sender's published devices holds exactly the
    session's keys (and signs its own key object); None for `unknown_device`."""


def _identity(user_id: str, query: dict[str, Any]) -> Identity | None:
    try:
        return cross_signing.parse_identity(user_id, query)
    except SignatureInvalid:
        return None  # an identity that fails its own signatures is no identity


def sending_device(query: dict[str, Any], user_id: str, curve25519: str,
                   ed25519: str) -> tuple[str, dict[str, Any]] | None:
    """The device of `user_id` whose published keys are exactly the session's pair and
    whose key object carries its own valid signature; None when there is no such device."""
    table = query.get("device_keys")
    devices = table.get(user_id) if isinstance(table, dict) else None
    if not isinstance(devices, dict):
        return None
    for device_id, keys in devices.items():
        if not isinstance(device_id, str) or not isinstance(keys, dict):
            continue
        if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            continue
        published = keys.get("keys")
        if not isinstance(published, dict):
            continue
        if published.get(f"curve25519:{device_id}") != curve25519 or published.get(f"ed25519:{device_id}") != ed25519:
            continue
        try:
            verify_signed_json(keys, user_id, device_id, ed25519)
        except SignatureInvalid:
            continue  # a key object the device did not sign was not published by it
        return device_id, keys
    return None


def judge(query: dict[str, Any], *, me: str, sender: str, curve25519: str | None, ed25519: str | None,
          own_identity_trusted: bool, pinned_master: str | None = None) -> SenderVerdict:
    """The trust of the device that sent a message, at this moment.

    `own_identity_trusted`: this device trusts our own identity (holds or verified its
    master key). `pinned_master`: the master key we verified (or accepted) for `sender`;
    a different one now is `identity_changed`."""
    if not curve25519 or not ed25519:
        return SenderVerdict("unknown_device", None)
    found = sending_device(query, sender, curve25519, ed25519)
    if found is None:
        return SenderVerdict("unknown_device", None)
    device_id, keys = found
    identity = _identity(sender, query)
    if identity is None or not identity.signs_device(keys):
        return SenderVerdict("not_cross_signed", device_id)
    if sender == me:
        return SenderVerdict("verified" if own_identity_trusted else "unverified_identity", device_id)
    if pinned_master is not None and pinned_master != identity.master_key:
        return SenderVerdict("identity_changed", device_id)
    own = _identity(me, query)
    verified = (own_identity_trusted and own is not None and own.user_signing_key is not None
                and identity.master_signed_by(me, own.user_signing_key))
    return SenderVerdict("verified" if verified else "unverified_identity", device_id)


def from_insecure_source(verdict: SenderVerdict) -> SenderVerdict:
    """The verdict of a message whose room key came from a key backup or was forwarded by
    another device, rather than over Olm from the sender. Such a key only *claims* its
    sender's keys, and anyone who can write to the backup (its public key is in the
    version's auth_data, readable by the homeserver) or who forwarded it can make that claim
    for any device: a cross-signed device is then `unauthenticated`, never `verified` (as
    matrix-rust-sdk marks such messages: "authenticity cannot be guaranteed"). Worse
    verdicts stand as they are."""
    if verdict.trust in ("verified", "unverified_identity"):
        return SenderVerdict("unauthenticated", verdict.device_id)
    return verdict


WITHHELD: frozenset[SenderTrust] = frozenset({"not_cross_signed", "unknown_device", "identity_changed"})
"""With "exclude insecure devices" on (MSC4153), messages whose sending device has one of
these verdicts are not shown: they are kept as undecryptable (withheld). An insecure or
unknown device is what MSC4153 excludes; a verified user's changed identity is what
matrix-js-sdk's and the Rust crypto's MSC4153 mode refuses too (a verification violation),
until the user verifies them again or accepts the new identity."""
