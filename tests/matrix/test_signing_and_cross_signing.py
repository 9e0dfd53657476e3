"""Canonical JSON and signed JSON against the Matrix specification's own test vectors, and
the cross-signing chain checks attacked with forgeries."""

from __future__ import annotations

import base64
import copy

import pytest

from kumix.core.errors import BadRequest, SignatureInvalid
from kumix.matrix import cross_signing, signing
from kumix.matrix.cross_signing import CrossSigningKeys
from kumix.matrix.crypto_primitives import SigningKey
from kumix.matrix.signing import canonical_json, sign_json, verify_signed_json

# Spec, appendices, "Signing details": this seed, key id ed25519:1, entity "domain".
SPEC_SEED = base64.b64decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1=")


def test_canonical_json_matches_the_spec_examples() -> None:
    # Spec appendices, "Canonical JSON" examples.
    assert canonical_json({}) == b"{}"
    assert canonical_json({"one": 1, "two": "Two"}) == b'{"one":1,"two":"Two"}'
    assert canonical_json({"b": "2", "a": "1"}) == b'{"a":"1","b":"2"}'
    assert canonical_json({"auth": {"success": True, "mxid": "@john.doe:example.com",
                                    "profile": {"display_name": "John Doe", "three_pids": [
                                        {"medium": "email", "address": "john.doe@example.org"},
                                        {"medium": "msisdn", "address": "123456789"}]}}}) == (
        b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        b'[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        b'"success":true}}')
    assert canonical_json({"a": "日本語"}) == '{"a":"日本語"}'.encode()
    assert canonical_json({"本": 2, "日": 1}) == '{"日":1,"本":2}'.encode()
    assert canonical_json({"a": "\u2028"}) == '{"a":"\u2028"}'.encode()
    assert canonical_json({"a": None}) == b'{"a":null}'


def test_canonical_json_refuses_what_has_no_canonical_form() -> None:
    for bad in ({"a": 1.5}, {"a": 2**53}, {1: "x"}, {"a": object()}):
        with pytest.raises(BadRequest):
            canonical_json(bad)


