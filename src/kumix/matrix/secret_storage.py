"""Secret storage (Matrix spec, "Secret storage"): `m.secret_storage.v1.aes-hmac-sha2`,
the base58 recovery key and passphrase-derived keys. Sans-I/O: the account-data documents
are built and read here; `kumix.app.recovery` fetches and stores them.

A secret is encrypted under a 32-byte storage key K with the secret's name N:
HKDF-SHA-256(K, salt = 32 zero bytes, info = N) gives 64 bytes, the AES-256 key then the
HMAC-SHA-256 key; a random 16-byte IV with bit 63 cleared; AES-CTR; the MAC covers the
ciphertext. A key description (account data `m.secret_storage.key.<id>`) carries the
encryption of 32 zero bytes under the empty name, so a wrong key is recognised before any
secret is decrypted with it.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from kumix.core.errors import BadRequest, SignatureInvalid, WrongRecoveryKey
from kumix.matrix.crypto_primitives import (
    aes_ctr,
    b64decode,
    constant_time_equal,
    hkdf_sha256,
    hmac_sha256,
    pbkdf2_sha512,
)

ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"
DEFAULT_KEY_EVENT = "m.secret_storage.default_key"
KEY_EVENT_PREFIX = "m.secret_storage.key."
PASSPHRASE_ALGORITHM = "m.pbkdf2"  # noqa: S105 (an algorithm name)
MAX_PBKDF2_ITERATIONS = 10_000_000
"""Above this a stored key description is refused: from the server, an unbounded iteration
count would be a way to hang the client."""

RECOVERY_PREFIX = b"\x8b\x01"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b64(data: bytes) -> str:
    # Padded, as matrix-js-sdk writes these fields; both forms are read.
    return base64.b64encode(data).decode()


# -- the recovery key ------------------------------------------------------------------------


def _base58_encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = BASE58_ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _base58_decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = BASE58_ALPHABET.find(ch)
        if i < 0:
            raise WrongRecoveryKey("that is not a recovery key: it has a character base58 does not use")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def encode_recovery_key(key: bytes) -> str:
    """The spec's recovery key: 0x8B 0x01, the 32-byte key, an XOR parity byte; base58,
    in groups of four separated by spaces."""
    if len(key) != 32:
        raise BadRequest("a secret storage key is 32 bytes")
    raw = RECOVERY_PREFIX + key
    parity = 0
    for b in raw:
        parity ^= b
    text = _base58_encode(raw + bytes([parity]))
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes:
    """The 32-byte key of a recovery key as a user types it (spaces anywhere), or `WrongRecoveryKey`."""
    raw = _base58_decode("".join(text.split()))
    if len(raw) != 35 or raw[:2] != RECOVERY_PREFIX:
        raise WrongRecoveryKey("that is not a recovery key (wrong length or prefix)")
    parity = 0
    for b in raw:
        parity ^= b
    if parity != 0:
        raise WrongRecoveryKey("that recovery key has a typo (its check byte does not match)")
    return raw[2:34]


def key_from_passphrase(passphrase: str, info: dict[str, Any]) -> bytes:
    """The storage key derived from a passphrase with the key description's `passphrase` parameters."""
    if info.get("algorithm") != PASSPHRASE_ALGORITHM:
        raise BadRequest("the secret storage key is not derived from a passphrase Kumix can use")
    salt, iterations, bits = info.get("salt"), info.get("iterations"), info.get("bits", 256)
    if not isinstance(salt, str) or type(iterations) is not int or not 0 < iterations <= MAX_PBKDF2_ITERATIONS \
            or bits != 256:
        raise BadRequest("the secret storage key's passphrase parameters are malformed or out of range")
    return pbkdf2_sha512(passphrase, salt, iterations, 32)


