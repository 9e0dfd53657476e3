"""Key backup: the curve25519-aes-sha2 entry format and trust rules (sans-I/O, attacked),
and on the real Synapse a backup written by one Kumix device restored by a second one that
then reads the old history."""

from __future__ import annotations

import copy
import json
import secrets
import urllib.parse
from pathlib import Path

import pytest
import vodozemac
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from tests.matrix.conftest import make_service
from tests.matrix.helpers import sync_until
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app import key_backup, recovery, trust
from kumix.app.matrix_session import Session
from kumix.core.errors import BadRequest, SignatureInvalid, WrongRecoveryKey
from kumix.matrix import key_backup as kb
from kumix.matrix import signing
from kumix.matrix.crypto_primitives import PkDecryptionKey, PkMessage, SigningKey, b64decode
from kumix.matrix.secret_storage import encode_recovery_key
from kumix.store.key_backup_state import KeyBackupState

EXPORT = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": "!r:x", "session_id": "S", "sender_key": "curve",
          "session_key": "AQAAAAsessionkey", "sender_claimed_keys": {"ed25519": "ed"},
          "forwarding_curve25519_key_chain": []}


def _decrypt_without_mac(self: PkDecryptionKey, message: PkMessage) -> bytes:
    """The libolm PK decryption (X25519, HKDF-SHA-256 to the AES key, MAC key and IV,
    AES-256-CBC) with its MAC check left out: the protection switched off."""
    shared = X25519PrivateKey.from_private_bytes(self.secret).exchange(
        X25519PublicKey.from_public_bytes(b64decode(message.ephemeral)))
    okm = HKDF(algorithm=hashes.SHA256(), length=80, salt=b"", info=b"").derive(shared)
    dec = Cipher(algorithms.AES(okm[:32]), modes.CBC(okm[64:])).decryptor()
    padded = dec.update(b64decode(message.ciphertext)) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return unpad.update(padded) + unpad.finalize()


def test_entries_round_trip() -> None:
    key = PkDecryptionKey.generate()
    data = kb.encrypt_session(key.public_key, EXPORT, first_message_index=3, forwarded_count=0, is_verified=False)
    assert data["first_message_index"] == 3
    assert kb.decrypt_session(key, "!r:x", "S", data) == EXPORT
    # The MAC-less decryption of the switched-off runs below is the real one otherwise.
    sd = data["session_data"]
    msg = PkMessage(ciphertext=sd["ciphertext"], mac=sd["mac"], ephemeral=sd["ephemeral"])
    assert _decrypt_without_mac(key, msg) == key.decrypt(msg)


