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


def test_a_second_device_answering_does_not_break_the_chosen_ones_verification() -> None:
    """A request to all of Bob's devices: the first `ready` is the one; another device's
    later `ready` (or a replay of any) neither cancels nor redirects the transaction."""
    alice, bob, _, b_keys = _pair()
    ready = bob.receive("m.key.verification.request", alice.request_content(0))
    start = _deliver(alice, ready)
    assert alice.their_device == "BDEV"
    other = {"transaction_id": TXN, "from_device": "BDEV2", "methods": ["m.sas.v1"]}
    assert alice.receive("m.key.verification.ready", other) == []
    assert alice.receive("m.key.verification.ready", ready[0][1]) == []
    assert alice.receive("m.key.verification.start", {**start[0][1], "from_device": "BDEV2"}) == []
    assert not alice.cancelled
    assert alice.their_device == "BDEV"
    key_a = _deliver(alice, _deliver(bob, start))
    _deliver(alice, _deliver(bob, key_a))
    assert alice.state == bob.state == "keys"
    _deliver(alice, bob.confirm())
    alice.confirm()
    assert alice.verified == b_keys


def test_out_of_order_and_duplicate_messages_cancel() -> None:
    # A `done` before we sent our MAC: nothing was verified yet, so it cannot end anything.
    alice, bob, _, _ = _pair()
    _until_sas(alice, bob)
    out = alice.receive("m.key.verification.done", {"transaction_id": TXN})
    assert out[0][0] == "m.key.verification.cancel"
    assert out[0][1]["code"] == "m.unexpected_message"
    assert alice.cancelled
    # A second MAC after the first one verified: refused, and nothing more becomes trusted.
    alice, bob, _, b_keys = _pair()
    _until_sas(alice, bob)
    mac_b = bob.confirm()
    _deliver(alice, mac_b)
    alice.confirm()
    assert alice.verified == b_keys
    out = _deliver(alice, mac_b)
    assert out[0][1]["code"] == "m.unexpected_message"
    assert alice.cancelled
    # A second key, a second accept, a start after the keys: each cancels.
    for event_type, content in (("m.key.verification.key", {"key": "AAAA"}),
                                ("m.key.verification.accept", {"commitment": "x"}),
                                ("m.key.verification.start", {"from_device": "BDEV", "method": "m.sas.v1"})):
        alice, bob, _, _ = _pair()
        _until_sas(alice, bob)
        out = alice.receive(event_type, {"transaction_id": TXN, **content})
        assert out[0][1]["code"] == "m.unexpected_message", event_type
        assert alice.cancelled


def test_a_request_from_this_very_device_is_refused() -> None:
    """Our own user and our own device id: a reflected or spoofed request, never a device
    to verify."""
    me = SasVerification(us=Party("@a:x", "ADEV"), their_user="@a:x", transaction_id=TXN, our_keys={},
                         their_keys=lambda d: {}, requester=False)
    out = me.receive("m.key.verification.request", {"transaction_id": TXN, "from_device": "ADEV",
                                                     "methods": ["m.sas.v1"], "timestamp": 0})
    assert out[0][1]["code"] == "m.invalid_message"
    assert me.cancelled


def test_an_accept_with_no_sas_type_offered_is_refused() -> None:
    alice, bob, _, _ = _pair()
    start = _deliver(alice, bob.receive("m.key.verification.request", alice.request_content(0)))
    accept = _deliver(bob, start)
    for bad in ([], ["qr"], "emoji"):
        a2, b2, _, _ = _pair()
        s2 = _deliver(a2, b2.receive("m.key.verification.request", a2.request_content(0)))
        acc = _deliver(b2, s2)
        acc[0][1]["short_authentication_string"] = bad
        out = _deliver(a2, acc)
        assert out[0][1]["code"] == "m.unknown_method", bad
    assert [t for t, _ in _deliver(alice, accept)] == ["m.key.verification.key"]


def test_stale_requests_are_recognised() -> None:
    now = 1_700_000_000_000
    assert not sas.request_is_stale({"content": {"timestamp": now - 60_000}}, now)
    assert sas.request_is_stale({"content": {"timestamp": now - 11 * 60_000}}, now)
    assert sas.request_is_stale({"content": {"timestamp": now + 6 * 60_000}}, now)
    # In a room the event's own timestamp counts; a to-device request without one is refused.
    assert not sas.request_is_stale({"room_id": "!r:x", "origin_server_ts": now, "content": {}}, now)
    assert sas.request_is_stale({"room_id": "!r:x", "origin_server_ts": now - 11 * 60_000, "content": {}}, now)
    assert sas.request_is_stale({"content": {}}, now)
    assert sas.request_is_stale({"content": {"timestamp": True}}, now)
    assert sas.request_is_stale({"content": {"timestamp": "soon"}}, now)


def test_hostile_values_cancel_with_a_code_and_never_raise() -> None:
    """A key that is no Curve25519 key, a commitment or device id that UTF-8 cannot encode
    (a lone surrogate from a JSON escape): each cancels the transaction with a spec code."""
    import json

    lone = json.loads('"\\ud800"')
    # As the one who started: the accept's commitment, then the other side's key.
    for commitment, key in ((lone, "AAAA"), ("x", lone), ("x", "not a curve25519 key")):
        alice, bob, _, _ = _pair()
        start = _deliver(alice, bob.receive("m.key.verification.request", alice.request_content(0)))
        accept = _deliver(bob, start)
        accept[0][1]["commitment"] = commitment
        _deliver(alice, accept)
        out = alice.receive("m.key.verification.key", {"transaction_id": TXN, "key": key})
        assert out[0][0] == "m.key.verification.cancel"
        assert alice.cancelled
    # As the one who accepted: the starter's key is no key.
    alice, bob, _, _ = _pair()
    start = _deliver(alice, bob.receive("m.key.verification.request", alice.request_content(0)))
    _deliver(bob, start)
    out = bob.receive("m.key.verification.key", {"transaction_id": TXN, "key": "not a curve25519 key"})
    assert out[0][1]["code"] == "m.invalid_message"
    assert bob.cancelled
    # A device id with a lone surrogate.
    _, bob, _, _ = _pair()
    out = bob.receive("m.key.verification.request", {"transaction_id": TXN, "from_device": lone,
                                                      "methods": ["m.sas.v1"], "timestamp": 0})
    assert out[0][1]["code"] == "m.invalid_message"


def test_a_new_in_room_request_is_another_transaction() -> None:
    """In a room, a request event is matched by its event id when it is answered; another
    request from the same user in the same room (a retry) must not cancel this one."""
    alice = SasVerification(us=Party("@a:x", "ADEV"), their_user="@b:x", transaction_id="$req", our_keys={},
                            their_keys=lambda d: {}, requester=True, room_id="!dm:x")
    ready = {"from_device": "BDEV", "methods": ["m.sas.v1"], "m.relates_to": {"rel_type": "m.reference",
                                                                              "event_id": "$req"}}
    assert [t for t, _ in alice.receive("m.key.verification.ready", ready)] == ["m.key.verification.start"]
    again = {"msgtype": "m.key.verification.request", "from_device": "BDEV", "methods": ["m.sas.v1"], "to": "@a:x"}
    assert alice.receive("m.key.verification.request", again) == []
    assert alice.state == "started"


def test_a_timeout_cancels_with_its_own_code() -> None:
    alice, bob, _, _ = _pair()
    _until_sas(alice, bob)
    out = alice.timeout()
    assert out[0][1]["code"] == "m.timeout"
    assert alice.cancelled
    assert alice.verified == {}
    assert alice.timeout() == []  # once over, nothing more to send
