"""Mounting UI frames through the app: fresh tokens, the extension's state respected, the
user's "allow for this extension" kept in local state and revocable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kumix.app.extensions import ExtensionService
from kumix.app.ui_frames import UiFrames, egress_summary
from kumix.core.errors import BadRequest, Disabled, NotGranted
from kumix.extensions.policy import load_policy
from kumix.extensions.ui.bridge_session import AskUser, Perform, RememberSendApproval
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.ui_send_approvals import SendApprovalStore
from tests.ui_fixtures import NONCE, make_ui_extension

ROOM = "!room:localhost"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[UiFrames, ExtensionService, Database]:
    root = tmp_path / "ext"
    make_ui_extension(root, "sender", "<p>hi</p><script>1</script>", capabilities=["room.message.send"])
    db = Database(tmp_path / "state.db")
    service = ExtensionService(load_policy("dev"), ExtensionStateStore(db), (root,))
    return UiFrames(service, SendApprovalStore(db)), service, db


def mount(frames: UiFrames, ext: str = "sender"):  # type: ignore[no-untyped-def]
    return frames.mount(ext, room_id=ROOM, host_origin="http://127.0.0.1:9", script_nonce=NONCE)


def test_external_ui_extension_needs_grant_and_enable(setup: tuple[UiFrames, ExtensionService, Database]) -> None:
    frames, service, _ = setup
    with pytest.raises(NotGranted):
        mount(frames)
    service.grant("sender", "room.message.send")
    with pytest.raises(Disabled):
        mount(frames)
    service.enable("sender")
    frame = mount(frames)
    doc = frame.to_json()
    assert doc["sandbox"] == "allow-scripts"
    assert doc["referrerPolicy"] == "no-referrer"
    assert doc["allow"] == ""
    assert frame.widget_id in doc["srcdoc"]


def test_every_mount_gets_a_new_128_bit_token(setup: tuple[UiFrames, ExtensionService, Database]) -> None:
    frames, service, _ = setup
    service.grant("sender", "room.message.send")
    service.enable("sender")
    tokens = set()
    for _ in range(40):
        frame = mount(frames)
        assert len(base64.urlsafe_b64decode(frame.widget_id + "==")) == 16
        tokens.add(frame.widget_id)
        frames.unload(frame.widget_id)
    assert len(tokens) == 40


def test_proc_extension_cannot_be_mounted(setup: tuple[UiFrames, ExtensionService, Database]) -> None:
    frames, _, _ = setup
    with pytest.raises(BadRequest):
        mount(frames, "markdown-renderer")


def test_allow_for_this_extension_is_kept_and_revocable(setup: tuple[UiFrames, ExtensionService, Database]) -> None:
    frames, service, _ = setup
    service.grant("sender", "room.message.send")
    service.enable("sender")
    frame = mount(frames)
    s = frame.session
    [ask] = s.start()
    s.receive(json.dumps({**ask.message, "response": {"capabilities": [
        "org.matrix.msc2762.send.event:m.room.message"]}}), now=0.0)
    send = {"api": "fromWidget", "widgetId": frame.widget_id, "requestId": "s1", "action": "send_event",
            "data": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}}}
    [question] = s.receive(json.dumps(send), now=0.0)
    assert isinstance(question, AskUser)
    effects = frames.remember(s.confirm("s1", approved=True, always=True))
    assert isinstance(effects[0], RememberSendApproval)
    # A new mount of the same extension sends without asking; revoking asks again.
    second = mount(frames).session
    assert second.send_always_allowed
    assert frames.revoke_send_approval("sender")
    assert not mount(frames).session.send_always_allowed
    assert not second.send_always_allowed


def test_egress_summary_shows_granted_and_refused_sources(tmp_path: Path) -> None:
    root = tmp_path / "ext"
    make_ui_extension(root, "net", "<p>x</p>", ui={"connectSrc": [{"source": "https://api.github.com",
                                                                  "reason": "titles"}]})
    db = Database(tmp_path / "state.db")
    service = ExtensionService(load_policy("strict"), ExtensionStateStore(db), (root,))
    summary = egress_summary(service.policy, service.get("net"))
    assert summary == {"connectSrc": [], "refused": [{"source": "https://api.github.com", "reason": "titles"}],
                       "sandbox": ["allow-scripts"]}
    assert egress_summary(service.policy, service.get("markdown-renderer")) is None


def test_performed_actions_come_back_only_once(setup: tuple[UiFrames, ExtensionService, Database]) -> None:
    frames, service, _ = setup
    service.grant("sender", "room.message.send")
    service.enable("sender")
    frames.revoke_send_approval("sender")
    frame = mount(frames)
    frame.session.send_always_allowed = True
    [ask] = frame.session.start()
    frame.session.receive(json.dumps({**ask.message, "response": {"capabilities": [
        "org.matrix.msc2762.send.event:m.room.message"]}}), now=0.0)
    send = {"api": "fromWidget", "widgetId": frame.widget_id, "requestId": "s1", "action": "send_event",
            "data": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}}}
    [perform] = frame.session.receive(json.dumps(send), now=0.0)
    assert isinstance(perform, Perform)
    assert frames.get(frame.widget_id) is frame
    assert frames.active_in(ROOM) == [frame]
