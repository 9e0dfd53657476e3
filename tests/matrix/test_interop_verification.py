"""SAS verification between Kumix and matrix-js-sdk (Rust crypto), over to-device
messages, both directions: each side ends showing the other verified. And the attack: a
user who reports a mismatch leaves nothing verified on either side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.matrix.js_peer import JsPeer
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app import trust
from kumix.app.matrix_session import MatrixService, Session
from kumix.app.verification import Verifier
from kumix.core.errors import VerificationFailed


@pytest.fixture
async def js_bob(synapse: SynapseHarness, bob: TestUser) -> AsyncIterator[JsPeer]:
    peer = await JsPeer.start(synapse.url, bob)
    try:
        await peer.do("bootstrap_cross_signing")
        yield peer
    finally:
        await peer.stop()


async def _shares_room(s: Session, alice: MatrixService, peer: JsPeer, bob: TestUser) -> None:
    """A room in common, so each side tracks the other's devices."""
    await s.sync()
    room_id = await s.create_room(name="Verify", encrypted=True, invite=(bob.user_id,))
    await peer.do("join", room=room_id)
    for _ in range(30):
        if peer.device_id in s.client.known_devices(bob.user_id):
            break
        await s.sync(timeout_ms=1000)
    else:
        raise AssertionError("bob's device never showed up")
    # The Rust crypto ignores a verification request from a device it has not fetched yet.
    await peer.do("wait_device", user=s.account.user_id, device=s.account.device_id)


async def test_kumix_asks_and_the_peer_answers(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
) -> None:
    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
        verifier = Verifier(s)
        accepted = asyncio.create_task(js_bob.do("accept_verification"))
        v = await verifier.request(bob.user_id, js_bob.device_id)
        await accepted
        await verifier.wait_for_sas(v)
        shown = await js_bob.do("sas_show")
        assert [name for _, name in v.emoji()] == shown["emoji"]
        assert list(v.decimals()) == shown["decimal"]
        peer_done = asyncio.create_task(js_bob.do("sas_confirm"))
        await verifier.confirm(v)
        assert (await peer_done)["result"] == "done"
        assert v.done
        listing = await trust.devices(s.client, alice.vault, bob.user_id)
        assert listing.identity_verified
        assert {d.device_id: d.trust for d in listing.devices}[js_bob.device_id] == "verified"
        seen = await js_bob.do("user_status", user=alice_user.user_id, settle_ms=20000)
        assert seen["cross_signing_verified"] is True


async def test_the_peer_asks_and_kumix_answers(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
) -> None:
    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
        verifier = Verifier(s)
        before = await trust.devices(s.client, alice.vault, bob.user_id)
        assert not before.identity_verified
        await js_bob.do("request_verification", user=alice_user.user_id, device=s.account.device_id)
        v = await verifier.wait_request(bob.user_id)
        await verifier.wait_for_sas(v)
        shown = await js_bob.do("sas_show")
        assert [name for _, name in v.emoji()] == shown["emoji"]
        peer_done = asyncio.create_task(js_bob.do("sas_confirm"))
        await verifier.confirm(v)
        assert (await peer_done)["result"] == "done"
        assert (await trust.devices(s.client, alice.vault, bob.user_id)).identity_verified
        assert (await js_bob.do("user_status", user=alice_user.user_id, settle_ms=20000))["cross_signing_verified"]


async def test_a_reported_mismatch_verifies_nothing(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
) -> None:
    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
        verifier = Verifier(s)
        accepted = asyncio.create_task(js_bob.do("accept_verification"))
        v = await verifier.request(bob.user_id, js_bob.device_id)
        await accepted
        await verifier.wait_for_sas(v)
        await js_bob.do("sas_show")
        peer_done = asyncio.create_task(js_bob.do("sas_mismatch"))
        with pytest.raises(VerificationFailed):
            await verifier.confirm(v)
        assert (await peer_done)["result"].startswith("failed")
        assert not (await trust.devices(s.client, alice.vault, bob.user_id)).identity_verified
        assert (await js_bob.do("user_status", user=alice_user.user_id))["cross_signing_verified"] is False