# -- encryption ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedSecret:
    iv: str
    ciphertext: str
    mac: str

    def to_json(self) -> dict[str, str]:
        return {"iv": self.iv, "ciphertext": self.ciphertext, "mac": self.mac}

    @classmethod
    def from_json(cls, doc: Any) -> EncryptedSecret:
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("iv", "ciphertext", "mac")):
            raise BadRequest("a stored secret is malformed")
        return cls(iv=doc["iv"], ciphertext=doc["ciphertext"], mac=doc["mac"])


def _keys(key: bytes, name: str) -> tuple[bytes, bytes]:
    if len(key) != 32:
        raise BadRequest("a secret storage key is 32 bytes")
    okm = hkdf_sha256(key, b"\0" * 32, name.encode(), 64)
    return okm[:32], okm[32:]


def encrypt_secret(key: bytes, name: str, plaintext: str, *, iv: bytes | None = None) -> EncryptedSecret:
    aes_key, mac_key = _keys(key, name)
    raw_iv = bytearray(iv if iv is not None else secrets.token_bytes(16))
    raw_iv[8] &= 0x7F  # bit 63 cleared: some AES-CTR implementations do not carry past 64 bits
    ciphertext = aes_ctr(aes_key, bytes(raw_iv), plaintext.encode("utf-8"))
    return EncryptedSecret(iv=_b64(bytes(raw_iv)), ciphertext=_b64(ciphertext), mac=_b64(hmac_sha256(mac_key,
                                                                                                      ciphertext)))


def decrypt_secret(key: bytes, name: str, enc: EncryptedSecret) -> str:
    """The secret, or `SignatureInvalid` when its MAC does not verify under `key` (a wrong
    key or a tampered secret: nothing is decrypted then)."""
    aes_key, mac_key = _keys(key, name)
    ciphertext, iv, mac = b64decode(enc.ciphertext), b64decode(enc.iv), b64decode(enc.mac)
    if len(iv) != 16:
        raise BadRequest("a stored secret has an IV of the wrong length")
    if not constant_time_equal(hmac_sha256(mac_key, ciphertext), mac):
        raise SignatureInvalid(f"the stored secret {name!r} does not authenticate with this key")
    try:
        return aes_ctr(aes_key, iv, ciphertext).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the stored secret {name!r} is not text") from None


# -- key descriptions ------------------------------------------------------------------------


def key_description(key: bytes, *, name: str | None = None, passphrase: dict[str, Any] | None = None) -> dict[str, Any]:
    check = encrypt_secret(key, "", "\0" * 32)
    doc: dict[str, Any] = {"algorithm": ALGORITHM, "iv": check.iv, "mac": check.mac}
    if name is not None:
        doc["name"] = name
    if passphrase is not None:
        doc["passphrase"] = passphrase
    return doc


def check_key(key: bytes, description: dict[str, Any]) -> None:
    """`WrongRecoveryKey` unless `key` is the key `description` describes."""
    if description.get("algorithm") != ALGORITHM:
        raise BadRequest(f"the secret storage key uses an algorithm Kumix does not know: "
                         f"{str(description.get('algorithm'))[:80]!r}")
    iv, mac = description.get("iv"), description.get("mac")
    if not isinstance(iv, str) or not isinstance(mac, str):
        raise BadRequest("the secret storage key description has no check value (iv, mac)")
    expected = encrypt_secret(key, "", "\0" * 32, iv=b64decode(iv))
    if not constant_time_equal(b64decode(expected.mac), b64decode(mac)):
        raise WrongRecoveryKey("that recovery key or passphrase does not open this account's secret storage")


def secret_content(key_id: str, enc: EncryptedSecret) -> dict[str, Any]:
    """The account-data content of one secret, encrypted under one key."""
    return {"encrypted": {key_id: enc.to_json()}}


def encrypted_for(content: Any, key_id: str) -> EncryptedSecret | None:
    encrypted = content.get("encrypted") if isinstance(content, dict) else None
    entry = encrypted.get(key_id) if isinstance(encrypted, dict) else None
    return None if entry is None else EncryptedSecret.from_json(entry)


def new_key_id() -> str:
    return secrets.token_urlsafe(24)