def test_signatures_match_the_spec_vectors() -> None:
    key = SigningKey(SPEC_SEED)
    assert sign_json({}, "domain", "1", key)["signatures"] == {"domain": {"ed25519:1": (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ")}}
    signed = sign_json({"one": 1, "two": "Two"}, "domain", "1", key)
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw")
    verify_signed_json(signed, "domain", "1", key.public_key)
    # `unsigned` is outside the signature: servers add to it.
    verify_signed_json(signed | {"unsigned": {"age": 5}}, "domain", "1", key.public_key)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_changed_or_forged_signed_object_is_refused(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Protection off (Ed25519 verification skipped): every forgery below is accepted."""
    if protection == "off":
        _signatures_off(monkeypatch)
    key, other = SigningKey(SPEC_SEED), SigningKey.generate()
    signed = sign_json({"one": 1, "two": "Two"}, "domain", "1", key)
    forged = sign_json({"one": 1, "two": "Two"}, "domain", "1", other)
    garbage = copy.deepcopy(signed)
    garbage["signatures"]["domain"]["ed25519:1"] = "!!not base64!!"
    attacks = [(signed | {"two": "Three"}, key.public_key), (signed, other.public_key),
               (forged, key.public_key), (garbage, key.public_key)]
    for obj, public in attacks:
        if protection == "off":
            verify_signed_json(obj, "domain", "1", public)
        else:
            with pytest.raises(SignatureInvalid):
                verify_signed_json(obj, "domain", "1", public)
    # No signature filed under that entity at all: refused either way (nothing to verify).
    with pytest.raises(SignatureInvalid):
        verify_signed_json(signed, "elsewhere", "1", key.public_key)


def _signatures_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protection switched off: every Ed25519 signature is taken as valid."""
    monkeypatch.setattr(signing, "verify_ed25519", lambda public_key, message, signature: None)


def _published(user: str, keys: CrossSigningKeys) -> dict[str, object]:
    body = cross_signing.upload_body(user, keys)
    return {"master_keys": {user: body["master_key"]}, "self_signing_keys": {user: body["self_signing_key"]},
            "user_signing_keys": {user: body["user_signing_key"]}}


def _device(user: str, device_id: str) -> tuple[dict[str, object], SigningKey]:
    dkey = SigningKey.generate()
    device = {"user_id": user, "device_id": device_id, "algorithms": ["m.megolm.v1.aes-sha2"],
              "keys": {f"ed25519:{device_id}": dkey.public_key, f"curve25519:{device_id}": "x"}}
    return sign_json(device, user, device_id, dkey), dkey


@pytest.mark.parametrize("protection", ["on", "off"])
def test_cross_signing_chain_accepts_the_real_thing_and_refuses_forgeries(
    protection: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each forgery is refused; with the protection off (Ed25519 verification skipped) each
    one passes as cross-signed: it is the signature check that stops them."""
    if protection == "off":
        _signatures_off(monkeypatch)
    off = protection == "off"
    user = "@alice:example.org"
    keys = CrossSigningKeys.generate()
    query = _published(user, keys)
    identity = cross_signing.parse_identity(user, query)
    assert identity is not None
    assert identity.master_key == keys.master.public_key  # type: ignore[union-attr]
    device, _ = _device(user, "DEV")
    assert keys.self_signing is not None
    signed = cross_signing.sign_device(user, device, keys.self_signing)
    # The server merges the signatures it stores; the client sees both.
    merged = device | {"signatures": {user: {**device["signatures"][user], **signed["signatures"][user]}}}  # type: ignore[index]
    assert identity.signs_device(merged)
    # Without the SSK signature: not cross-signed (nothing to verify, so even with the check off).
    assert not identity.signs_device(device)

    # Attack 1: a device key changed behind the identity's back (the server swaps in its own).
    tampered = copy.deepcopy(merged)
    tampered["keys"]["ed25519:DEV"] = SigningKey.generate().public_key  # type: ignore[index]
    assert identity.signs_device(tampered) is off

    # Attack 2: an SSK signature made by some other key.
    attacker = SigningKey.generate()
    forged = device | {"signatures": {user: {**device["signatures"][user],  # type: ignore[index]
                                             f"ed25519:{keys.self_signing.public_key}": attacker.sign(b"x")}}}
    assert identity.signs_device(forged) is off

    # Attack 3: the server publishes an SSK that the master key did not sign (a signature
    # filed under the master key's id, made by another key), and a device signed by it.
    bad = copy.deepcopy(query)
    evil = cross_signing.key_object(user, "self_signing", attacker.public_key)
    bad["self_signing_keys"] = {user: sign_json(evil, user, identity.master_key, attacker)}
    evil_device = cross_signing.sign_device(user, device, attacker)
    evil_device["signatures"][user].update(device["signatures"][user])  # type: ignore[index]
    if off:
        rogue = cross_signing.parse_identity(user, bad)
        assert rogue is not None
        assert rogue.signs_device(evil_device)
    else:
        with pytest.raises(SignatureInvalid):
            cross_signing.parse_identity(user, bad)
    # Attack 4: someone else's master key filed under this user (refused by its user id,
    # not by a signature: refused even with the check off).
    other = _published("@mallory:example.org", CrossSigningKeys.generate())
    with pytest.raises(SignatureInvalid):
        cross_signing.parse_identity(user, {"master_keys": {user: other["master_keys"]["@mallory:example.org"]}})  # type: ignore[index]


def test_seeds_round_trip() -> None:
    keys = CrossSigningKeys.generate()
    again = CrossSigningKeys.from_seeds(keys.seeds())
    assert again.public() == keys.public()


def test_only_the_device_key_a_verification_confirmed_is_signed() -> None:
    """After SAS with our own other device, what gets our self-signing signature is the
    device object `/keys/query` answers *then*: a server that swapped the device's key
    since the MACs verified (or publishes one the device did not sign) gets nothing."""
    user = "@alice:example.org"
    device, dkey = _device(user, "DEV")
    query = {"device_keys": {user: {"DEV": device}}}
    assert cross_signing.published_device(query, user, "DEV", dkey.public_key) == device
    swapped, _ = _device(user, "DEV")  # the same device id, the server's own key
    assert cross_signing.published_device({"device_keys": {user: {"DEV": swapped}}}, user, "DEV",
                                          dkey.public_key) is None
    unsigned = copy.deepcopy(device)
    del unsigned["signatures"]
    assert cross_signing.published_device({"device_keys": {user: {"DEV": unsigned}}}, user, "DEV",
                                          dkey.public_key) is None
    renamed = device | {"device_id": "OTHER"}
    assert cross_signing.published_device({"device_keys": {user: {"DEV": renamed}}}, user, "DEV",
                                          dkey.public_key) is None
    for hostile in ({}, {"device_keys": []}, {"device_keys": {user: "x"}}, {"device_keys": {user: {"DEV": 5}}}):
        assert cross_signing.published_device(hostile, user, "DEV", dkey.public_key) is None


def test_a_lone_surrogate_has_no_canonical_form_and_never_crashes_a_check() -> None:
    """JSON may escape half a UTF-16 pair (`"\\ud800"`), which Python's parser keeps as a
    lone surrogate that UTF-8 cannot encode: a hostile server or sender putting one into a
    signed object must get a refusal, never an exception out of the trust checks."""
    import json

    from kumix.matrix.sender_trust import judge

    hostile = json.loads('{"a": "\\ud800"}')
    with pytest.raises(BadRequest):
        canonical_json(hostile)
    with pytest.raises(BadRequest):
        canonical_json(json.loads('{"\\udfff": 1}'))
    key = SigningKey.generate()
    signed = sign_json({"a": "b"}, "domain", "1", key) | hostile
    with pytest.raises(SignatureInvalid):
        verify_signed_json(signed, "domain", "1", key.public_key)
    user = "@alice:example.org"
    device, dkey = _device(user, "DEV")
    device["algorithms"] = ["\ud800"]
    query = {"device_keys": {user: {"DEV": device}}}
    assert judge(query, me=user, sender=user, curve25519="x", ed25519=dkey.public_key,
                 own_identity_trusted=True).trust == "unknown_device"
