"""The m.sas.v1 state machine, two instances talking to each other, and attacked: a wrong
MAC, a key that breaks its commitment, a mismatch the user reports, a foreign method."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumix.matrix import sas
from kumix.matrix.crypto_primitives import EstablishedSas, SigningKey
from kumix.matrix.sas import EMOJI, Party, SasVerification

TXN = "txn1"


def _pair() -> tuple[SasVerification, SasVerification, dict[str, str], dict[str, str]]:
    a_dev, b_dev, b_master = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    a_keys = {"ed25519:ADEV": a_dev.public_key}
    b_keys = {"ed25519:BDEV": b_dev.public_key, f"ed25519:{b_master.public_key}": b_master.public_key}
    alice = SasVerification(us=Party("@a:x", "ADEV"), their_user="@b:x", transaction_id=TXN, our_keys=a_keys,
                            their_keys=lambda d: b_keys if d == "BDEV" else {}, requester=True)
    bob = SasVerification(us=Party("@b:x", "BDEV"), their_user="@a:x", transaction_id=TXN, our_keys=b_keys,
                          their_keys=lambda d: a_keys if d == "ADEV" else {}, requester=False)
    return alice, bob, a_keys, b_keys


def _deliver(to: SasVerification, events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for t, c in events:
        out.extend(to.receive(t, copy.deepcopy(c)))
    return out


def _until_sas(alice: SasVerification, bob: SasVerification) -> None:
    ready = bob.receive("m.key.verification.request", alice.request_content(0))
    start = _deliver(alice, ready)
    assert [t for t, _ in start] == ["m.key.verification.start"]
    accept = _deliver(bob, start)
    key_a = _deliver(alice, accept)
    key_b = _deliver(bob, key_a)
    assert _deliver(alice, key_b) == []
    assert alice.state == bob.state == "keys"


def test_both_sides_agree_and_end_verified() -> None:
    alice, bob, a_keys, b_keys = _pair()
    _until_sas(alice, bob)
    assert alice.emoji() == bob.emoji()
    assert len(alice.emoji()) == 7
    assert all(e in EMOJI for e in alice.emoji())
    assert alice.decimals() == bob.decimals()
    assert all(1000 <= n <= 9191 for n in alice.decimals())
    mac_b = bob.confirm()
    assert _deliver(alice, mac_b) == []  # held until alice's user confirms
    out_a = alice.confirm()
    types = [t for t, _ in out_a]
    assert types == ["m.key.verification.mac", "m.key.verification.done"]
    done_b = _deliver(bob, out_a)
    assert [t for t, _ in done_b] == ["m.key.verification.done"]
    _deliver(alice, done_b)
    assert alice.done
    assert bob.done
    assert alice.verified == b_keys
    assert bob.verified == a_keys


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_wrong_mac_is_refused_and_nothing_is_verified(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob's MAC of his device key replaced by another of his MACs. Protection off (the MAC
    comparison skipped): the forgery goes through and Bob's keys count as verified."""
    if protection == "off":
        monkeypatch.setattr(EstablishedSas, "verify_mac", lambda self, message, info, tag: None)
    alice, bob, _, b_keys = _pair()
    _until_sas(alice, bob)
    (t, mac), = bob.confirm()
    forged = copy.deepcopy(mac)
    forged["mac"]["ed25519:BDEV"] = mac["mac"][next(k for k in mac["mac"] if k != "ed25519:BDEV")]
    out = alice.receive(t, forged)
    assert out == []
    out = alice.confirm()
    if protection == "off":
        assert [t for t, _ in out] == ["m.key.verification.mac", "m.key.verification.done"]
        assert alice.verified == b_keys
        return
    assert out[-1][0] == "m.key.verification.cancel"
    assert out[-1][1]["code"] == "m.key_mismatch"
    assert alice.cancelled
    assert alice.verified == {}


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_key_that_breaks_the_commitment_is_refused(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone in the middle answers Alice's start with Bob's accept but its own key.
    Protection off (the commitment check skipped): Alice computes her SAS with that key."""
    if protection == "off":
        monkeypatch.setattr(sas, "check_commitment", lambda key, start, commitment: None)
    alice, bob, _, _ = _pair()
    start = _deliver(alice, bob.receive("m.key.verification.request", alice.request_content(0)))
    accept = _deliver(bob, start)
    _deliver(alice, accept)
    other = SasVerification(us=Party("@m:x", "M"), their_user="@a:x", transaction_id=TXN, our_keys={},
                            their_keys=lambda d: {}, requester=False)
    out = alice.receive("m.key.verification.key", {"transaction_id": TXN, "key": other._agreement.public_key})
    if protection == "off":
        assert out == []
        assert alice.state == "keys"
        assert alice._their_key == other._agreement.public_key
        return
    assert out[0][1]["code"] == "m.mismatched_commitment"
    assert alice.cancelled


def test_a_mismatch_reported_by_the_user_cancels() -> None:
    alice, bob, _, _ = _pair()
    _until_sas(alice, bob)
    out = alice.mismatch()
    assert out[0][1]["code"] == "m.mismatched_sas"
    _deliver(bob, out)
    assert bob.cancelled
    assert bob.verified == {}


def test_foreign_methods_and_events_of_other_transactions() -> None:
    alice, bob, _, _ = _pair()
    assert bob.receive("m.key.verification.request", {**alice.request_content(0), "transaction_id": "other"}) == []
    out = bob.receive("m.key.verification.request", {**alice.request_content(0), "methods": ["m.qr_code.show.v1"]})
    assert out[0][1]["code"] == "m.unknown_method"
    alice2, bob2, _, _ = _pair()
    start = _deliver(alice2, bob2.receive("m.key.verification.request", alice2.request_content(0)))
    start[0][1]["message_authentication_codes"] = ["hkdf-hmac-sha256"]  # the old, broken MAC only
    out = _deliver(bob2, start)
    assert out[0][1]["code"] == "m.unknown_method"
