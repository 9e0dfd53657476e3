"""End-to-end encryption both ways between Kumix and a plain matrix-nio client in another
process with its own store: messages, files, device tracking, late keys, key export/import."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.matrix.conftest import make_service
from tests.matrix.helpers import sync_until
from tests.matrix.peer import NioPeer
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.matrix_session import MatrixService
from kumix.cli.matrix_commands import _event_line
from kumix.core.errors import Unauthorized
from kumix.store.trust_settings import TrustSettings


def _texts(service: MatrixService, room_id: str) -> dict[str, object]:
    return {e.body: e for e in service.timeline.events(room_id, limit=500)}


async def test_kumix_and_nio_exchange_encrypted_messages_and_files(
    synapse: SynapseHarness, alice: MatrixService, alice_user: TestUser, bob: TestUser, tmp_path: Path,
    vault_env: dict[str, str],
) -> None:
    # matrix-nio cannot cross-sign, so under "exclude insecure devices" (MSC4153, on by
    # default) its device would get no room keys (docs/encryption.md): this test is about
    # Olm/Megolm with nio, so the setting is off here.
    TrustSettings(alice.db).set_exclude_insecure_devices(False)
    peer = await NioPeer.start(synapse.url, bob, tmp_path / "peer-store")
    try:
        async with alice.session() as s:
            await s.sync()
            room_id = await s.create_room(name="Secret", encrypted=True, invite=(bob.user_id,))
            await peer.do("join", room=room_id)
            # Device list tracking: Kumix learns bob's device before it encrypts for him.
            await sync_until(s, lambda: peer.device_id in s.client.known_devices(bob.user_id),
                             what="bob's device keys")

            # Kumix -> nio: the key is shared with bob's device and nio decrypts.
            sent = await s.send_text(room_id, "from **kumix**")
            assert sent.state == "sent"
            got = await peer.do("wait_body", body="from **kumix**")
            assert got["type"] == "RoomMessageText"
            assert got["decrypted"] is True

            # nio -> Kumix.
            await peer.do("send", room=room_id, body="from nio, encrypted")
            await sync_until(s, lambda: "from nio, encrypted" in _texts(alice, room_id), what="nio's message")
            ev = _texts(alice, room_id)["from nio, encrypted"]
            assert ev.encrypted
            assert ev.kind == "text"
            assert ev.sender == bob.user_id
            # The shields: this device's own message (cross-signed at login, identity held) is
            # verified; nio cannot cross-sign, so its device is an insecure one.
            own = _texts(alice, room_id)["from **kumix**"]
            assert own.sender_trust == "verified"  # type: ignore[attr-defined]
            assert own.sender_device == s.account.device_id  # type: ignore[attr-defined]
            assert ev.sender_trust == "not_cross_signed"
            assert ev.sender_device == peer.device_id
            assert ev.to_json()["sender_trust"] == "not_cross_signed"
            assert "[not cross-signed]" in _event_line(ev)  # type: ignore[arg-type]

            # Encrypted files both ways: the server only ever holds ciphertext.
            payload = bytes(range(256)) * 40
            await peer.do("send_file", room=room_id, name="from-nio.bin", hex=payload.hex())
            await sync_until(s, lambda: "from-nio.bin" in _texts(alice, room_id), what="nio's file")
            fev = _texts(alice, room_id)["from-nio.bin"]
            assert fev.kind == "file"
            assert fev.attachment.encryption is not None
            assert await s.download(fev) == payload  # type: ignore[arg-type]

            mine = tmp_path / "from-kumix.txt"
            mine.write_bytes(b"kumix attachment " * 100)
            entry = await s.send_file(room_id, mine)
            assert entry.state == "sent"
            assert "file" in entry.content
            assert "url" not in entry.content
            got = await peer.do("wait_body", body="from-kumix.txt")
            assert got["plain_sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()

            # Search works where the server cannot: over what Kumix decrypted.
            hits = s.search("encrypted nio")
            assert [h.room_id for h in hits] == [room_id]
            before_rule = len(alice.timeline.events(room_id, limit=500))

            # MSC4153 on the receiving side: with "exclude insecure devices" on, what the
            # insecure device sends is withheld, its plaintext kept nowhere.
            TrustSettings(alice.db).set_exclude_insecure_devices(True)
            await peer.do("send", room=room_id, body="insecure with the rule on")
            await sync_until(s, lambda: len(alice.timeline.events(room_id, limit=500)) > before_rule
                             and alice.timeline.events(room_id, limit=1)[0].sender == bob.user_id,
                             what="nio's message under the rule")
            withheld = alice.timeline.events(room_id, limit=1)[0]
            assert withheld.kind == "undecryptable"
            assert withheld.sender_trust == "not_cross_signed"
            assert "withheld" in _event_line(withheld)
            assert "insecure with the rule on" not in str(alice.db.query("SELECT * FROM matrix_events"))
            assert s.search("rule") == []
            TrustSettings(alice.db).set_exclude_insecure_devices(False)

            keyfile = tmp_path / "keys.txt"
            await s.export_keys(keyfile, "export passphrase")
            assert keyfile.stat().st_mode & 0o777 == 0o600
            assert b"from nio" not in keyfile.read_bytes()
    finally:
        await peer.stop()

    # A second device of the same account: history is undecryptable (no keys), marked as
    # such, and decrypted once the exported keys are imported.
    second = make_service(tmp_path / "second-device", vault_env)
    await second.login_password(synapse.url, alice_user.user_id, alice_user.password)
    try:
        async with second.session() as s2:
            await s2.sync()
            held = [e for e in second.timeline.undecryptable() if e.room_id == room_id]
            assert held, "history from before this device should be undecryptable"
            assert all(e.session_id for e in held)
            assert s2.search("encrypted nio") == []
            with pytest.raises(Unauthorized):
                await s2.import_keys(keyfile, "wrong passphrase")
            # A new data directory: exclude insecure devices is on, so the imported keys
            # unlock the messages of alice's own devices but nio's stay withheld ...
            recovered = await s2.import_keys(keyfile, "export passphrase")
            texts = _texts(second, room_id)
            nios = [e for e in second.timeline.events(room_id, limit=500) if e.sender == bob.user_id
                    and e.encrypted]
            assert nios
            assert all(e.kind == "undecryptable" and e.sender_trust == "not_cross_signed" for e in nios)
            # A key file only claims who sent each key: alice's own messages are readable, but
            # marked as not authenticated (never verified from a key file).
            own = [e for e in second.timeline.events(room_id, limit=500) if e.sender == alice_user.user_id
                   and e.encrypted and e.kind == "text"]
            assert own
            assert {e.sender_trust for e in own} == {"unauthenticated"}
            assert "from nio, encrypted" not in texts
            assert s2.search("encrypted nio") == []
            # ... and with the rule off (the protection switched off) they are readable.
            TrustSettings(second.db).set_exclude_insecure_devices(False)
            recovered += await s2.retry_undecryptable()
            assert recovered >= len(list(held))
            texts = _texts(second, room_id)
            assert texts["from nio, encrypted"].kind == "text"  # type: ignore[attr-defined]
            assert texts["from nio, encrypted"].sender_trust == "not_cross_signed"  # type: ignore[attr-defined]
            assert [h.room_id for h in s2.search("encrypted nio")] == [room_id]
    finally:
        second.db.close()