@pytest.mark.parametrize("protection", ["on", "off"])
def test_a_backup_entry_that_fails_authentication_is_refused(protection: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose MAC was changed. Protection off (the PK decryption's MAC check left
    out): it is taken as a genuine room key."""
    if protection == "off":
        monkeypatch.setattr(PkDecryptionKey, "decrypt", _decrypt_without_mac)
    key = PkDecryptionKey.generate()
    data = kb.encrypt_session(key.public_key, EXPORT, first_message_index=3, forwarded_count=0, is_verified=False)
    bad = copy.deepcopy(data)
    text = bad["session_data"]["mac"]
    bad["session_data"]["mac"] = text[:3] + ("A" if text[3] != "A" else "B") + text[4:]
    if protection == "off":
        assert kb.decrypt_session(key, "!r:x", "S", bad) == EXPORT
        return
    with pytest.raises(SignatureInvalid):
        kb.decrypt_session(key, "!r:x", "S", bad)
    # Another backup's key cannot read a genuine entry; a changed ephemeral key fails the MAC.
    with pytest.raises(SignatureInvalid):
        kb.decrypt_session(PkDecryptionKey.generate(), "!r:x", "S", data)
    for part in ("ciphertext", "ephemeral"):
        bad = copy.deepcopy(data)
        text = bad["session_data"][part]
        bad["session_data"][part] = text[:3] + ("A" if text[3] != "A" else "B") + text[4:]
        # The format's MAC (as libolm computes it, and so every client) does not cover the
        # ciphertext: a changed ciphertext is caught when it no longer decrypts to a room key.
        with pytest.raises(SignatureInvalid if part != "ciphertext" else (SignatureInvalid, BadRequest)):
            kb.decrypt_session(key, "!r:x", "S", bad)
    # Authentic but not a room key: refused as malformed, not imported.
    from kumix.matrix.crypto_primitives import pk_encrypt
    msg = pk_encrypt(key.public_key, b'{"algorithm": "m.olm.v1"}')
    with pytest.raises(BadRequest):
        kb.decrypt_session(key, "!r:x", "S", {"session_data": {"ciphertext": msg.ciphertext, "mac": msg.mac,
                                                                "ephemeral": msg.ephemeral}})


@pytest.mark.parametrize("protection", ["on", "off"])
def test_only_a_backup_signed_by_a_trusted_key_is_trusted(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Protection off (Ed25519 signatures taken as valid whatever they are): the attacker's
    and the swapped versions count as trusted, and room keys would go to them."""
    if protection == "off":
        monkeypatch.setattr(signing, "verify_ed25519", lambda public_key, message, signature: None)
    me, device, msk, attacker = "@a:x", SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    pub = PkDecryptionKey.generate().public_key
    auth = kb.unsigned_auth_data(pub)
    signed = kb.add_signature(auth, me, "DEV", device.sign(kb.payload_to_sign(auth)))
    version = kb.parse_version({"algorithm": kb.ALGORITHM, "auth_data": signed, "version": "1"})
    assert kb.trusted_by(version, me, {"DEV": device.public_key}) == "DEV"
    assert kb.trusted_by(version, me, {msk.public_key: msk.public_key}) is None  # no signature by it at all
    # An attacker's version: signed, but by a key we do not trust; or claiming our key id.
    forged = kb.add_signature(auth, me, "DEV", attacker.sign(kb.payload_to_sign(auth)))
    fversion = kb.parse_version({"algorithm": kb.ALGORITHM, "auth_data": forged, "version": "2"})
    # A signed version whose public key was swapped afterwards.
    swapped = signed | {"public_key": PkDecryptionKey.generate().public_key}
    sversion = kb.parse_version({"algorithm": kb.ALGORITHM, "auth_data": swapped, "version": "3"})
    expected = "DEV" if protection == "off" else None
    assert kb.trusted_by(fversion, me, {"DEV": device.public_key}) == expected
    assert kb.trusted_by(sversion, me, {"DEV": device.public_key}) == expected
    with pytest.raises(BadRequest):
        kb.parse_version({"algorithm": "m.megolm_backup.v2", "auth_data": signed, "version": "4"})


async def test_a_second_kumix_device_restores_the_backup_and_reads_old_history(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    first = make_service(tmp_path / "one", vault_env)
    await first.login_password(synapse.url, alice_user.user_id, alice_user.password)
    state1 = KeyBackupState(first.db)
    async with first.session() as s:
        await s.sync()
        recovery_key = await recovery.setup(s.client, first.vault)
        st = await key_backup.status(s.client, first.vault, state1)
        assert st.version is not None
        assert st.trusted
        assert st.have_key
        room_id = await s.create_room(name="History", encrypted=True)
        for i in range(3):
            await s.send_text(room_id, f"old secret {i}", markdown=False)
        uploaded = await key_backup.upload_pending(s.client, first.vault, state1)
        assert uploaded >= 1
        assert await key_backup.upload_pending(s.client, first.vault, state1) == 0  # nothing twice

        # A forged entry on the server (anyone with the token can upload): it must be
        # refused on restore while the genuine ones are still imported.
        forged = kb.encrypt_session(PkDecryptionKey.generate().public_key, EXPORT | {"room_id": room_id},
                                    first_message_index=0, forwarded_count=0, is_verified=False)
        await s.client.request_json("PUT", f"/_matrix/client/v3/room_keys/keys/{room_id}/FORGED?version={st.version}",
                                    forged, action="test upload")

        first_device = s.account.device_id
        rogue_event_1 = await _impersonate_in_backup(s, room_id, st.version, "forged by the server 1", first_device)

    second = make_service(tmp_path / "two", vault_env)
    await second.login_password(synapse.url, alice_user.user_id, alice_user.password)
    async with second.session() as s2:
        await sync_until(s2, lambda: sum(e.kind == "undecryptable" for e in second.timeline.events(room_id, limit=50))
                         >= 3, what="the old, undecryptable history")
        # A well-formed recovery key that is not this account's: refused, nothing kept.
        # Protection off (the key description's check skipped): it is taken as the storage key.
        wrong = encode_recovery_key(b"\x07" * 32)
        with pytest.raises(WrongRecoveryKey):
            await recovery.use(s2.client, second.vault, recovery_key=wrong)
        assert trust.held_keys(second.vault).seeds() == {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(recovery.ss, "check_key", lambda key, description: None)
            assert (await recovery.storage_key(s2.client, recovery_key=wrong))[1] == b"\x07" * 32
        await recovery.use(s2.client, second.vault, recovery_key=recovery_key)
        said: list[str] = []
        # Protection off (keys from the backup judged like keys received over Olm): the
        # server's message claiming alice's first device comes out verified.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(trust.sender_trust, "from_insecure_source", lambda verdict: verdict)
            result = await key_backup.restore(s2, said.append)
        assert result.imported >= 1
        assert result.decrypted_events >= 4
        assert [r["session_id"] for r in result.refused] == ["FORGED"]
        assert result.refused[0]["code"] == "signature_invalid"
        assert any("restoring" in m for m in said)
        by_body = {e.body: e for e in second.timeline.events(room_id, limit=50) if e.kind == "text"}
        assert {"old secret 0", "old secret 1", "old secret 2"} <= set(by_body)
        assert by_body["forged by the server 1"].sender_trust == "verified"
        assert by_body["forged by the server 1"].event_id == rogue_event_1

        # Protection on: the same impersonation, restored again, is marked for what it is
        # (the key's claim of its sender is only as good as the backup); so are the genuine
        # messages whose keys came from the backup.
        rogue_event_2 = await _impersonate_in_backup(s2, room_id, st.version, "forged by the server 2", first_device)
        await sync_until(s2, lambda: any(e.event_id == rogue_event_2
                                         for e in second.timeline.events(room_id, limit=50)), what="the forgery")
        result = await key_backup.restore(s2)
        assert result.decrypted_events == 1
        by_body = {e.body: e for e in second.timeline.events(room_id, limit=50) if e.kind == "text"}
        assert by_body["forged by the server 2"].sender_trust == "unauthenticated"
        assert by_body["forged by the server 2"].to_json()["sender_trust"] == "unauthenticated"


async def _impersonate_in_backup(s: Session, room_id: str, version: str, body: str, device_id: str) -> str:
    """What anyone who can write to the account's backup (the homeserver: its public key is
    in the version's auth_data) can do: encrypt a message with a Megolm session of its own
    claiming alice's first device as sender, send it as alice, and put the session's key
    into the backup with that claim. Returns the event id."""
    first = await s.client.request_json("GET", "/_matrix/client/v3/room_keys/version", action="test")
    public_key = first[1]["auth_data"]["public_key"]
    query = await trust.query_keys(s.client, [s.account.user_id])
    devices = query["device_keys"][s.account.user_id]
    curve = devices[device_id]["keys"][f"curve25519:{device_id}"]
    ed = devices[device_id]["keys"][f"ed25519:{device_id}"]
    rogue = vodozemac.GroupSession()
    exported = vodozemac.InboundGroupSession(rogue.session_key).export_at(0).to_base64()  # before it advances
    payload = {"type": "m.room.message", "room_id": room_id, "content": {"msgtype": "m.text", "body": body}}
    ciphertext = rogue.encrypt(json.dumps(payload).encode()).to_base64()
    content = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": curve, "ciphertext": ciphertext,
               "session_id": rogue.session_id, "device_id": device_id}
    _, sent = await s.client.request_json(
        "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.encrypted/{secrets.token_hex(8)}", content,
        action="test")
    export = {"sender_key": curve, "session_key": exported, "sender_claimed_keys": {"ed25519": ed},
              "forwarding_curve25519_key_chain": []}
    entry = kb.encrypt_session(public_key, export, first_message_index=0, forwarded_count=0, is_verified=False)
    await s.client.request_json(
        "PUT", f"/_matrix/client/v3/room_keys/keys/{room_id}/{urllib.parse.quote(rogue.session_id, safe='')}"
        f"?version={version}", entry,
        action="test")
    return str(sent["event_id"])


async def test_keys_are_never_uploaded_to_a_backup_nobody_trusted_signed(
    synapse: SynapseHarness, alice: object, tmp_path: Path,
) -> None:
    from kumix.app.matrix_session import MatrixService
    assert isinstance(alice, MatrixService)
    state = KeyBackupState(alice.db)
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="Room", encrypted=True)
        await s.send_text(room_id, "a message whose key must stay home", markdown=False)
        # The "server" (anyone with the token) creates a backup version with its own key.
        evil = PkDecryptionKey.generate()
        await s.client.request_json("POST", "/_matrix/client/v3/room_keys/version",
                                    kb.version_body(kb.unsigned_auth_data(evil.public_key)), action="test")
        with pytest.raises(SignatureInvalid):
            await key_backup.upload_pending(s.client, alice.vault, state)
        version = await key_backup.current_version(s.client)
        assert version is not None
        _, doc = await s.client.request_json("GET", f"/_matrix/client/v3/room_keys/keys?version={version.version}",
                                             action="test")
        assert kb.entries(doc) == []
        # Protection off (the trust check answers "trusted" whatever signed the version):
        # the same upload goes to the attacker's version, whose key reads every room key.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(key_backup.kb, "trusted_by", lambda version, user_id, trusted_keys: "no check")
            assert await key_backup.upload_pending(s.client, alice.vault, state) >= 1
        _, doc = await s.client.request_json("GET", f"/_matrix/client/v3/room_keys/keys?version={version.version}",
                                             action="test")
        stolen = [kb.decrypt_session(evil, r, sid, data) for r, sid, data in kb.entries(doc)]
        assert any(e["room_id"] == room_id for e in stolen)
        assert trust.held_keys(alice.vault).master is not None