async def test_kumix_verify_on_the_command_line(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
    data_dir: Path, vault_env: dict[str, str],
) -> None:
    import json
    import os
    import sys

    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | vault_env | {
        "KUMIX_DATA_DIR": str(data_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kumix", "verify", bob.user_id, js_bob.device_id, "--answer-stdin", "--json",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    await js_bob.do("accept_verification")
    shown = await js_bob.do("sas_show")
    assert proc.stdin is not None
    proc.stdin.write(b"yes\n")
    await proc.stdin.drain()
    peer_done, (out, err) = await asyncio.gather(js_bob.do("sas_confirm"), proc.communicate())
    assert proc.returncode == 0, err.decode()
    assert peer_done["result"] == "done"
    result = json.loads(out)
    assert result["emoji"] == shown["emoji"]
    for name in shown["emoji"]:
        assert name in err.decode()  # the emoji were shown with their names
    async with alice.session() as s:
        assert (await trust.devices(s.client, alice.vault, bob.user_id)).identity_verified


async def test_a_verified_users_changed_identity_is_refused_until_looked_at(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
) -> None:
    """Verify bob, then his identity is replaced behind our back (the server, or someone
    with his password): Kumix says so, holds messages to him back with `identity_changed`,
    and sends again only after the new identity is accepted."""
    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
        room_id = next(r.room_id for r in s.rooms() if r.name == "Verify")
        verifier = Verifier(s)
        accepted = asyncio.create_task(js_bob.do("accept_verification"))
        v = await verifier.request(bob.user_id, js_bob.device_id)
        await accepted
        await verifier.wait_for_sas(v)
        await js_bob.do("sas_show")
        peer_done = asyncio.create_task(js_bob.do("sas_confirm"))
        await verifier.confirm(v)
        await peer_done
        settings = trust.settings_of(alice.db)
        assert (await trust.devices(s.client, alice.vault, bob.user_id, settings)).identity_verified

        await js_bob.do("reset_cross_signing")
        changed = await trust.devices(s.client, alice.vault, bob.user_id, settings)
        assert changed.identity_changed
        assert not changed.identity_verified
        entry = await s.send_text(room_id, "to a changed identity", markdown=False)
        assert entry.state == "failed"
        assert "identity_changed" in str(entry.to_json())

        await trust.accept_new_identity(s.client, alice.db, bob.user_id)
        after = await trust.devices(s.client, alice.vault, bob.user_id, settings)
        assert not after.identity_changed
        assert not after.identity_verified  # accepted, not verified
        ok = await s.send_text(room_id, "to the accepted identity", markdown=False)
        assert ok.state == "sent"
        got = await js_bob.do("wait_event", room=room_id, body="to the accepted identity")
        assert got["decryption_failure"] is None


async def test_in_room_verification_both_ways(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, js_bob: JsPeer,
) -> None:
    """`m.key.verification.request` as a message in an (encrypted) DM, each side asking once."""
    async with alice.session() as s:
        await _shares_room(s, alice, js_bob, bob)
        dm = await s.create_direct(bob.user_id)
        await js_bob.do("join", room=dm)
        await s.sync()
        verifier = Verifier(s)

        # Kumix asks in the room.
        accepted = asyncio.create_task(js_bob.do("accept_verification"))
        v = await verifier.request_in_room(bob.user_id, dm)
        await accepted
        await verifier.wait_for_sas(v)
        shown = await js_bob.do("sas_show")
        assert [name for _, name in v.emoji()] == shown["emoji"]
        peer_done = asyncio.create_task(js_bob.do("sas_confirm"))
        await verifier.confirm(v)
        assert (await peer_done)["result"] == "done"
        assert (await trust.devices(s.client, alice.vault, bob.user_id)).identity_verified

        # The peer asks in the room.
        await js_bob.do("request_verification_dm", user=alice_user.user_id, room=dm)
        w = await verifier.wait_request_in_room(bob.user_id)
        await verifier.wait_for_sas(w)
        shown = await js_bob.do("sas_show")
        assert [name for _, name in w.emoji()] == shown["emoji"]
        peer_done = asyncio.create_task(js_bob.do("sas_confirm"))
        await verifier.confirm(w)
        assert (await peer_done)["result"] == "done"
        assert w.done
        assert (await js_bob.do("user_status", user=alice_user.user_id, settle_ms=20000))["cross_signing_verified"]
