"""The app carries out what a frame's session decided, and only that: a proc call goes to
a real worker (and its HTML comes back sanitized), a refused request performs nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.settings import Settings
from kumix.app.ui_frames import UiFrames
from kumix.extensions.policy import load_policy
from kumix.extensions.ui.bridge_session import AskUser, Reply
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.ui_send_approvals import SendApprovalStore
from tests.ui_fixtures import NONCE, make_ui_extension

ROOM = "!room:localhost"


class RoomActions:
    """The account side for these tests: proc calls go to the real host; the room is a list."""

    def __init__(self, caller: ExtensionCaller) -> None:
        self.caller = caller
        self.sent: list[tuple[str, str, Mapping[str, Any]]] = []
        self.timeline = [{"type": "m.room.message", "room_id": ROOM, "event_id": "$1",
                          "content": {"msgtype": "m.text", "body": "see owner/repo#1"}}]

    async def read_events(self, room_id: str, event_type: str, msgtype: str | None,
                          limit: int) -> list[Mapping[str, Any]]:
        return [e for e in self.timeline if e["room_id"] == room_id and e["type"] == event_type][:limit]

    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        self.sent.append((room_id, event_type, content))
        return f"${len(self.sent)}-sent"

    async def navigate(self, room_link: str) -> None:
        raise AssertionError("not used")

    async def theme_tokens(self) -> Mapping[str, Any]:
        return {"bg": "#fff"}

    async def proc_call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        return await self.caller.call(extension_id, method, params)


def frame_request(widget_id: str, request_id: str, action: str, data: dict[str, Any]) -> str:
    return json.dumps({"api": "fromWidget", "widgetId": widget_id, "requestId": request_id, "action": action,
                       "data": data})


async def test_requests_are_carried_out_only_as_decided(tmp_path: Path) -> None:
    root = tmp_path / "ext"
    make_ui_extension(root, "probe", "<p>x</p>", capabilities=["room.context.read", "room.message.send", "proc.call"])
    db = Database(tmp_path / "state.db")
    service = ExtensionService(load_policy("dev"), ExtensionStateStore(db), (root,))
    for cap in ("room.context.read", "room.message.send", "proc.call"):
        service.grant("probe", cap)
    service.enable("probe")
    frames = UiFrames(service, SendApprovalStore(db))
    frame = frames.mount("probe", room_id=ROOM, host_origin="http://127.0.0.1:1", script_nonce=NONCE)
    wid = frame.widget_id
    async with ExtensionCaller(service, Settings(data_dir=tmp_path / "data", policy="dev")) as caller:
        actions = RoomActions(caller)
        [ask] = frame.session.start()
        answer = json.dumps({**ask.message, "response": {"capabilities": [
            "org.matrix.msc2762.receive.event:m.room.message", "org.matrix.msc2762.send.event:m.room.message",
            "io.kumix.proc_call"]}})
        [notify] = await frames.handle(wid, answer, 0.0, actions)
        assert isinstance(notify, Reply)

        [read] = await frames.handle(wid, frame_request(wid, "r1", "org.matrix.msc2876.read_events",
                                                        {"type": "m.room.message"}), 0.0, actions)
        assert read.message["response"]["events"][0]["event_id"] == "$1"

        [call] = await frames.handle(wid, frame_request(wid, "r2", "io.kumix.proc_call", {
            "extension": "markdown-renderer", "method": "render.markdown",
            "params": {"source": "**hi** <script>alert(1)</script><img src=x onerror=alert(1)>"}}), 0.0, actions)
        assert "result" in call.message["response"], call.message["response"]
        html = call.message["response"]["result"]["html"]
        assert "<strong>hi</strong>" in html
        assert "<script" not in html
        assert "<img" not in html  # raw HTML comes back as text, never as an element

        [missing] = await frames.handle(wid, frame_request(wid, "r3", "io.kumix.proc_call", {
            "extension": "markdown-renderer", "method": "nope", "params": {}}), 0.0, actions)
        assert missing.message["response"]["error"]["io.kumix.code"] == "not_found"

        send = frame_request(wid, "r4", "send_event", {"type": "m.room.message",
                                                       "content": {"msgtype": "m.text", "body": "hello"}})
        [question] = await frames.handle(wid, send, 0.0, actions)
        assert isinstance(question, AskUser)
        assert actions.sent == []  # nothing leaves before the user says yes
        [sent] = await frames.answer(wid, "r4", approved=True, always=False, actions=actions)
        assert sent.message["response"]["event_id"] == "$1-sent"
        assert actions.sent == [(ROOM, "m.room.message", {"msgtype": "m.text", "body": "hello"})]

        other = frame_request(wid, "r5", "send_event", {"type": "m.room.message", "room_id": "!other:localhost",
                                                        "content": {"msgtype": "m.text", "body": "x"}})
        [refused] = await frames.handle(wid, other, 0.0, actions)
        assert "timeline:!other:localhost" in refused.message["response"]["error"]["message"]
        assert len(actions.sent) == 1
