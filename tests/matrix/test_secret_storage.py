"""Secret storage (`m.secret_storage.v1.aes-hmac-sha2`) and the base58 recovery key,
sans-I/O, with hostile input: typos, wrong keys, tampered secrets, absurd parameters."""

from __future__ import annotations

import base64
import dataclasses
import secrets

import pytest

from kumix.core.errors import BadRequest, SignatureInvalid, WrongRecoveryKey
from kumix.matrix import secret_storage as ss
from kumix.matrix.crypto_primitives import hmac_sha256


def test_recovery_key_format() -> None:
    key = bytes(range(32))
    text = ss.encode_recovery_key(key)
    groups = text.split(" ")
    assert all(len(g) == 4 for g in groups[:-1])
    assert len("".join(groups)) in (47, 48)  # 35 bytes in base58
    assert ss.decode_recovery_key(text) == key
    assert ss.decode_recovery_key(text.replace(" ", "")) == key  # spaces are optional
    assert ss.decode_recovery_key("  " + text.replace(" ", "  \n") + " ") == key
    # The all-zero key still has the 0x8B 0x01 prefix: a well-defined encoding.
    assert ss.decode_recovery_key(ss.encode_recovery_key(b"\0" * 32)) == b"\0" * 32


def test_recovery_key_typos_are_caught() -> None:
    # A fixed key: the spec's check is one parity byte, so a one-character typo slips through
    # for about one key in 256 (a random key here failed the test that often).
    text = ss.encode_recovery_key(bytes(range(32))).replace(" ", "")
    alphabet = ss.BASE58_ALPHABET
    wrong = text[:10] + alphabet[(alphabet.index(text[10]) + 1) % 58] + text[11:]
    with pytest.raises(WrongRecoveryKey):
        ss.decode_recovery_key(wrong)
    with pytest.raises(WrongRecoveryKey):
        ss.decode_recovery_key(text[:-1])
    with pytest.raises(WrongRecoveryKey):
        ss.decode_recovery_key(text.replace(text[5], "0"))  # '0' is not base58
    with pytest.raises(WrongRecoveryKey):
        ss.decode_recovery_key("")


def test_secret_round_trip_and_iv_rules() -> None:
    key = secrets.token_bytes(32)
    enc = ss.encrypt_secret(key, "m.cross_signing.master", "c2VjcmV0")
    assert base64.b64decode(enc.iv)[8] & 0x80 == 0  # bit 63 cleared
    assert ss.decrypt_secret(key, "m.cross_signing.master", enc) == "c2VjcmV0"
    # The name is bound in: the same ciphertext under another name does not authenticate.
    with pytest.raises(SignatureInvalid):
        ss.decrypt_secret(key, "m.cross_signing.self_signing", enc)


def test_the_aes_hmac_construction_is_the_specs() -> None:
    """Recomputed independently from the spec's recipe: HKDF(K, zero salt, name) -> AES key
    || MAC key; the MAC is HMAC-SHA-256 over the ciphertext."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key, iv = b"\x01" * 32, b"\x02" * 16
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"\0" * 32, info=b"name").derive(key)
    enc = Cipher(algorithms.AES(okm[:32]), modes.CTR(iv)).encryptor()
    ciphertext = enc.update(b"plain") + enc.finalize()
    got = ss.encrypt_secret(key, "name", "plain", iv=iv)
    assert base64.b64decode(got.ciphertext) == ciphertext
    assert base64.b64decode(got.mac) == hmac_sha256(okm[32:], ciphertext)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_wrong_key_is_refused(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another key than the description's. Protection off (the check value's MAC compared as
    equal whatever it is): the wrong key is taken as the storage key."""
    if protection == "off":
        monkeypatch.setattr(ss, "constant_time_equal", lambda a, b: True)
    key, other = secrets.token_bytes(32), secrets.token_bytes(32)
    description = ss.key_description(key)
    ss.check_key(key, description)
    if protection == "off":
        ss.check_key(other, description)  # accepted
        return
    with pytest.raises(WrongRecoveryKey):
        ss.check_key(other, description)
    enc = ss.encrypt_secret(key, "n", "secret")
    with pytest.raises(SignatureInvalid):
        ss.decrypt_secret(other, "n", enc)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_tampered_secret_is_refused(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One bit of a stored secret's ciphertext flipped (AES-CTR is malleable). Protection off
    (the MAC compared as equal whatever it is): the altered secret is returned as genuine."""
    if protection == "off":
        monkeypatch.setattr(ss, "constant_time_equal", lambda a, b: True)
    key = secrets.token_bytes(32)
    enc = ss.encrypt_secret(key, "n", "secret")
    flipped = bytearray(base64.b64decode(enc.ciphertext))
    flipped[0] ^= 1
    tampered = dataclasses.replace(enc, ciphertext=base64.b64encode(bytes(flipped)).decode())
    if protection == "off":
        assert ss.decrypt_secret(key, "n", tampered) == "recret"  # 's' ^ 1: the attacker's chosen change
        return
    with pytest.raises(SignatureInvalid):
        ss.decrypt_secret(key, "n", tampered)


def test_passphrase_keys() -> None:
    info = {"algorithm": "m.pbkdf2", "salt": "saltsalt", "iterations": 1000, "bits": 256}
    k1 = ss.key_from_passphrase("correct horse", info)
    assert k1 == ss.key_from_passphrase("correct horse", info)
    assert k1 != ss.key_from_passphrase("correct horsf", info)
    import hashlib
    assert k1 == hashlib.pbkdf2_hmac("sha512", b"correct horse", b"saltsalt", 1000, 32)
    for bad in ({**info, "iterations": 10**12}, {**info, "iterations": 0}, {**info, "iterations": True},
                {**info, "algorithm": "m.scrypt"}, {**info, "bits": 128}, {**info, "salt": 5}):
        with pytest.raises(BadRequest):
            ss.key_from_passphrase("x", bad)
