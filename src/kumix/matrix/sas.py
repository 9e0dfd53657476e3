"""SAS verification, `m.sas.v1` (Matrix spec, "Short Authentication String (SAS)
verification"), as a sans-I/O state machine: events in, events out, nothing sent here.

One `SasVerification` is one transaction, on either side: the one who asks (sends
`m.key.verification.request`, then `start`) or the one who answers (`ready`, `accept`).
Agreement: curve25519-hkdf-sha256, sha256, MAC hkdf-hmac-sha256.v2, SAS emoji and decimal.
Keys are trusted only after the user confirmed that both screens show the same SAS *and*
the other side's MACs over its keys verified; anything else ends in a cancel and
`VerificationFailed` / `SignatureInvalid`, with nothing marked verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kumix.core.errors import BadRequest, SignatureInvalid, VerificationFailed
from kumix.matrix.crypto_primitives import EstablishedSas, SasKeyAgreement, b64encode, constant_time_equal
from kumix.matrix.signing import canonical_json

METHOD = "m.sas.v1"
KEY_AGREEMENT = "curve25519-hkdf-sha256"
HASH = "sha256"
MAC_METHOD = "hkdf-hmac-sha256.v2"
SAS_TYPES = ["decimal", "emoji"]

EMOJI: list[tuple[str, str]] = [
    ("🐶", "Dog"), ("🐱", "Cat"), ("🦁", "Lion"), ("🐎", "Horse"), ("🦄", "Unicorn"), ("🐷", "Pig"),
    ("🐘", "Elephant"), ("🐰", "Rabbit"), ("🐼", "Panda"), ("🐓", "Rooster"), ("🐧", "Penguin"),
    ("🐢", "Turtle"), ("🐟", "Fish"), ("🐙", "Octopus"), ("🦋", "Butterfly"), ("🌷", "Flower"),
    ("🌳", "Tree"), ("🌵", "Cactus"), ("🍄", "Mushroom"), ("🌏", "Globe"), ("🌙", "Moon"),
    ("☁️", "Cloud"), ("🔥", "Fire"), ("🍌", "Banana"), ("🍎", "Apple"), ("🍓", "Strawberry"),
    ("🌽", "Corn"), ("🍕", "Pizza"), ("🎂", "Cake"), ("❤️", "Heart"), ("😀", "Smiley"), ("🤖", "Robot"),
    ("🎩", "Hat"), ("👓", "Glasses"), ("🔧", "Spanner"), ("🎅", "Santa"), ("👍", "Thumbs Up"),
    ("☂️", "Umbrella"), ("⌛", "Hourglass"), ("⏰", "Clock"), ("🎁", "Gift"), ("💡", "Light Bulb"),
    ("📕", "Book"), ("✏️", "Pencil"), ("📎", "Paperclip"), ("✂️", "Scissors"), ("🔒", "Lock"),
    ("🔑", "Key"), ("🔨", "Hammer"), ("☎️", "Telephone"), ("🏁", "Flag"), ("🚂", "Train"),
    ("🚲", "Bicycle"), ("✈️", "Aeroplane"), ("🚀", "Rocket"), ("🏆", "Trophy"), ("⚽", "Ball"),
    ("🎸", "Guitar"), ("🎺", "Trumpet"), ("🔔", "Bell"), ("⚓", "Anchor"), ("🎧", "Headphones"),
    ("📁", "Folder"), ("📌", "Pin"),
]
"""The spec's 64 SAS emoji with their English names, by index."""

State = Literal["requested", "ready", "started", "accepted", "keys", "confirmed", "done", "cancelled"]
Outgoing = list[tuple[str, dict[str, Any]]]

KeysOf = Callable[[str], dict[str, str]]
"""The other side's keys to verify, `"ed25519:<key id>" -> public key`, for one of their
device ids: that device's key, and the user's master key when they have one."""


def _err(message: str, reason: str) -> VerificationFailed:
    """A failure whose spec cancel code is `reason`."""
    return VerificationFailed(message, details={"reason": reason})


@dataclass(frozen=True)
class Party:
    user_id: str
    device_id: str


