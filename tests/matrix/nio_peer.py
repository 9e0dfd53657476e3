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

import nio
from nio.crypto import decrypt_attachment


class Peer:
    def __init__(self, homeserver: str, user: str, password: str, store: str) -> None:
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = nio.AsyncClient(homeserver, user, store_path=store, config=config)
        self.password = password
        self.seen: list[dict[str, Any]] = []
        self.new_event = asyncio.Event()

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
        doc: dict[str, Any] = {"room_id": room.room_id, "event_id": event.event_id, "sender": event.sender,
                               "type": type(event).__name__, "decrypted": bool(getattr(event, "decrypted", False))}
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

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        c = self.client
        if op == "join":
            resp = await c.join(cmd["room"])
            await c.sync(timeout=0)
            await self._upkeep()
            return {"ok": isinstance(resp, nio.JoinResponse)}
        if op == "create_room":
            resp = await c.room_create(name=cmd.get("name"), invite=cmd.get("invite", []), initial_state=[
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
            assert isinstance(resp, nio.RoomCreateResponse), resp
            await c.sync(timeout=0)
            return {"room_id": resp.room_id}
        if op == "send":
            await c.sync(timeout=0)
            await self._upkeep()
            resp = await c.room_send(cmd["room"], "m.room.message", {"msgtype": "m.text", "body": cmd["body"]},
                                     ignore_unverified_devices=True)
            assert isinstance(resp, nio.RoomSendResponse), resp
            return {"event_id": resp.event_id}
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
