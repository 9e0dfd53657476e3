"""The vetted cryptographic primitives Kumix's own E2EE modules are built on, in one place.

vodozemac (the Matrix reference implementation in Rust) provides what is Matrix-specific:
the SAS key agreement and MAC, and the libolm-compatible PK encryption of key backups.
`cryptography` (OpenSSL) provides the generic primitives: Ed25519 signing keys from a
32-byte seed (vodozemac's Python bindings expose only Ed25519 *public* keys, and the
cross-signing keys must be recreated from the seeds secret storage holds), AES-256-CTR,
HMAC-SHA-256, HKDF-SHA-256 and PBKDF2-SHA-512. Nothing here invents cryptography; callers
get small typed functions and Kumix errors instead of each library's exceptions.
"""

from __future__ import annotations

import base64
import hmac as std_hmac
from dataclasses import dataclass

import vodozemac
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from kumix.core.errors import BadRequest, SignatureInvalid


def b64encode(data: bytes) -> str:
    """Matrix's "unpadded base64"."""
    return base64.b64encode(data).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    """Unpadded (or padded) standard base64 from an untrusted source, or `BadRequest`."""
    if not isinstance(text, str):
        raise BadRequest("expected a base64 string")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise BadRequest("malformed base64") from None


# -- Ed25519 -------------------------------------------------------------------------------


class SigningKey:
    """An Ed25519 private key, made from (and exportable as) its 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise BadRequest("an Ed25519 seed is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.seed = seed

    @classmethod
    def generate(cls) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        return cls(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption()))

    @property
    def public_key(self) -> str:
        """Unpadded base64 of the public key: also the key's id in Matrix."""
        return b64encode(self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw))

    def sign(self, message: bytes) -> str:
        return b64encode(self._key.sign(message))


def verify_ed25519(public_key: str, message: bytes, signature: str) -> None:
    """`SignatureInvalid` unless `signature` is `public_key`'s signature of `message`."""
    try:
        raw_key = b64decode(public_key)
        raw_sig = b64decode(signature)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, message)
    except (BadRequest, ValueError, InvalidSignature):
        raise SignatureInvalid("an Ed25519 signature does not verify") from None


# -- symmetric -----------------------------------------------------------------------------


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-256-CTR (the same operation encrypts and decrypts)."""
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return std_hmac.compare_digest(a, b)


def hkdf_sha256(key: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def pbkdf2_sha512(passphrase: str, salt: str, iterations: int, length: int) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA512(), length=length, salt=salt.encode(),
                      iterations=iterations).derive(passphrase.encode())


# -- Curve25519 PK encryption (key backup) -------------------------------------------------


@dataclass(frozen=True)
class PkMessage:
    ciphertext: str
    mac: str
    ephemeral: str


class PkDecryptionKey:
    """The backup's Curve25519 private key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise BadRequest("a Curve25519 private key is 32 bytes")
        self.secret = secret
        self._pk = vodozemac.PkDecryption.from_key(vodozemac.Curve25519SecretKey.from_bytes(secret))

    @classmethod
    def generate(cls) -> PkDecryptionKey:
        return cls(vodozemac.Curve25519SecretKey().to_bytes())

    @property
    def public_key(self) -> str:
        return str(self._pk.public_key.to_base64())

    def decrypt(self, message: PkMessage) -> bytes:
        """`SignatureInvalid` when the MAC fails (a forged or corrupted entry)."""
        try:
            # Built from bytes: the bindings' base64 helpers disagree on the order of the parts.
            msg = vodozemac.Message(b64decode(message.ciphertext), b64decode(message.mac),
                                    b64decode(message.ephemeral))
            return bytes(self._pk.decrypt(msg))
        except (BadRequest, vodozemac.PkDecodeException, vodozemac.KeyException, ValueError) as exc:
            raise SignatureInvalid(f"the encrypted data does not authenticate ({type(exc).__name__})") from None


def pk_encrypt(public_key: str, plaintext: bytes) -> PkMessage:
    try:
        enc = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_base64(public_key))
    except (vodozemac.KeyException, ValueError):
        raise BadRequest("not a Curve25519 public key") from None
    msg = enc.encrypt(plaintext)
    return PkMessage(ciphertext=b64encode(bytes(msg.ciphertext)), mac=b64encode(bytes(msg.mac)),
                     ephemeral=b64encode(bytes(msg.ephemeral_key)))


# -- SAS -----------------------------------------------------------------------------------


class SasKeyAgreement:
    """One side's ephemeral Curve25519 key of an `m.sas.v1` verification."""

    def __init__(self) -> None:
        self._sas: vodozemac.Sas | None = vodozemac.Sas()
        self.public_key = str(self._sas.public_key.to_base64())

    def agree(self, their_key: str) -> EstablishedSas:
        if self._sas is None:
            raise BadRequest("the SAS key agreement was already used")
        try:
            established = self._sas.diffie_hellman(vodozemac.Curve25519PublicKey.from_base64(their_key))
        except (vodozemac.KeyException, vodozemac.SasException, ValueError):
            raise BadRequest("the other side's SAS key is not a valid Curve25519 key") from None
        self._sas = None  # vodozemac consumes the secret: one agreement per verification
        return EstablishedSas(established)


class EstablishedSas:
    def __init__(self, inner: vodozemac.EstablishedSas) -> None:
        self._inner = inner

    def sas_bytes(self, info: str) -> tuple[list[int], tuple[int, int, int]]:
        """The emoji indices (7) and the three decimal numbers for `info`."""
        b = self._inner.bytes(info)
        return list(b.emoji_indices), tuple(b.decimals)  # type: ignore[return-value]

    def mac(self, message: str, info: str) -> str:
        return str(self._inner.calculate_mac(message, info))

    def verify_mac(self, message: str, info: str, tag: str) -> None:
        try:
            self._inner.verify_mac(message, info, tag)
        except (vodozemac.SasException, ValueError):
            raise SignatureInvalid("a SAS MAC does not match") from None