class SasVerification:
    def __init__(self, *, us: Party, their_user: str, transaction_id: str, our_keys: dict[str, str],
                 their_keys: KeysOf, requester: bool, room_id: str | None = None) -> None:
        self.room_id = room_id
        self.in_room = room_id is not None
        """In-room verification: `transaction_id` is the request event's id, and every
        later event refers to it with an `m.reference` relation instead of a transaction id."""
        self.us = us
        self.their_user = their_user
        self.their_device: str | None = None
        self.transaction_id = transaction_id
        self._our_keys = our_keys
        self._their_keys_of = their_keys
        self.requester = requester
        self.state: State = "requested"
        self.we_started = False
        self._start_content: dict[str, Any] | None = None
        self._commitment: str | None = None
        self._agreement = SasKeyAgreement()
        self._their_key: str | None = None
        self._sas: EstablishedSas | None = None
        self._their_mac: dict[str, Any] | None = None
        self._sent_done = False
        self._got_done = False
        self.verified: dict[str, str] = {}
        """After `done`: the other side's keys whose MACs verified (key id -> public key)."""
        self.cancel_reason: tuple[str, str] | None = None

    # -- helpers -----------------------------------------------------------------------

    def _c(self, **fields: Any) -> dict[str, Any]:
        if self.in_room:
            return {**fields, "m.relates_to": {"rel_type": "m.reference", "event_id": self.transaction_id}}
        return {"transaction_id": self.transaction_id, **fields}

    def _ours(self, event_type: str, content: dict[str, Any]) -> bool:
        """Whether an event belongs to this transaction."""
        if not self.in_room:
            return content.get("transaction_id") == self.transaction_id
        if event_type == "m.key.verification.request":
            # The request itself, which the caller matched by its event id, only while it is
            # being answered; any later request in the room is another transaction.
            return not self.requester and self.state == "requested"
        rel = content.get("m.relates_to")
        return isinstance(rel, dict) and rel.get("rel_type") == "m.reference" \
            and rel.get("event_id") == self.transaction_id

    def _fail(self, code: str, reason: str) -> Outgoing:
        """Cancel: the event to send, and the error raised to the caller after sending it."""
        self.state = "cancelled"
        self.cancel_reason = (code, reason)
        return [("m.key.verification.cancel", self._c(code=code, reason=reason))]

    def _check_from(self, content: dict[str, Any]) -> None:
        dev = content.get("from_device")
        if not isinstance(dev, str):
            raise _err("the other side did not say which device it is", "m.invalid_message")
        _utf8(dev)  # it goes into the SAS and MAC info strings
        if self.their_user == self.us.user_id and dev == self.us.device_id:
            # Our own event reflected back, or someone using our device id: never a device to verify.
            raise _err("a verification message naming this very device", "m.invalid_message")

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"

    @property
    def done(self) -> bool:
        return self.state == "done"

    # -- the one who asks ---------------------------------------------------------------

    def request_content(self, timestamp_ms: int) -> dict[str, Any]:
        return self._c(from_device=self.us.device_id, methods=[METHOD], timestamp=timestamp_ms)

    def _start(self) -> Outgoing:
        self.we_started = True
        self._start_content = self._c(from_device=self.us.device_id, method=METHOD,
                                      key_agreement_protocols=[KEY_AGREEMENT], hashes=[HASH],
                                      message_authentication_codes=[MAC_METHOD],
                                      short_authentication_string=SAS_TYPES)
        self.state = "started"
        return [("m.key.verification.start", self._start_content)]

    # -- the state machine --------------------------------------------------------------

    def receive(self, event_type: str, content: dict[str, Any]) -> Outgoing:
        """Feed one event of this transaction from the other side; returns what to send.
        A protocol violation cancels (the cancel is returned; `cancelled` becomes true)."""
        if self.state in ("cancelled", "done"):
            return []
        if not self._ours(event_type, content):
            return []
        handler = {
            "m.key.verification.request": self._on_request,
            "m.key.verification.ready": self._on_ready,
            "m.key.verification.start": self._on_start,
            "m.key.verification.accept": self._on_accept,
            "m.key.verification.key": self._on_key,
            "m.key.verification.mac": self._on_mac,
            "m.key.verification.done": self._on_done,
            "m.key.verification.cancel": self._on_cancel,
        }.get(event_type)
        if handler is None:
            return self._fail("m.unknown_method", f"unexpected event {event_type[:80]}")
        return self._guarded(handler, content)

    def _guarded(self, handler: Callable[[dict[str, Any]], Outgoing], content: dict[str, Any]) -> Outgoing:
        try:
            return handler(content)
        except (VerificationFailed, SignatureInvalid) as exc:
            code = str(exc.details.get("reason", "m.key_mismatch" if isinstance(exc, SignatureInvalid)
                                       else "m.unexpected_message"))
            return self._fail(code, exc.message)
        except BadRequest as exc:
            # A value that is not what it claims (a key that is no Curve25519 key, content
            # with no canonical form): the other side's message is invalid.
            return self._fail("m.invalid_message", exc.message)

    def _unexpected(self, what: str) -> VerificationFailed:
        return _err(f"unexpected {what} in state {self.state}", "m.unexpected_message")

    def _on_request(self, content: dict[str, Any]) -> Outgoing:
        if self.requester or self.state != "requested":
            raise self._unexpected("request")
        self._check_from(content)
        methods = content.get("methods")
        if not isinstance(methods, list) or METHOD not in methods:
            raise _err("the other side offers no method Kumix supports", "m.unknown_method")
        self.their_device = content["from_device"]
        self.state = "ready"
        return [("m.key.verification.ready", self._c(from_device=self.us.device_id, methods=[METHOD]))]

    def _on_ready(self, content: dict[str, Any]) -> Outgoing:
        if self.requester and self.state != "requested" and self.their_device is not None \
                and self.state not in ("cancelled", "done"):
            # A request to all of their devices: the first `ready` chose the device; a later
            # one (another device, or a replay) must not cancel or redirect the transaction
            # with the chosen one. (The other device learns it lost when it sees no start.)
            return []
        if not self.requester or self.state != "requested":
            raise self._unexpected("ready")
        self._check_from(content)
        methods = content.get("methods")
        if not isinstance(methods, list) or METHOD not in methods:
            raise _err("the other side offers no method Kumix supports", "m.unknown_method")
        self.their_device = content["from_device"]
        self.state = "ready"
        return self._start()

    def _on_start(self, content: dict[str, Any]) -> Outgoing:
        if self.state not in ("ready", "started"):
            raise self._unexpected("start")
        self._check_from(content)
        if content.get("from_device") != self.their_device:
            # The transaction is bound to the device that answered; another device of theirs
            # (which also got a request sent to all of them) neither joins nor cancels it.
            return []
        if self.state == "started":
            # Both sides started at once: the spec keeps the start of the lexicographically
            # smaller user id (then device id); the other is dropped.
            mine = (self.us.user_id, self.us.device_id)
            theirs = (self.their_user, str(self.their_device))
            if mine < theirs:
                return []
            self.we_started = False
        if content.get("method") != METHOD:
            raise _err("only m.sas.v1 is supported", "m.unknown_method")
        for field, wanted in (("key_agreement_protocols", KEY_AGREEMENT), ("hashes", HASH),
                              ("message_authentication_codes", MAC_METHOD)):
            offered = content.get(field)
            if not isinstance(offered, list) or wanted not in offered:
                raise _err(f"the other side does not offer {wanted}", "m.unknown_method")
        sas_types = content.get("short_authentication_string")
        if not isinstance(sas_types, list) or ("emoji" not in sas_types and "decimal" not in sas_types):
            raise _err("no short authentication string type in common", "m.unknown_method")
        self._start_content = content
        commitment = commitment_of(self._agreement.public_key, content)
        self.state = "accepted"
        return [("m.key.verification.accept", self._c(
            method=METHOD, key_agreement_protocol=KEY_AGREEMENT, hash=HASH,
            message_authentication_code=MAC_METHOD,
            short_authentication_string=[t for t in SAS_TYPES if t in sas_types],
            commitment=commitment))]

    def _on_accept(self, content: dict[str, Any]) -> Outgoing:
        if not self.we_started or self.state != "started":
            raise self._unexpected("accept")
        if content.get("key_agreement_protocol") != KEY_AGREEMENT or content.get("hash") != HASH \
                or content.get("message_authentication_code") != MAC_METHOD:
            raise _err("the other side accepted with methods Kumix did not offer", "m.unknown_method")
        sas_types = content.get("short_authentication_string")
        if not isinstance(sas_types, list) or not sas_types or not all(t in SAS_TYPES for t in sas_types):
            raise _err("the other side accepted no short authentication string Kumix offered", "m.unknown_method")
        commitment = content.get("commitment")
        if not isinstance(commitment, str):
            raise _err("the accept has no commitment", "m.invalid_message")
        self._commitment = commitment
        self.state = "accepted"
        return [("m.key.verification.key", self._c(key=self._agreement.public_key))]

    def _on_key(self, content: dict[str, Any]) -> Outgoing:
        if self.state != "accepted" or self._their_key is not None:
            raise self._unexpected("key")
        key = content.get("key")
        if not isinstance(key, str):
            raise _err("the key event has no key", "m.invalid_message")
        out: Outgoing = []
        if self.we_started:
            assert self._start_content is not None
            assert self._commitment is not None
            check_commitment(key, self._start_content, self._commitment)
        else:
            out.append(("m.key.verification.key", self._c(key=self._agreement.public_key)))
        self._their_key = key
        self._sas = self._agreement.agree(key)
        self.state = "keys"
        return out

    # -- the short authentication string ---------------------------------------------------

    def _sas_info(self) -> str:
        assert self._their_key is not None
        assert self.their_device is not None
        ours = (self.us.user_id, self.us.device_id, self._agreement.public_key)
        theirs = (self.their_user, self.their_device, self._their_key)
        starter, accepter = (ours, theirs) if self.we_started else (theirs, ours)
        return "MATRIX_KEY_VERIFICATION_SAS|" + "|".join([*starter, *accepter, self.transaction_id])

    def emoji(self) -> list[tuple[str, str]]:
        if self._sas is None:
            raise VerificationFailed("no short authentication string yet")
        indices, _ = self._sas.sas_bytes(self._sas_info())
        return [EMOJI[i] for i in indices]

    def decimals(self) -> tuple[int, int, int]:
        if self._sas is None:
            raise VerificationFailed("no short authentication string yet")
        _, numbers = self._sas.sas_bytes(self._sas_info())
        return numbers

    # -- MACs -------------------------------------------------------------------------------

    def _mac_info(self, sender: tuple[str, str], receiver: tuple[str, str]) -> str:
        return "MATRIX_KEY_VERIFICATION_MAC" + sender[0] + sender[1] + receiver[0] + receiver[1] + self.transaction_id

    def confirm(self) -> Outgoing:
        """The user saw the same emoji or numbers on both devices: send our MACs (and,
        when theirs arrived already, check them)."""
        if self.state != "keys" or self._sas is None or self.their_device is None:
            raise VerificationFailed(f"nothing to confirm in state {self.state}")
        base = self._mac_info((self.us.user_id, self.us.device_id), (self.their_user, self.their_device))
        macs = {key_id: self._sas.mac(public, base + key_id) for key_id, public in sorted(self._our_keys.items())}
        keys_mac = self._sas.mac(",".join(sorted(self._our_keys)), base + "KEY_IDS")
        self.state = "confirmed"
        out: Outgoing = [("m.key.verification.mac", self._c(mac=macs, keys=keys_mac))]
        if self._their_mac is not None:
            out.extend(self._guarded(self._check_mac, self._their_mac))
        return out

    def mismatch(self) -> Outgoing:
        """The user saw different emoji: cancel (someone is in the middle)."""
        return self._fail("m.mismatched_sas", "the short authentication strings did not match")

    def cancel(self) -> Outgoing:
        """The user gave up (before or after comparing): cancel; nothing becomes trusted."""
        if self.state in ("cancelled", "done"):
            return []
        return self._fail("m.user", "the user cancelled the verification")

    def timeout(self) -> Outgoing:
        """The transaction took too long (the spec allows 10 minutes): cancel with `m.timeout`."""
        if self.state in ("cancelled", "done"):
            return []
        return self._fail("m.timeout", "the verification took too long")

    def _on_mac(self, content: dict[str, Any]) -> Outgoing:
        if self.state == "keys":
            if self._their_mac is not None:
                raise self._unexpected("second mac")
            self._their_mac = content  # checked once our user has confirmed
            return []
        if self.state != "confirmed" or self._sent_done:
            raise self._unexpected("mac")  # before the keys, or a second one after ours verified
        return self._check_mac(content)

    def _check_mac(self, content: dict[str, Any]) -> Outgoing:
        assert self._sas is not None
        assert self.their_device is not None
        macs, keys_mac = content.get("mac"), content.get("keys")
        if not isinstance(macs, dict) or not isinstance(keys_mac, str) or not macs:
            raise _err("the mac event is malformed", "m.invalid_message")
        base = self._mac_info((self.their_user, self.their_device), (self.us.user_id, self.us.device_id))
        self._sas.verify_mac(",".join(sorted(macs)), base + "KEY_IDS", keys_mac)
        known = self._their_keys_of(self.their_device)
        device_key = f"ed25519:{self.their_device}"
        if device_key not in macs:
            raise _err("the other side did not MAC its device key", "m.key_mismatch")
        verified: dict[str, str] = {}
        for key_id, mac in macs.items():
            public = known.get(key_id)
            if public is None:
                continue  # a key we do not know (yet) is not verified, but not a failure
            if not isinstance(mac, str):
                raise _err("a mac is not a string", "m.invalid_message")
            self._sas.verify_mac(public, base + key_id, mac)
            verified[key_id] = public
        if device_key not in verified:
            raise _err("the other device's key is unknown", "m.key_mismatch")
        self.verified = verified
        self._sent_done = True
        out: Outgoing = [("m.key.verification.done", self._c())]
        self.state = "done" if self._got_done else "confirmed"
        return out

    def _on_done(self, content: dict[str, Any]) -> Outgoing:
        # The other side sends `done` after our MAC verified with it: before we sent our MAC
        # (state `confirmed`) it is out of order; a second one is a duplicate.
        if self.state != "confirmed" or self._got_done:
            raise self._unexpected("done")
        self._got_done = True
        if self._sent_done:
            self.state = "done"
        return []

    def _on_cancel(self, content: dict[str, Any]) -> Outgoing:
        self.state = "cancelled"
        self.cancel_reason = (str(content.get("code", "m.user"))[:64], str(content.get("reason", ""))[:200])
        return []


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise BadRequest("a verification value is not valid text") from None


