"""A plain matrix-nio client in its own process, with its own crypto store: the "other
client" of the E2EE tests. Commands arrive as JSON lines on stdin, answers leave as JSON
lines on stdout; it syncs in the background between commands like any real client.

    python -m tests.matrix.nio_peer HOMESERVER USER_ID PASSWORD STORE_DIR
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
from typing import Any
from uuid import uuid4

import nio
from nio.crypto import decrypt_attachment


class Peer:
    def __init__(self, homeserver: str, user: str, password: str, store: str) -> None:
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = nio.AsyncClient(homeserver, user, store_path=store, config=config)
        self.password = password
        self.seen: list[dict[str, Any]] = []
        self.new_event = asyncio.Event()
        self.late_keys: dict[str, tuple[str, Any, str, str]] = {}

    async def start(self) -> None:
        resp = await self.client.login(self.password, device_name="nio-peer")
        assert isinstance(resp, nio.LoginResponse), resp
        self.client.add_event_callback(self._on_event, nio.Event)
        await self.client.sync(timeout=0, full_state=True)
        await self._upkeep()

    async def _upkeep(self) -> None:
        c = self.client
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        await c.send_to_device_messages()

    async def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        source = event.source if isinstance(event.source, dict) else {}
        content = source.get("content") if isinstance(source.get("content"), dict) else {}
        relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
        reply = relates.get("m.in_reply_to") if isinstance(relates.get("m.in_reply_to"), dict) else {}
        new_content = content.get("m.new_content") if isinstance(content.get("m.new_content"), dict) else {}
        doc: dict[str, Any] = {"room_id": room.room_id, "event_id": event.event_id, "sender": event.sender,
                               "type": type(event).__name__, "decrypted": bool(getattr(event, "decrypted", False)),
                               "etype": source.get("type"), "rel_type": relates.get("rel_type"),
                               "relates_to": relates.get("event_id"), "key": relates.get("key"),
                               "in_reply_to": reply.get("event_id"), "new_body": new_content.get("body"),
                               "redacts": source.get("redacts") or content.get("redacts")}
        if isinstance(event, nio.RoomMessageText):
            doc["body"] = event.body
            doc["formatted_body"] = event.formatted_body
        elif isinstance(event, nio.RoomEncryptedMedia):
            doc["body"] = event.body
            doc["url"] = event.url
            doc["key"] = event.key["k"]
            doc["sha256"] = event.hashes["sha256"]
            doc["iv"] = event.iv
        self.seen.append(doc)
        self.new_event.set()

    async def sync_loop(self) -> None:
        while True:
            await self.client.sync(timeout=1000)
            await self._upkeep()

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        await self.client.sync(timeout=0)
        await self._upkeep()
        resp = await self.client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def _send_late_key(self, room_id: str, user: str, device_id: str, body: str) -> str:
        """A message in a new Megolm session whose key every device gets but `device_id`:
        what that device sees when the room key is delayed (a to-device message lost or
        late). The session's key from its first index is kept for `deliver_key`."""
        olm = self.client.olm
        assert olm is not None
        await self.client.sync(timeout=0)
        await self._upkeep()
        olm.outbound_group_sessions.pop(room_id, None)
        olm.create_outbound_group_session(room_id)
        session = olm.outbound_group_sessions[room_id]
        first_key = session.session_key  # from index 0: read before the message ratchets it on
        device = self.client.device_store[user][device_id]
        assert olm.session_store.get(device.curve25519) is not None, "no Olm session with that device yet"
        self.client.blacklist_device(device)
        try:
            event_id = await self._send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        finally:
            self.client.unblacklist_device(device)
        self.late_keys[event_id] = (room_id, device, session.id, first_key)
        # The next message starts a session shared normally.
        olm.outbound_group_sessions.pop(room_id, None)
        return event_id

    async def _deliver_key(self, event_id: str) -> None:
        """The delayed m.room_key arrives: Olm-encrypted to that one device."""
        olm = self.client.olm
        assert olm is not None
        room_id, device, session_id, session_key = self.late_keys.pop(event_id)
        olm_session = olm.session_store.get(device.curve25519)
        content = olm._olm_encrypt(olm_session, device, "m.room_key", {
            "algorithm": "m.megolm.v1.aes-sha2", "room_id": room_id, "session_id": session_id,
            "session_key": session_key})
        olm.save_session(device.curve25519, olm_session)
        resp = await self.client.to_device(nio.ToDeviceMessage("m.room.encrypted", device.user_id, device.id, content))
        assert isinstance(resp, nio.ToDeviceResponse), resp

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        c = self.client
        if op == "join":
            resp = await c.join(cmd["room"])
            await c.sync(timeout=0)
            await self._upkeep()
            return {"ok": isinstance(resp, nio.JoinResponse)}
        if op == "create_room":
            encryption = [{"type": "m.room.encryption", "state_key": "",
                           "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if cmd.get("encrypted", True) else []
            resp = await c.room_create(name=cmd.get("name"), invite=cmd.get("invite", []), initial_state=encryption)
            assert isinstance(resp, nio.RoomCreateResponse), resp
            await c.sync(timeout=0)
            return {"room_id": resp.room_id}
        if op == "send":
            content: dict[str, Any] = {"msgtype": "m.text", "body": cmd["body"]}
            if cmd.get("html"):
                content |= {"format": "org.matrix.custom.html", "formatted_body": cmd["html"]}
            if cmd.get("reply_to"):
                content["m.relates_to"] = {"m.in_reply_to": {"event_id": cmd["reply_to"]}}
            return {"event_id": await self._send(cmd["room"], "m.room.message", content)}
        if op == "edit":
            new = {"msgtype": "m.text", "body": cmd["body"]}
            return {"event_id": await self._send(cmd["room"], "m.room.message", {
                "msgtype": "m.text", "body": f"* {cmd['body']}", "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": cmd["event_id"]}})}
        if op == "react":
            content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": cmd["event_id"], "key": cmd["key"]}}
            room = c.rooms.get(cmd["room"])
            if room is None or not room.encrypted:
                return {"event_id": await self._send(cmd["room"], "m.reaction", content)}
            # nio's room_send leaves reactions in clear; encrypted, as Element sends them.
            await c.sync(timeout=0)
            await self._upkeep()
            if c.olm is not None and c.olm.should_share_group_session(cmd["room"]):
                await c.share_group_session(cmd["room"], ignore_unverified_devices=True)
            event_type, encrypted = c.encrypt(cmd["room"], "m.reaction", content)
            method, path, data = nio.Api.room_send(c.access_token, cmd["room"], event_type, encrypted, str(uuid4()))
            resp = await c._send(nio.RoomSendResponse, method, path, data, (cmd["room"],))
            assert isinstance(resp, nio.RoomSendResponse), resp
            return {"event_id": resp.event_id}
        if op == "redact":
            resp = await c.room_redact(cmd["room"], cmd["event_id"], reason=cmd.get("reason"))
            assert isinstance(resp, nio.RoomRedactResponse), resp
            return {"event_id": resp.event_id}
        if op == "send_image":
            # An encrypted image (m.image with an encrypted file), as Element sends one.
            data = bytes.fromhex(cmd["hex"])
            up, keys = await c.upload(io.BytesIO(data), content_type=cmd["mimetype"], filename=cmd["name"],
                                      encrypt=True, filesize=len(data))
            assert isinstance(up, nio.UploadResponse), up
            return {"event_id": await self._send(cmd["room"], "m.room.message", {
                "msgtype": "m.image", "body": cmd["name"], "file": {**keys, "url": up.content_uri},
                "info": {"size": len(data), "mimetype": cmd["mimetype"], "w": cmd.get("w"), "h": cmd.get("h")}})}
        if op == "send_late_key":
            return {"event_id": await self._send_late_key(cmd["room"], cmd["user"], cmd["device"], cmd["body"])}
        if op == "deliver_key":
            await self._deliver_key(cmd["event_id"])
            return {"ok": True}
        if op == "wait_event":
            # Wait for an event whose recorded fields equal all of `where`; report it.
            where: dict[str, Any] = cmd["where"]
            async with asyncio.timeout(cmd.get("timeout", 60)):
                while True:
                    for doc in self.seen:
                        if all(doc.get(k) == v for k, v in where.items()):
                            if "url" in doc:
                                dl = await c.download(doc["url"])
                                plain = decrypt_attachment(dl.body, doc["key"], doc["sha256"], doc["iv"])
                                doc = {**doc, "plain_sha256": hashlib.sha256(plain).hexdigest()}
                            return doc
                    self.new_event.clear()
                    await self.new_event.wait()
        if op == "send_file":
            data = bytes.fromhex(cmd["hex"])
            up, keys = await c.upload(io.BytesIO(data), content_type="application/octet-stream",
                                      filename=cmd["name"], encrypt=True, filesize=len(data))
            assert isinstance(up, nio.UploadResponse), up
            content = {"msgtype": "m.file", "body": cmd["name"], "file": {**keys, "url": up.content_uri},
                       "info": {"size": len(data), "mimetype": "application/octet-stream"}}
            await c.sync(timeout=0)
            await self._upkeep()
            resp = await c.room_send(cmd["room"], "m.room.message", content, ignore_unverified_devices=True)
            assert isinstance(resp, nio.RoomSendResponse), resp
            return {"event_id": resp.event_id}
        if op == "wait_body":
            # Wait until a message with this body arrived; report it (and decrypt its file).
            async with asyncio.timeout(cmd.get("timeout", 60)):
                while True:
                    for doc in self.seen:
                        if doc.get("body") == cmd["body"]:
                            if "url" in doc:
                                dl = await c.download(doc["url"])
                                plain = decrypt_attachment(dl.body, doc["key"], doc["sha256"], doc["iv"])
                                doc = {**doc, "plain_sha256": hashlib.sha256(plain).hexdigest()}
                            return doc
                    self.new_event.clear()
                    await self.new_event.wait()
        if op == "seen":
            # Everything received so far, in order (for a test's own checks or its failure message).
            return {"events": [d for d in self.seen if cmd.get("room") in (None, d["room_id"])]}
        if op == "stop":
            return {"ok": True}
        raise ValueError(f"unknown op {op}")


async def main() -> None:
    homeserver, user, password, store = sys.argv[1:5]
    peer = Peer(homeserver, user, password, store)
    await peer.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True, "device_id": peer.client.device_id}), flush=True)
    async with asyncio.TaskGroup() as tg:
        syncer = tg.create_task(peer.sync_loop())
        while line := await reader.readline():
            cmd = json.loads(line)
            try:
                result = await peer.handle(cmd)
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(result), flush=True)
            if cmd["op"] == "stop":
                break
        syncer.cancel()
    await peer.client.close()


if __name__ == "__main__":
    asyncio.run(main())
