"""Account, rooms and timeline features against the real homeserver."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tests.matrix.conftest import make_service
from tests.matrix.helpers import sync_until
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.matrix_session import MatrixService
from kumix.core.errors import BadRequest, ConfinementUnavailable, Unauthorized
from kumix.matrix.client import MatrixClient


async def test_logout_revokes_the_token_on_the_server(
    synapse: SynapseHarness, alice: MatrixService, tmp_path: Path
) -> None:
    token = alice.vault.load()["access_token"]
    async with alice.session() as s:
        assert (await s.client.whoami()).user_id == alice.account().user_id
    await alice.logout()
    assert not alice.vault.exists()
    assert alice.timeline.account() is None
    probe = MatrixClient(synapse.url, tmp_path / "probe", pickle_key="x", sanitize=lambda h: h)
    try:
        with pytest.raises(Unauthorized):
            await probe.login_token(token)  # whoami with the old token
    finally:
        await probe.close()


async def test_login_with_access_token_and_wrong_password(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    other = make_service(tmp_path / "other", vault_env)
    with pytest.raises(Unauthorized):
        await other.login_password(synapse.url, alice_user.user_id, "not the password")
    assert not other.vault.exists()
    # A token whose device already holds keys of another client cannot be adopted safely.
    with pytest.raises(BadRequest):
        await other.login_token(synapse.url, alice.vault.load()["access_token"])
    # A fresh login's token (a new device, no keys yet) can.
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice_user.user_id},
                       "password": alice_user.password}).encode()
    req = urllib.request.Request(synapse.url + "/_matrix/client/v3/login", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        fresh = json.loads(resp.read())
    account = await other.login_token(synapse.url, fresh["access_token"])
    assert account.user_id == alice_user.user_id
    assert account.device_id == fresh["device_id"]
    assert other.vault.load()["access_token"] == fresh["access_token"]
    other.db.close()


def direct_rooms(synapse: SynapseHarness, service: MatrixService) -> object:
    """The account's `m.direct` data as the homeserver holds it."""
    user_id = urllib.parse.quote(service.account().user_id, safe="")
    request = urllib.request.Request(
        f"{synapse.url}/_matrix/client/v3/user/{user_id}/account_data/m.direct",
        headers={"Authorization": f"Bearer {service.vault.load()['access_token']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


async def test_rooms_invites_direct_messages_and_timeline_relations(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    bob_service = make_service(tmp_path / "bob", vault_env)
    await bob_service.login_password(synapse.url, bob.user_id, bob.password)
    async with alice.session() as a, bob_service.session() as b:
        await a.sync()
        room_id = await a.create_room(name="Features", topic="all of them", encrypted=False, invite=(bob.user_id,))
        dm_id = await a.create_direct(bob.user_id, encrypted=True)
        await b.sync()
        invited = {r.room_id: r for r in b.rooms() if r.membership == "invite"}
        assert room_id in invited
        assert dm_id in invited
        assert invited[dm_id].is_direct
        # Every client of each account lists the chat as direct: both m.direct records name it.
        assert direct_rooms(synapse, alice) == {bob.user_id: [dm_id]}
        await b.join(dm_id)
        assert direct_rooms(synapse, bob_service) == {alice.account().user_id: [dm_id]}
        await b.join(room_id)
        joined = {r.room_id: r for r in b.rooms() if r.membership == "join"}
        assert joined[room_id].name == "Features"
        assert joined[room_id].topic == "all of them"
        assert not joined[room_id].encrypted
        assert {r.room_id: r for r in a.rooms()}[dm_id].encrypted

        # Unread counts, replies, edits, reactions, redactions.
        for i in range(25):
            await a.send_text(room_id, f"history {i}", markdown=False)
        first = await a.send_text(room_id, "original text", markdown=False)
        await sync_until(b, lambda: bob_service.timeline.count_events(room_id, "original text") == 1, what="msg")
        assert {r.room_id: r for r in b.rooms()}[room_id].unread_count >= 1
        await b.read_receipt(room_id, first.event_id or "")
        await b.typing(room_id, True)
        await b.sync()
        assert {r.room_id: r for r in b.rooms()}[room_id].unread_count == 0

        reply = await b.send_text(room_id, "a reply", markdown=False, reply_to=first.event_id)
        await a.edit(room_id, first.event_id or "", "edited text", markdown=False)
        await b.react(room_id, first.event_id or "", "👍")
        doomed = await a.send_text(room_id, "regrettable words", markdown=False)
        await a.redact(room_id, doomed.event_id or "", "oops")

        def redacted() -> bool:
            ev = alice.timeline.event(doomed.event_id or "")
            return ev is not None and ev.body == ""

        await sync_until(a, redacted, what="the redaction")

        orig = alice.timeline.event(first.event_id or "")
        assert orig is not None
        assert orig.body == "edited text"
        rep = alice.timeline.event(reply.event_id or "")
        assert rep is not None
        assert rep.reply_to == first.event_id
        reactions = [e for e in alice.timeline.events(room_id, limit=200) if e.kind == "reaction"]
        assert [(r.reaction_key, r.relates_to) for r in reactions] == [("👍", first.event_id)]
        assert a.search("regrettable") == []
        assert [h.event_id for h in a.search("edited")] == [first.event_id]

        # Backward pagination: bob joined late and only saw the recent tail at first.
        await b.paginate(room_id, limit=100)
        held = [e.body for e in bob_service.timeline.events(room_id, limit=500) if e.kind == "text"]
        assert held.index("history 0") < held.index("history 24") < held.index("original text")

        await b.leave(room_id)
        assert room_id not in {r.room_id for r in b.rooms()}
    bob_service.db.close()


async def test_incoming_html_is_sanitized_and_markdown_falls_back_to_plain_text(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    bob_service = make_service(tmp_path / "bob", vault_env)
    await bob_service.login_password(synapse.url, bob.user_id, bob.password)
    async with alice.session() as a, bob_service.session() as b:
        await a.sync()
        room_id = await a.create_room(name="HTML", encrypted=True, invite=(bob.user_id,))
        await b.sync()
        await b.join(room_id)
        hostile = {"msgtype": "m.text", "body": "hi", "format": "org.matrix.custom.html",
                   "formatted_body": '<b>hi</b><script>alert(1)</script><img src=x onerror=alert(2)>'
                                     '<a href="javascript:alert(3)">x</a>'}
        sent = await b.enqueue(room_id, "m.room.message", hostile)
        await sync_until(a, lambda: alice.timeline.event(sent.event_id or "") is not None, what="hostile msg")
        ev = alice.timeline.event(sent.event_id or "")
        assert ev is not None
        assert ev.formatted_html is not None
        assert ev.encrypted
        assert "<b>hi</b>" in ev.formatted_html
        for bad in ("script", "alert", "onerror", "javascript", "<img"):
            assert bad not in ev.formatted_html

        async def no_confinement(source: str) -> str:
            raise ConfinementUnavailable("no OS confinement on this machine")

        async def unsafe_renderer(source: str) -> str:
            return "<p><strong>bold</strong><script>steal()</script></p>"

        alice.renderer = no_confinement
        plain = await a.send_text(room_id, "**bold**")
        assert "formatted_body" not in plain.content
        assert plain.state == "sent"
        alice.renderer = unsafe_renderer
        rendered = await a.send_text(room_id, "**bold**")
        assert rendered.content["formatted_body"] == "<p><strong>bold</strong></p>"
    bob_service.db.close()
