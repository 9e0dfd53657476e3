"""Interop with an independent implementation: matrix-js-sdk with its Rust crypto (Node),
in "exclude insecure devices" mode (MSC4153), on the test Synapse.

One peer process per module (its start-up, wasm included, takes seconds)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.matrix.conftest import make_service
from tests.matrix.helpers import sync_until
from tests.matrix.js_peer import JsPeer
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app import trust
from kumix.app.matrix_session import MatrixService


def fresh_token(synapse: SynapseHarness, user: TestUser) -> str:
    """An access token of a brand-new device, from a plain password login."""
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
                       "password": user.password}).encode()
    req = urllib.request.Request(f"{synapse.url}/_matrix/client/v3/login", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return str(json.load(resp)["access_token"])


@pytest.fixture
async def js_bob(synapse: SynapseHarness, bob: TestUser) -> AsyncIterator[JsPeer]:
    peer = await JsPeer.start(synapse.url, bob)
    try:
        await peer.do("bootstrap_cross_signing")
        await peer.do("isolation", mode="signed")
        yield peer
    finally:
        await peer.stop()


def _by_body(service: MatrixService, room_id: str) -> dict[str, object]:
    return {e.body: e for e in service.timeline.events(room_id, limit=500)}


async def test_messages_pass_both_ways_with_exclude_insecure_devices_once_kumix_is_cross_signed(
    synapse: SynapseHarness, alice_user: TestUser, bob: TestUser, js_bob: JsPeer, tmp_path: Path,
    vault_env: dict[str, str],
) -> None:
    # A Kumix device logged in with a token: no cross-signing yet (the insecure state).
    alice = make_service(tmp_path / "alice", vault_env)
    await alice.login_token(synapse.url, fresh_token(synapse, alice_user))
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="Interop", encrypted=True, invite=(bob.user_id,))
        await js_bob.do("join", room=room_id)
        await sync_until(s, lambda: js_bob.device_id in s.client.known_devices(bob.user_id), what="bob's device")

        # The peer must know the sending device first: otherwise it says UNKNOWN_SENDER_DEVICE,
        # which is a race, not the refusal this test is about.
        await js_bob.do("wait_device", user=alice_user.user_id, device=s.account.device_id)
        # Protection check: while Kumix is not cross-signed the peer refuses its messages ...
        await s.send_text(room_id, "before cross-signing")
        refused = await js_bob.do("wait_event", room=room_id, failure=True, reason="UNSIGNED_SENDER_DEVICE")
        assert refused["sender"] == alice_user.user_id
        assert "UNSIGNED_SENDER_DEVICE" in str(refused["decryption_failure"])
        # ... and withholds its room keys from Kumix.
        await js_bob.do("send", room=room_id, body="peer before")
        await sync_until(s, lambda: any(e.kind == "undecryptable" and e.sender == bob.user_id
                                        for e in alice.timeline.events(room_id, limit=500)),
                         what="bob's withheld message")

        assert await trust.bootstrap(s.client, alice.vault, _password(alice_user))
        status = await js_bob.do("device_status", user=alice_user.user_id, device=s.account.device_id,
                                 wait_for="signed_by_owner")
        assert status["signed_by_owner"] is True

        # Once cross-signed, both ways work.
        await s.send_text(room_id, "after cross-signing")
        got = await js_bob.do("wait_event", room=room_id, body="after cross-signing")
        assert got["decryption_failure"] is None
        assert got["encrypted"] is True
        await js_bob.do("send", room=room_id, body="peer after")
        await sync_until(s, lambda: "peer after" in _by_body(alice, room_id), what="bob's message")
        ev = _by_body(alice, room_id)["peer after"]
        assert ev.encrypted  # type: ignore[attr-defined]
        assert ev.kind == "text"  # type: ignore[attr-defined]
        # The shield: bob's device is cross-signed by bob, whom alice has not verified.
        assert ev.sender_trust == "unverified_identity"  # type: ignore[attr-defined]
        assert ev.sender_device == js_bob.device_id  # type: ignore[attr-defined]
        assert ev.to_json()["sender_trust"] == "unverified_identity"  # type: ignore[attr-defined]


def _password(user: TestUser):  # type: ignore[no-untyped-def]
    async def give() -> str | None:
        return user.password
    return give


async def test_a_recovery_key_set_up_by_the_peer_makes_a_kumix_device_trusted(
    synapse: SynapseHarness, bob: TestUser, js_bob: JsPeer, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    from kumix.app import recovery
    from kumix.core.errors import WrongRecoveryKey

    made = await js_bob.do("setup_recovery", passphrase="a long enough passphrase for bob")
    assert made["ready"] is True
    kumix_bob = make_service(tmp_path / "bob", vault_env)
    await kumix_bob.login_password(synapse.url, bob.user_id, bob.password)
    async with kumix_bob.session() as s:
        assert not (await trust.status(s.client, kumix_bob.vault)).device_verified
        st = await recovery.status(s.client)
        assert st.set_up
        assert st.has_passphrase
        assert set(st.stored_secrets) >= {"m.cross_signing.master", "m.cross_signing.self_signing",
                                          "m.cross_signing.user_signing", "m.megolm_backup.v1"}

        # Hostile: someone else's recovery key, and a wrong passphrase: refused, nothing kept.
        from kumix.matrix.secret_storage import encode_recovery_key
        with pytest.raises(WrongRecoveryKey):
            await recovery.use(s.client, kumix_bob.vault, recovery_key=encode_recovery_key(b"\x07" * 32))
        with pytest.raises(WrongRecoveryKey):
            await recovery.use(s.client, kumix_bob.vault, passphrase="not the passphrase")
        assert trust.held_keys(kumix_bob.vault).seeds() == {}
        # Protection off (the key description's check skipped): both are taken as the storage key.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(recovery.ss, "check_key", lambda key, description: None)
            assert (await recovery.storage_key(s.client, recovery_key=encode_recovery_key(b"\x07" * 32)))[1] \
                == b"\x07" * 32
            assert len((await recovery.storage_key(s.client, passphrase="not the passphrase"))[1]) == 32
        before = await js_bob.do("device_status", user=bob.user_id, device=s.account.device_id)
        assert before["cross_signing_verified"] is False

        await recovery.use(s.client, kumix_bob.vault, recovery_key=made["recovery_key"])
        after = await trust.status(s.client, kumix_bob.vault)
        assert after.device_verified
        assert set(after.private_keys) == {"master", "self_signing", "user_signing"}
        assert recovery.VAULT_BACKUP_KEY in kumix_bob.vault.load()
        # The independent implementation now calls this Kumix device verified.
        seen = await js_bob.do("device_status", user=bob.user_id, device=s.account.device_id,
                               wait_for="cross_signing_verified")
        assert seen["cross_signing_verified"] is True


async def test_the_peers_passphrase_opens_its_secret_storage_in_kumix(
    synapse: SynapseHarness, bob: TestUser, js_bob: JsPeer, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    from kumix.app import recovery

    await js_bob.do("setup_recovery", passphrase="correct horse battery staple 42")
    kumix_bob = make_service(tmp_path / "bob", vault_env)
    await kumix_bob.login_password(synapse.url, bob.user_id, bob.password)
    async with kumix_bob.session() as s:
        await recovery.use(s.client, kumix_bob.vault, passphrase="correct horse battery staple 42")
        assert (await trust.status(s.client, kumix_bob.vault)).device_verified


async def test_a_backup_written_by_the_peer_is_restored_by_kumix(
    synapse: SynapseHarness, bob: TestUser, js_bob: JsPeer, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    from kumix.app import key_backup, recovery
    from kumix.matrix import key_backup as kb

    made = await js_bob.do("setup_recovery", passphrase="bob's passphrase for the backup test")
    room_id = (await js_bob.do("create_room", name="Peer history"))["room_id"]
    for i in range(2):
        await js_bob.do("send", room=room_id, body=f"peer history {i}")
    info = await js_bob.do("backup_info")
    assert info["version"]

    kumix_bob = make_service(tmp_path / "bob", vault_env)
    await kumix_bob.login_password(synapse.url, bob.user_id, bob.password)
    async with kumix_bob.session() as s:
        def peer_messages() -> list[str]:
            return [e.kind for e in kumix_bob.timeline.events(room_id, limit=50)
                    if e.kind in ("undecryptable", "text")]
        await sync_until(s, lambda: len(peer_messages()) >= 2, what=f"the peer's history ({peer_messages()})")
        assert peer_messages() == ["undecryptable", "undecryptable"]
        # The peer uploads its room keys in the background: wait until they are there.
        query = f"/_matrix/client/v3/room_keys/keys?version={info['version']}"
        for _ in range(100):
            _, doc = await s.client.request_json("GET", query, action="test")
            if any(r == room_id for r, _, _ in kb.entries(doc)):
                break
            await s.sync(timeout_ms=200)
        await recovery.use(s.client, kumix_bob.vault, recovery_key=made["recovery_key"])
        result = await key_backup.restore(s)
        assert result.refused == ()
        assert result.imported >= 1
        assert result.decrypted_events >= 2
        bodies = {e.body for e in kumix_bob.timeline.events(room_id, limit=50) if e.kind == "text"}
        assert {"peer history 0", "peer history 1"} <= bodies
        # Kumix trusts the peer's backup version (signed by bob's identity) and adds to it.
        st = await key_backup.status(s.client, kumix_bob.vault, key_backup.KeyBackupState(kumix_bob.db))
        assert st.trusted
        assert st.have_key


async def test_exclude_insecure_devices_keeps_room_keys_from_a_device_nobody_cross_signed(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser,
) -> None:
    """MSC4153 on Kumix's side: with the setting on (the default of a new data directory)
    a device its owner did not cross-sign gets no room key; off, it does (the protection
    switched off); once its owner cross-signs it, it does with the setting on."""
    from kumix.store.trust_settings import TrustSettings

    settings = TrustSettings(alice.db)
    assert settings.exclude_insecure_devices(had_account=True) is True  # fixed at the first login
    peer = await JsPeer.start(synapse.url, bob)  # not cross-signed
    try:
        async with alice.session() as s:
            await s.sync()
            room_id = await s.create_room(name="MSC4153", encrypted=True, invite=(bob.user_id,))
            await peer.do("join", room=room_id)
            await sync_until(s, lambda: peer.device_id in s.client.known_devices(bob.user_id), what="bob's device")
            await s.send_text(room_id, "not for insecure devices", markdown=False)
            withheld = await peer.do("wait_event", room=room_id, failure=True)
            assert withheld["decryption_failure"] is not None

        settings.set_exclude_insecure_devices(False)
        async with alice.session() as s:
            await s.sync()
            await s.send_text(room_id, "rule off: everyone", markdown=False)
            got = await peer.do("wait_event", room=room_id, body="rule off: everyone")
            assert got["decryption_failure"] is None
            # The first message's key never went out: it stays undecryptable for good.
            still = await peer.do("wait_event", room=room_id, failure=True)
            assert still["event_id"] == withheld["event_id"]

        settings.set_exclude_insecure_devices(True)
        await peer.do("bootstrap_cross_signing")
        async with alice.session() as s:
            await s.sync()
            await s.send_text(room_id, "cross-signed now", markdown=False)
            got = await peer.do("wait_event", room=room_id, body="cross-signed now")
            assert got["decryption_failure"] is None
    finally:
        await peer.stop()
