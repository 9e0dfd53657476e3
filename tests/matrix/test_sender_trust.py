"""The shield decision (`kumix.matrix.sender_trust.judge`) over `/keys/query` answers built
with real signatures, attacked with forged, missing and mismatched ones: nothing a
homeserver or a sender can forge may come out `verified`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumix.matrix import cross_signing, signing
from kumix.matrix.cross_signing import CrossSigningKeys
from kumix.matrix.crypto_primitives import SigningKey
from kumix.matrix.sender_trust import WITHHELD, SenderVerdict, from_insecure_source, judge
from kumix.matrix.signing import sign_json

ME, BOB = "@me:test", "@bob:test"
CURVE = "Q3VydmUyNTUxOWtleW9mYm9ic2RldmljZXh4eHh4eHg"


def device(user: str, device_id: str, key: SigningKey, curve: str = CURVE) -> dict[str, Any]:
    obj = {"user_id": user, "device_id": device_id, "algorithms": ["m.megolm.v1.aes-sha2"],
           "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": key.public_key}}
    return sign_json(obj, user, device_id, key)


def countersign(obj: dict[str, Any], user: str, key: SigningKey) -> dict[str, Any]:
    """`obj` with `user`'s signature by `key` added to those it has (as the homeserver
    merges an uploaded signature into the published object)."""
    return sign_json(obj, user, key.public_key, key)


def publish(query: dict[str, Any], user: str, keys: CrossSigningKeys) -> None:
    body = cross_signing.upload_body(user, keys)
    query.setdefault("master_keys", {})[user] = body["master_key"]
    query.setdefault("self_signing_keys", {})[user] = body["self_signing_key"]
    query.setdefault("user_signing_keys", {})[user] = body["user_signing_key"]


class World:
    """Me (cross-signed), Bob with one device, Bob cross-signed and verified by me."""

    def __init__(self, *, bob_cross_signed: bool = True, verified: bool = True) -> None:
        self.mine, self.bobs = CrossSigningKeys.generate(), CrossSigningKeys.generate()
        self.bob_device = SigningKey.generate()
        self.query: dict[str, Any] = {"device_keys": {ME: {}, BOB: {}}}
        publish(self.query, ME, self.mine)
        dev = device(BOB, "BOBDEV", self.bob_device)
        if bob_cross_signed:
            publish(self.query, BOB, self.bobs)
            assert self.bobs.self_signing is not None
            dev = countersign(dev, BOB, self.bobs.self_signing)
            if verified:
                assert self.mine.user_signing is not None
                self.query["master_keys"][BOB] = countersign(self.query["master_keys"][BOB], ME,
                                                             self.mine.user_signing)
        self.query["device_keys"][BOB]["BOBDEV"] = dev

    def judge(self, *, ed: str | None = None, curve: str | None = CURVE, own_trusted: bool = True,
              pinned: str | None = None, sender: str = BOB) -> tuple[str, str | None]:
        v = judge(self.query, me=ME, sender=sender, curve25519=curve,
                  ed25519=self.bob_device.public_key if ed is None else ed,
                  own_identity_trusted=own_trusted, pinned_master=pinned)
        return v.trust, v.device_id


def test_the_honest_cases() -> None:
    assert World().judge() == ("verified", "BOBDEV")
    assert World(verified=False).judge() == ("unverified_identity", "BOBDEV")
    assert World(bob_cross_signed=False).judge() == ("not_cross_signed", "BOBDEV")
    # Our own identity not trusted by this device: nothing it signed counts as verified.
    assert World().judge(own_trusted=False) == ("unverified_identity", "BOBDEV")
    w = World()
    assert w.judge(pinned=w.query["master_keys"][BOB]["keys"][next(iter(w.query["master_keys"][BOB]["keys"]))]) \
        == ("verified", "BOBDEV")


def test_own_devices() -> None:
    w = World()
    mine = SigningKey.generate()
    assert w.mine.self_signing is not None
    w.query["device_keys"][ME]["MYDEV"] = countersign(device(ME, "MYDEV", mine), ME, w.mine.self_signing)
    w.query["device_keys"][ME]["BARE"] = device(ME, "BARE", SigningKey.generate(), curve="b3RoZXI")
    ed_bare = w.query["device_keys"][ME]["BARE"]["keys"]["ed25519:BARE"]
    assert judge(w.query, me=ME, sender=ME, curve25519=CURVE, ed25519=mine.public_key,
                 own_identity_trusted=True).trust == "verified"
    assert judge(w.query, me=ME, sender=ME, curve25519=CURVE, ed25519=mine.public_key,
                 own_identity_trusted=False).trust == "unverified_identity"
    assert judge(w.query, me=ME, sender=ME, curve25519="b3RoZXI", ed25519=ed_bare,
                 own_identity_trusted=True).trust == "not_cross_signed"


def test_session_keys_no_published_device_holds_are_an_unknown_device() -> None:
    w = World()
    assert w.judge(ed=SigningKey.generate().public_key) == ("unknown_device", None)
    assert w.judge(curve="c29tZW9uZWVsc2U") == ("unknown_device", None)
    assert w.judge(curve=None) == ("unknown_device", None)
    assert w.judge(ed="") == ("unknown_device", None)
    # Bob's device claimed by a message filed under another sender.
    assert w.judge(sender="@mallory:test") == ("unknown_device", None)


def _signatures_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protection switched off: every Ed25519 signature is taken as valid."""
    monkeypatch.setattr(signing, "verify_ed25519", lambda public_key, message, signature: None)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_device_object_its_device_did_not_sign_is_not_that_device(
    protection: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A homeserver publishing the session's keys under a device it made up (or re-signed by
    the SSK but missing the device's own signature) gets `unknown_device`."""
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    del dev["signatures"][BOB]["ed25519:BOBDEV"]
    assert w.judge() == ("unknown_device", None)  # missing, not forged: refused even with the check off
    # Renamed: the key ids no longer name the device.
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    w.query["device_keys"][BOB]["OTHER"] = copy.deepcopy(dev) | {"device_id": "OTHER"}
    del w.query["device_keys"][BOB]["BOBDEV"]
    assert w.judge() == ("unknown_device", None)
    # Made up: a device OTHER publishing the session's keys, its own signature and the SSK's
    # made by keys the server holds.
    w = World()
    ssk_id = next(k for k in w.query["device_keys"][BOB]["BOBDEV"]["signatures"][BOB] if k != "ed25519:BOBDEV")
    del w.query["device_keys"][BOB]["BOBDEV"]
    made_up = {"user_id": BOB, "device_id": "OTHER", "algorithms": ["m.megolm.v1.aes-sha2"],
               "keys": {"curve25519:OTHER": CURVE, "ed25519:OTHER": w.bob_device.public_key}}
    made_up = sign_json(made_up, BOB, "OTHER", SigningKey.generate())
    made_up["signatures"][BOB][ssk_id] = SigningKey.generate().sign(b"x")
    w.query["device_keys"][BOB]["OTHER"] = made_up
    if protection == "off":
        _signatures_off(monkeypatch)
        assert w.judge() == ("verified", "OTHER")
    else:
        assert w.judge() == ("unknown_device", None)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_forged_cross_signing_is_never_verified(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each forgery at best `unverified_identity` or `not_cross_signed`; protection off
    (Ed25519 verification skipped): each one comes out `verified`."""
    worlds: list[tuple[World, str]] = []
    # The device's SSK signature forged by another key.
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    ssk_id = next(k for k in dev["signatures"][BOB] if k != "ed25519:BOBDEV")
    dev["signatures"][BOB][ssk_id] = SigningKey.generate().sign(b"anything")
    worlds.append((w, "not_cross_signed"))
    # Bob's SSK swapped for one his master key did not sign (the signature filed under his
    # master key's id, made by another key), and his device signed by that SSK.
    w = World()
    fake = SigningKey.generate()
    bob_master = w.query["master_keys"][BOB]["keys"]
    (bob_master_key,) = bob_master.values()
    w.query["self_signing_keys"][BOB] = sign_json(cross_signing.key_object(BOB, "self_signing", fake.public_key),
                                                  BOB, bob_master_key, fake)
    w.query["device_keys"][BOB]["BOBDEV"] = countersign(device(BOB, "BOBDEV", w.bob_device), BOB, fake)
    worlds.append((w, "not_cross_signed"))
    # My user-signing signature of Bob's master key forged.
    w = World()
    sigs = w.query["master_keys"][BOB]["signatures"][ME]
    for k in sigs:
        sigs[k] = SigningKey.generate().sign(b"x")
    worlds.append((w, "unverified_identity"))
    # A user-signing key the server invented for me (its master signature forged), which
    # signs Bob's master key.
    w = World()
    rogue = SigningKey.generate()
    (my_master_key,) = w.query["master_keys"][ME]["keys"].values()
    w.query["user_signing_keys"][ME] = sign_json(cross_signing.key_object(ME, "user_signing", rogue.public_key),
                                                 ME, my_master_key, rogue)
    w.query["master_keys"][BOB] = countersign(w.query["master_keys"][BOB], ME, rogue)
    worlds.append((w, "unverified_identity"))
    if protection == "off":
        _signatures_off(monkeypatch)
    for w, refused in worlds:
        assert w.judge() == ("verified" if protection == "off" else refused, "BOBDEV")
    # Missing rather than forged (nothing to verify): unverified, even with the check off.
    w = World()
    del w.query["master_keys"][BOB]["signatures"][ME]
    assert w.judge() == ("unverified_identity", "BOBDEV")


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_device_key_changed_behind_a_verified_users_back(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob is verified; the server then publishes another Ed25519 key for his device (its
    own, self-signed by it) keeping Bob's SSK signature, and sends a message claiming it.
    Protection off (Ed25519 verification skipped): the server's key is a verified device."""
    w = World()
    evil = SigningKey.generate()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    swapped = copy.deepcopy(dev)
    swapped["keys"]["ed25519:BOBDEV"] = evil.public_key
    del swapped["signatures"][BOB]["ed25519:BOBDEV"]
    swapped = sign_json(swapped, BOB, "BOBDEV", evil)
    w.query["device_keys"][BOB]["BOBDEV"] = swapped
    if protection == "off":
        _signatures_off(monkeypatch)
    trust = w.judge(ed=evil.public_key)
    assert trust == (("verified", "BOBDEV") if protection == "off" else ("not_cross_signed", "BOBDEV"))
    # And the real key no longer matches any published device.
    assert w.judge() == ("unknown_device", None)


def test_a_changed_identity_of_a_verified_user_is_marked() -> None:
    """The master key we pinned for Bob is not the one published now. Protection off (the
    pin not consulted): the identity published now, which our USK signed, counts as verified."""
    w = World()
    assert w.judge(pinned="c29tZSBvbGQgbWFzdGVyIGtleQ") == ("identity_changed", "BOBDEV")
    assert w.judge(pinned=None) == ("verified", "BOBDEV")


def test_hostile_shapes_never_raise() -> None:
    for query in ({}, {"device_keys": []}, {"device_keys": {BOB: []}}, {"device_keys": {BOB: {"X": "str"}}},
                  {"device_keys": {BOB: {"X": {"user_id": BOB, "device_id": "X", "keys": []}}}},
                  {"device_keys": {BOB: {"X": {"user_id": BOB, "device_id": "X", "keys": {}}}},
                   "master_keys": {BOB: "nonsense"}}):
        assert judge(query, me=ME, sender=BOB, curve25519=CURVE, ed25519="e", own_identity_trusted=True
                     ).trust == "unknown_device"
    w = World()
    w.query["master_keys"][BOB] = {"user_id": BOB, "usage": ["master"], "keys": "not a dict"}
    assert w.judge() == ("not_cross_signed", "BOBDEV")


def test_a_room_key_from_an_insecure_source_is_never_verified() -> None:
    """A backed-up or forwarded room key only claims its sender's keys: a cross-signed
    device comes out `unauthenticated`; worse verdicts are kept (and still withheld)."""
    for world, trust in ((World(), "verified"), (World(verified=False), "unverified_identity")):
        verdict = judge(world.query, me=ME, sender=BOB, curve25519=CURVE, ed25519=world.bob_device.public_key,
                        own_identity_trusted=True)
        assert verdict.trust == trust
        capped = from_insecure_source(verdict)
        assert (capped.trust, capped.device_id) == ("unauthenticated", "BOBDEV")
        assert capped.trust not in WITHHELD  # readable, as restored history must be
    for trust in ("not_cross_signed", "unknown_device", "identity_changed"):
        assert from_insecure_source(SenderVerdict(trust, None)).trust == trust  # type: ignore[arg-type]


def test_withheld_verdicts_are_the_insecure_ones() -> None:
    assert frozenset({"not_cross_signed", "unknown_device", "identity_changed"}) == WITHHELD


def test_the_text_output_marks_every_sender_that_is_not_verified() -> None:
    from kumix.cli.matrix_commands import _event_line
    from kumix.core.models import Event

    def line(trust: str | None, kind: str = "text") -> str:
        return _event_line(Event(event_id="$e", room_id="!r:x", sender=BOB, origin_ts=0, kind=kind,  # type: ignore[arg-type]
                                 body="hello", encrypted=True, sender_trust=trust))

    assert line("verified") == line(None)
    assert line("verified").endswith(f"{BOB}: hello")
    for trust, mark in (("unverified_identity", "[unverified]"), ("not_cross_signed", "[not cross-signed]"),
                        ("unknown_device", "[unknown device]"), ("identity_changed", "[identity changed]"),
                        ("unauthenticated", "[authenticity not guaranteed]")):
        assert f"{BOB} {mark}: hello" in line(trust)
    assert "withheld" in line("not_cross_signed", "undecryptable")
    assert "hello" not in line("identity_changed", "undecryptable")
    assert "waiting for the key" in line(None, "undecryptable")