def commitment_of(key: str, start_content: dict[str, Any]) -> str:
    """The accepter's commitment: SHA-256 of its SAS public key and the canonical start
    content, so it cannot pick its key after seeing ours (and grind for a colliding SAS)."""
    return b64encode(hashlib.sha256(_utf8(key) + canonical_json(start_content)).digest())


def check_commitment(key: str, start_content: dict[str, Any], commitment: str) -> None:
    """`VerificationFailed` (`m.mismatched_commitment`) unless `key` is the one `commitment` promised."""
    if not constant_time_equal(commitment_of(key, start_content).encode(), _utf8(commitment)):
        raise _err("the other side's key does not match its commitment", "m.mismatched_commitment")


REQUEST_MAX_AGE_MS = 10 * 60_000
REQUEST_MAX_AHEAD_MS = 5 * 60_000


def request_is_stale(event: dict[str, Any], now_ms: int) -> bool:
    """A request more than 10 minutes old or 5 minutes ahead is to be ignored, as the spec
    says (an old request in a room's history, or a replayed one, is no invitation to verify
    now). To-device requests carry `timestamp` (required; none is stale); in a room the
    event's `origin_server_ts` counts."""
    content = event.get("content")
    if event.get("room_id") is not None:
        ts = event.get("origin_server_ts")
    else:
        ts = content.get("timestamp") if isinstance(content, dict) else None
    if not isinstance(ts, int) or isinstance(ts, bool):
        return True
    return ts < now_ms - REQUEST_MAX_AGE_MS or ts > now_ms + REQUEST_MAX_AHEAD_MS


def room_request_content(us: Party, their_user: str) -> dict[str, Any]:
    """The `m.room.message` that asks for an in-room verification (its event id becomes the
    transaction id)."""
    return {"msgtype": "m.key.verification.request", "from_device": us.device_id, "methods": [METHOD],
            "to": their_user, "body": f"{us.user_id} is asking to verify your key, with SAS (m.sas.v1)."}
