"""Server-side key backup, `m.megolm_backup.v1.curve25519-aes-sha2` (Matrix spec, "Server-side
key backups"). Sans-I/O: the backup version's `auth_data`, the encryption of one room key
for the backup, the decryption and validation of one backed-up entry, and whether a backup
version is one to trust with our keys.

Each room key is encrypted to the backup's Curve25519 public key with the libolm-compatible
PK encryption (vodozemac): ephemeral key, AES-256-CBC ciphertext, truncated MAC. Only the
holder of the private key (kept in secret storage and the vault) can read the backup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kumix.core.errors import BadRequest, SignatureInvalid
from kumix.matrix.crypto_primitives import PkDecryptionKey, PkMessage, b64decode, b64encode, pk_encrypt
from kumix.matrix.signing import signing_payload, verify_signed_json

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"


def private_key_from_secret(secret: str) -> PkDecryptionKey:
    """The backup key as secret storage holds it (unpadded base64 of 32 bytes)."""
    return PkDecryptionKey(b64decode(secret))


def secret_of(key: PkDecryptionKey) -> str:
    return b64encode(key.secret)


def unsigned_auth_data(public_key: str) -> dict[str, Any]:
    return {"public_key": public_key}


def version_body(auth_data: dict[str, Any]) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "auth_data": auth_data}


def add_signature(auth_data: dict[str, Any], user_id: str, key_id: str, signature: str) -> dict[str, Any]:
    sigs = dict(auth_data.get("signatures") or {})
    sigs[user_id] = {**dict(sigs.get(user_id) or {}), f"ed25519:{key_id}": signature}
    return {**auth_data, "signatures": sigs}


def payload_to_sign(auth_data: dict[str, Any]) -> bytes:
    return signing_payload(auth_data)


@dataclass(frozen=True)
class BackupVersion:
    version: str
    public_key: str
    auth_data: dict[str, Any]


def parse_version(doc: dict[str, Any]) -> BackupVersion:
    if doc.get("algorithm") != ALGORITHM:
        raise BadRequest(f"the key backup uses an algorithm Kumix does not know: {str(doc.get('algorithm'))[:80]!r}")
    auth = doc.get("auth_data")
    version = doc.get("version")
    if not isinstance(auth, dict) or not isinstance(auth.get("public_key"), str) or not isinstance(version, str):
        raise BadRequest("the key backup version is malformed")
    return BackupVersion(version=version, public_key=auth["public_key"], auth_data=auth)


def trusted_by(version: BackupVersion, user_id: str, trusted_keys: dict[str, str]) -> str | None:
    """The id of a trusted key (`key id -> Ed25519 public key`: our master key, our verified
    devices) that signed this backup version's auth_data, or None. A backup version nobody
    we trust signed may be the server's or an attacker's: keys are never uploaded to it."""
    for key_id, public in trusted_keys.items():
        try:
            verify_signed_json(version.auth_data, user_id, key_id, public)
        except SignatureInvalid:
            continue
        return key_id
    return None


# -- one room key ----------------------------------------------------------------------------


def session_plaintext(export: dict[str, Any]) -> dict[str, Any]:
    """A room key as the backup stores it (`SessionData`), from a key-export entry."""
    return {
        "algorithm": MEGOLM,
        "sender_key": export["sender_key"],
        "session_key": export["session_key"],
        "sender_claimed_keys": export.get("sender_claimed_keys") or {},
        "forwarding_curve25519_key_chain": export.get("forwarding_curve25519_key_chain") or [],
    }


def encrypt_session(public_key: str, export: dict[str, Any], *, first_message_index: int, forwarded_count: int,
                    is_verified: bool) -> dict[str, Any]:
    """The `KeyBackupData` of one room key."""
    plaintext = json.dumps(session_plaintext(export), separators=(",", ":")).encode()
    msg = pk_encrypt(public_key, plaintext)
    return {
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ephemeral": msg.ephemeral, "ciphertext": msg.ciphertext, "mac": msg.mac},
    }


def decrypt_session(key: PkDecryptionKey, room_id: str, session_id: str, data: Any) -> dict[str, Any]:
    """A backed-up room key as a key-export entry (room and session id added), or
    `SignatureInvalid` (the entry does not authenticate under our key) / `BadRequest`
    (it decrypts to something that is not a Megolm room key)."""
    sd = data.get("session_data") if isinstance(data, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(sd.get(k), str) for k in ("ephemeral", "ciphertext", "mac")):
        raise BadRequest(f"backup entry {session_id[:64]!r} is malformed")
    plain = key.decrypt(PkMessage(ciphertext=sd["ciphertext"], mac=sd["mac"], ephemeral=sd["ephemeral"]))
    try:
        doc = json.loads(plain)
    except ValueError:
        raise BadRequest(f"backup entry {session_id[:64]!r} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("algorithm") != MEGOLM:
        raise BadRequest(f"backup entry {session_id[:64]!r} is not a Megolm room key")
    claimed = doc.get("sender_claimed_keys")
    chain = doc.get("forwarding_curve25519_key_chain", [])
    if not isinstance(doc.get("session_key"), str) or not isinstance(doc.get("sender_key"), str) \
            or not isinstance(claimed, dict) or not isinstance(claimed.get("ed25519"), str) \
            or not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise BadRequest(f"backup entry {session_id[:64]!r} is missing fields of a room key")
    return {
        "algorithm": MEGOLM,
        "room_id": room_id,
        "session_id": session_id,
        "sender_key": doc["sender_key"],
        "session_key": doc["session_key"],
        "sender_claimed_keys": {"ed25519": claimed["ed25519"]},
        "forwarding_curve25519_key_chain": chain,
    }


def entries(doc: Any) -> list[tuple[str, str, Any]]:
    """(room id, session id, entry) of a `GET /room_keys/keys` answer."""
    rooms = doc.get("rooms") if isinstance(doc, dict) else None
    out: list[tuple[str, str, Any]] = []
    if not isinstance(rooms, dict):
        return out
    for room_id, room in rooms.items():
        sessions = room.get("sessions") if isinstance(room, dict) else None
        if isinstance(sessions, dict):
            out.extend((room_id, sid, data) for sid, data in sessions.items() if isinstance(sid, str))
    return out
