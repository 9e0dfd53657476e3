"""What Kumix knows about end-to-end trust, as the CLI and the web API show it: the
account's cross-signing state, devices and whether they are verified, secret storage and
key backup. Plain values; the logic that produces them is in `kumix.app.trust`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DeviceTrust = Literal["verified", "cross_signed_unverified_identity", "not_cross_signed"]
"""`verified`: signed by its owner's self-signing key, and the owner's identity is trusted
(ours: we hold or verified it; another user's: our user-signing key signed it).
`cross_signed_unverified_identity`: signed by its owner's identity, which we have not
verified (MSC4153 shares keys with these). `not_cross_signed`: an insecure device."""

SenderTrust = Literal["verified", "unverified_identity", "not_cross_signed", "unknown_device", "identity_changed",
                      "unauthenticated"]
"""The trust of the device that sent a decrypted message, when it was decrypted (the
shield): `verified` (its owner cross-signed it and we verified the owner, or for our own
devices, we trust our identity), `unverified_identity` (cross-signed by an identity we
have not verified), `not_cross_signed` (an insecure device), `unknown_device` (no
published device holds the session's keys), `identity_changed` (cross-signed by a new
identity of a user we had verified), `unauthenticated` (a cross-signed device, but the
room key came from a key backup or was forwarded, not over Olm from the sender: its claim
of who sent it cannot be checked). See docs/encryption.md, "What the shields mean"."""


@dataclass(frozen=True)
class CrossSigningStatus:
    user_id: str
    device_id: str
    has_identity: bool
    """The account has a published cross-signing identity (whoever made it)."""
    master_key: str | None
    private_keys: tuple[str, ...]
    """Which private keys this device holds (in the vault): "master", "self_signing", "user_signing"."""
    identity_trusted: bool
    """This device trusts the identity: it holds its master key (created it, or got it from
    secret storage or by verification)."""
    device_signed: bool
    """This device's keys carry a valid self-signing signature on the server."""

    @property
    def device_verified(self) -> bool:
        return self.identity_trusted and self.device_signed

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"private_keys": list(self.private_keys), "device_verified": self.device_verified}


@dataclass(frozen=True)
class DeviceInfo:
    user_id: str
    device_id: str
    display_name: str | None
    ed25519: str | None
    trust: DeviceTrust
    this_device: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UserDevices:
    user_id: str
    master_key: str | None
    identity_verified: bool
    devices: tuple[DeviceInfo, ...] = field(default_factory=tuple)
    identity_changed: bool = False
    """We verified this user, and their master key is no longer the one we verified."""

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "master_key": self.master_key, "identity_verified": self.identity_verified,
                "identity_changed": self.identity_changed, "devices": [d.to_json() for d in self.devices]}
