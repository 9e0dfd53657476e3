"""The shield decision (`kumix.matrix.sender_trust.judge`) over `/keys/query` answers built
with real signatures, attacked with forged, missing and mismatched ones: nothing a
homeserver or a sender can forge may come out `verified`."""

from __future__ import annotations

import copy
from typing import Any

from kumix.matrix import cross_signing
from kumix.matrix.cross_signing import CrossSigningKeys
from kumix.matrix.crypto_primitives import SigningKey
from kumix.matrix.sender_trust import WITHHELD, judge
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


def test_a_device_object_its_device_did_not_sign_is_not_that_device() -> None:
    """A homeserver publishing the session's keys under a device it made up (or re-signed by
    the SSK but missing the device's own signature) gets `unknown_device`."""
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    del dev["signatures"][BOB]["ed25519:BOBDEV"]
    assert w.judge() == ("unknown_device", None)
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    w.query["device_keys"][BOB]["OTHER"] = copy.deepcopy(dev) | {"device_id": "OTHER"}
    del w.query["device_keys"][BOB]["BOBDEV"]
    assert w.judge() == ("unknown_device", None)


def test_forged_cross_signing_is_never_verified() -> None:
    # The device's SSK signature forged by another key.
    w = World()
    dev = w.query["device_keys"][BOB]["BOBDEV"]
    ssk_id = next(k for k in dev["signatures"][BOB] if k != "ed25519:BOBDEV")
    dev["signatures"][BOB][ssk_id] = SigningKey.generate().sign(b"anything")
    assert w.judge() == ("not_cross_signed", "BOBDEV")
    # The SSK swapped for one the master key did not sign: the whole identity is refused.
    w = World()
    fake = CrossSigningKeys.generate()
    body = cross_signing.upload_body(BOB, fake)
    w.query["self_signing_keys"][BOB] = body["self_signing_key"]
    assert w.judge() == ("not_cross_signed", "BOBDEV")
    # My user-signing signature of Bob's master key missing or forged: unverified at best.
    w = World()
    del w.query["master_keys"][BOB]["signatures"][ME]
    assert w.judge() == ("unverified_identity", "BOBDEV")
    w = World()
    sigs = w.query["master_keys"][BOB]["signatures"][ME]
    for k in sigs:
        sigs[k] = SigningKey.generate().sign(b"x")
    assert w.judge() == ("unverified_identity", "BOBDEV")
    # A whole new identity for Bob, signed by a user-signing key the server invented for me.
    w = World()
    rogue = CrossSigningKeys.generate()
    assert rogue.user_signing is not None
    w.query["user_signing_keys"][ME] = cross_signing.upload_body(ME, rogue)["user_signing_key"]
    w.query["master_keys"][BOB] = countersign(w.query["master_keys"][BOB], ME, rogue.user_signing)
    assert w.judge() == ("unverified_identity", "BOBDEV")


def test_a_changed_identity_of_a_verified_user_is_marked() -> None:
    w = World()
    assert w.judge(pinned="c29tZSBvbGQgbWFzdGVyIGtleQ") == ("identity_changed", "BOBDEV")


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
                        ("unknown_device", "[unknown device]"), ("identity_changed", "[identity changed]")):
        assert f"{BOB} {mark}: hello" in line(trust)
    assert "withheld" in line("not_cross_signed", "undecryptable")
    assert "hello" not in line("identity_changed", "undecryptable")
    assert "waiting for the key" in line(None, "undecryptable")
