"""An Element-style widget — matrix-widget-api's unmodified WidgetApi with client origin
"*" — speaks to Kumix through the host-page gate (FrameBridge, in node) and the server's
frame session (UiFrames), and gets exactly what Kumix grants."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kumix.app.extensions import ExtensionService
from kumix.app.ui_frames import UiFrames
from kumix.extensions.policy import load_policy
from kumix.extensions.ui.bridge_session import Reply
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.ui_fixtures import NONCE, make_ui_extension

HERE = Path(__file__).resolve().parent / "ui_widget_api"
ROOM = "!room:localhost"


class Room:
    async def read_events(self, room_id: str, event_type: str, msgtype: str | None,
                          limit: int) -> list[Mapping[str, Any]]:
        return [{"type": "m.room.message", "room_id": room_id, "event_id": "$e1", "sender": "@a:localhost",
                 "content": {"msgtype": "m.text", "body": "hello"}}][:limit]

    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        raise AssertionError("nothing may be sent")

    async def navigate(self, room_link: str) -> None:
        raise AssertionError("not asked")

    async def theme_tokens(self) -> Mapping[str, Any]:
        return {"color.bg": "#ffffff"}

    async def proc_call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        raise AssertionError("not asked")


def test_widget_api_is_the_pinned_npm_file() -> None:
    lock = json.loads((HERE / "vendor/vendor.lock.json").read_text())
    for entry in lock["files"]:
        assert hashlib.sha256((HERE / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


async def test_unmodified_widget_api_negotiates_reads_and_is_refused_the_rest(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed (Debian package nodejs)"
    root = tmp_path / "ext"
    make_ui_extension(root, "element-style", "<p>x</p>", capabilities=["room.context.read", "theme.tokens"])
    db = Database(tmp_path / "state.db")
    service = ExtensionService(load_policy("dev"), ExtensionStateStore(db), (root,))
    for cap in ("room.context.read", "theme.tokens"):
        service.grant("element-style", cap)
    service.enable("element-style")
    frames = UiFrames(service)
    frame = frames.mount("element-style", room_id=ROOM, host_origin="http://127.0.0.1:8765", script_nonce=NONCE)
    proc = await asyncio.create_subprocess_exec(node, str(HERE / "harness.cjs"), frame.widget_id,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None

    async def deliver(effects: list[Any]) -> None:
        for effect in effects:
            assert isinstance(effect, Reply), effect
            proc.stdin.write((json.dumps({"deliver": effect.message}) + "\n").encode())
        await proc.stdin.drain()

    async def conversation() -> dict[str, Any]:
        while True:
            line = await proc.stdout.readline()
            assert line, "the widget harness ended without an answer"
            doc = json.loads(line)
            if "loaded" in doc:
                await deliver(frame.session.start())
            elif "forward" in doc:
                await deliver(await frames.handle(frame.widget_id, doc["forward"], time.monotonic(), Room()))
            elif "done" in doc:
                return doc
            else:
                raise AssertionError(doc)

    try:
        # A bound on a hang, not a timing expectation: the exchange is a few dozen messages.
        doc = await asyncio.wait_for(conversation(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    results = doc["done"]
    assert sorted(results["approved"]) == ["io.kumix.theme_tokens", "org.matrix.msc2762.receive.event:m.room.message"]
    assert [e["event_id"] for e in results["events"]] == ["$e1"]
    assert results["tokens"] == {"tokens": {"color.bg": "#ffffff"}}
    assert "room.message.send" in results["send"]
    assert "openid" in results["openid"]
    assert doc["dropped"] == {}
