"""Event translation (`kumix.matrix.translate`) on events recorded from Synapse, and the
hostile variants a sender can put in the parts the server passes on."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nio

from kumix.extensions.sanitize import sanitize_html
from kumix.matrix.translate import translate_event

ROOM = "!r:localhost"

# Written in the shape Synapse sends them (field for field as recorded below), so each
# hostile variant can be one edit away from a real event.
TEXT: dict[str, Any] = {
    "type": "m.room.message", "sender": "@alice:localhost", "event_id": "$text", "origin_server_ts": 1700000000000,
    "content": {"msgtype": "m.text", "body": "hello **bot**", "format": "org.matrix.custom.html",
                "formatted_body": "hello <strong>bot</strong><script>alert(1)</script>"},
    "unsigned": {"transaction_id": "kumix-abc"},
}
REPLY: dict[str, Any] = {
    "type": "m.room.message", "sender": "@bob:localhost", "event_id": "$reply", "origin_server_ts": 1700000001000,
    "content": {"msgtype": "m.text", "body": "> hello\n\nhi", "m.relates_to": {"m.in_reply_to": {"event_id": "$text"}}},
}
EDIT: dict[str, Any] = {
    "type": "m.room.message", "sender": "@alice:localhost", "event_id": "$edit", "origin_server_ts": 1700000002000,
    "content": {"msgtype": "m.text", "body": "* hello bot", "m.new_content": {"msgtype": "m.text", "body": "hello bot"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$text"}},
}
REACTION: dict[str, Any] = {
    "type": "m.reaction", "sender": "@bob:localhost", "event_id": "$react", "origin_server_ts": 1700000003000,
    "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$text", "key": "👍"}},
}
REDACTION: dict[str, Any] = {
    "type": "m.room.redaction", "sender": "@alice:localhost", "event_id": "$redact", "origin_server_ts": 1700000004000,
    "redacts": "$edit", "content": {"redacts": "$edit"},
}
FILE: dict[str, Any] = {
    "type": "m.room.message", "sender": "@alice:localhost", "event_id": "$file", "origin_server_ts": 1700000005000,
    "content": {"msgtype": "m.file", "body": "notes.txt", "url": "mxc://localhost/abc",
                "info": {"mimetype": "text/plain", "size": 12}},
}
ENCRYPTED: dict[str, Any] = {
    "type": "m.room.encrypted", "sender": "@alice:localhost", "event_id": "$enc", "origin_server_ts": 1700000006000,
    "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEp...", "device_id": "DEV",
                "sender_key": "curve", "session_id": "sess1"},
}
MEMBER: dict[str, Any] = {
    "type": "m.room.member", "sender": "@bob:localhost", "event_id": "$member", "origin_server_ts": 1700000007000,
    "state_key": "@bob:localhost", "content": {"membership": "join", "displayname": "bob"},
}


def translated(source: dict[str, Any]) -> Any:
    return translate_event(ROOM, nio.Event.parse_event(copy.deepcopy(source)), sanitize_html)


def test_each_kind_of_recorded_event_becomes_its_kumix_event() -> None:
    text = translated(TEXT)
    assert (text.kind, text.body, text.sender, text.origin_ts) == ("text", "hello **bot**", "@alice:localhost",
                                                                    1700000000000)
    assert text.transaction_id == "kumix-abc"
    assert text.formatted_html is not None
    assert "<strong>bot</strong>" in text.formatted_html
    assert "script" not in text.formatted_html  # sanitized before an Event exists
    assert translated(REPLY).reply_to == "$text"
    edit = translated(EDIT)
    assert (edit.kind, edit.body, edit.relates_to) == ("edit", "hello bot", "$text")
    reaction = translated(REACTION)
    assert (reaction.kind, reaction.reaction_key, reaction.relates_to) == ("reaction", "👍", "$text")
    redaction = translated(REDACTION)
    assert (redaction.kind, redaction.relates_to) == ("redaction", "$edit")
    file = translated(FILE)
    assert file.kind == "file"
    assert file.attachment is not None
    assert (file.attachment.url, file.attachment.mimetype, file.attachment.size) == (
        "mxc://localhost/abc", "text/plain", 12)
    enc = translated(ENCRYPTED)
    assert (enc.kind, enc.session_id, enc.encrypted) == ("undecryptable", "sess1", True)
    assert enc.source is not None  # kept so decryption can be retried when the key arrives
    assert translated(MEMBER).kind == "member"


def test_sender_chosen_fields_of_the_wrong_type_are_dropped_not_raised() -> None:
    hostile = copy.deepcopy(REPLY)
    hostile["content"]["m.relates_to"] = {"m.in_reply_to": {"event_id": ["$a", "$b"]}}
    assert translated(hostile).reply_to is None
    hostile["content"]["m.relates_to"] = ["not", "an", "object"]
    assert translated(hostile).kind == "text"
    odd_file = copy.deepcopy(FILE)
    odd_file["content"]["info"] = {"mimetype": 7, "size": "huge"}
    att = translated(odd_file).attachment
    assert att is not None
    assert (att.mimetype, att.size) == (None, None)
    no_html = copy.deepcopy(TEXT)
    no_html["content"]["formatted_body"] = {"html": "<b>x</b>"}
    assert translated(no_html).formatted_html is None


RECORDED = Path(__file__).parent / "fixtures" / "recorded_events.json"
"""Raw events as the test Synapse sent them to a client (`/messages` of a plain room: state,
text with HTML, a reply, an edit later redacted, a reaction, a file, a reply whose target is
a list, the redaction; and one encrypted event seen by a device without its key), recorded
with matrix-nio against the homeserver tests/synapse_harness.py runs."""


def test_every_recorded_event_translates_to_the_kind_its_type_means() -> None:
    recorded = json.loads(RECORDED.read_text())
    by_id = {e["event_id"]: e for e in recorded}
    events = [translated(e) for e in recorded]
    kinds = [e.kind for e in events]
    # create, power levels, join rules, history visibility, guest access, name; 3 joins/invites
    assert kinds.count("state") == 6, kinds
    assert kinds.count("member") == 3, kinds
    text = next(e for e in events if e.body == "hello **bot**")
    assert text.formatted_html == "hello <strong>bot</strong>"  # the recorded <script> is gone
    reply = next(e for e in events if e.body.startswith("> hello"))
    assert reply.reply_to == text.event_id
    reaction = next(e for e in events if e.kind == "reaction")
    assert (reaction.reaction_key, reaction.relates_to) == ("👍", text.event_id)
    file = next(e for e in events if e.kind == "file")
    assert file.attachment is not None
    assert (file.attachment.url, file.attachment.size) == ("mxc://localhost/abc", 12)
    hostile = next(e for e in events if e.body == "hostile")
    assert hostile.reply_to is None  # a list where an id belongs is dropped
    redaction = next(e for e in events if e.kind == "redaction")
    assert "redacted_because" in by_id[str(redaction.relates_to)]  # it points at the redacted edit
    undecryptable = next(e for e in events if e.kind == "undecryptable")
    assert undecryptable.session_id == by_id[undecryptable.event_id]["content"]["session_id"]
    assert all(e.event_id and e.room_id == ROOM and e.origin_ts > 0 for e in events)


def test_typing_and_receipts_translate_and_hostile_fields_are_dropped() -> None:
    from kumix.core.models import Receipt, ReceiptsUpdate, TypingUpdate
    from kumix.matrix.translate import translate_ephemeral

    me = "@me:x"
    typing = nio.TypingNoticeEvent.from_dict({"type": "m.typing", "content": {"user_ids": ["@b:x", me, "@a:x"]}})
    assert translate_ephemeral("!r:x", typing, user_id=me) == TypingUpdate("!r:x", ("@a:x", "@b:x"))
    # Built past nio's schema check, as a hostile server could make them look.
    hostile = nio.TypingNoticeEvent(users=["@a:x", 5, None, {"x": 1}])  # type: ignore[list-item]
    assert translate_ephemeral("!r:x", hostile, user_id=me) == TypingUpdate("!r:x", ("@a:x",))
    assert translate_ephemeral("!r:x", nio.TypingNoticeEvent(users="@a:x"), user_id=me) == TypingUpdate("!r:x", ())  # type: ignore[arg-type]
    receipts = nio.ReceiptEvent.from_dict({"type": "m.receipt", "content": {
        "$e": {"m.read": {"@b:x": {"ts": 7}}}}})
    assert translate_ephemeral("!r:x", receipts, user_id=me) == ReceiptsUpdate(
        "!r:x", (Receipt("@b:x", "$e", "m.read", 7),))
    bad = nio.ReceiptEvent(receipts=[nio.Receipt(5, "m.read", "@b:x", 1),  # type: ignore[arg-type]
                                     nio.Receipt("$e", "m.read", "@b:x", "x")])  # type: ignore[arg-type]
    assert translate_ephemeral("!r:x", bad, user_id=me) == ReceiptsUpdate("!r:x", (Receipt("@b:x", "$e", "m.read", 0),))
    assert translate_ephemeral("!r:x", nio.ReceiptEvent(receipts=[]), user_id=me) is None


def test_room_avatar_and_space_links_from_untrusted_state() -> None:
    from types import SimpleNamespace

    from kumix.matrix.translate import MAX_SPACE_LINKS, translate_room

    def room(**extra: Any) -> Any:
        return SimpleNamespace(room_id="!s:x", display_name="S", topic=None, encrypted=False,
                               unread_notifications=0, unread_highlights=0, canonical_alias=None, **extra)

    r = translate_room(room(room_type="m.space", room_avatar_url="mxc://x/a", children={"!b:x", "!a:x", 3, "x"},
                            parents={"!p:x"}), "join", user_id="@me:x", direct_rooms=set())
    assert r.is_space
    assert r.avatar_url == "mxc://x/a"
    assert r.children == ("!a:x", "!b:x")
    assert r.parents == ("!p:x",)
    # An avatar that is not a content URI would make the server fetch what a sender chose.
    for url in ("https://evil.example/a.png", 7, "mxc://" + "a" * 2000):
        assert translate_room(room(room_avatar_url=url), "join", user_id="@me:x", direct_rooms=set()).avatar_url is None
    flood = {f"!{i:05}:x" for i in range(MAX_SPACE_LINKS + 50)}
    many = translate_room(room(room_type="m.space", children=flood), "join", user_id="@me:x", direct_rooms=set())
    assert many.children == tuple(sorted(flood))[:MAX_SPACE_LINKS]
    plain = translate_room(room(room_type=["m.space"]), "join", user_id="@me:x", direct_rooms=set())
    assert not plain.is_space
    assert plain.children == ()


def test_poll_events_keep_their_type_and_content_and_nothing_else_does() -> None:
    poll = {"type": "org.matrix.msc3381.poll.start", "sender": "@bob:localhost", "event_id": "$poll",
            "origin_server_ts": 1700000005000,
            "content": {"org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": "Lunch?"},
                                                          "answers": [{"id": "a", "org.matrix.msc1767.text": "Yes"}]}}}
    event = translated(poll)
    assert (event.kind, event.body) == ("other", "org.matrix.msc3381.poll.start")
    assert event.source == {"type": "org.matrix.msc3381.poll.start", "content": poll["content"]}
    huge = copy.deepcopy(poll)
    huge["content"]["padding"] = "x" * 20_000
    assert translated(huge).source == {"type": "org.matrix.msc3381.poll.start", "content": {}}
    other = copy.deepcopy(poll)
    other["type"] = "com.example.custom"
    assert translated(other).source is None
    assert translated(TEXT).source is None
