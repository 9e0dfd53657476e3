"""A conversation in the page with a separate matrix-nio process on the other side: sign-in,
plain and encrypted rooms, replies, edits, reactions, redactions, a message whose key comes
late, and an encrypted image. Each test looks at what the page shows and saves screenshots
to test-results/screenshots/."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect
from tests.browser.harness import NioProcess, message, open_room, send_from_page, shot
from tests.synapse_harness import TestUser
from tests.web.web_harness import WebServer


def accept_invite(page: Page, room_name: str) -> None:
    invite = page.locator("li.room.invite", has_text=room_name)
    invite.get_by_role("button", name="Accept").click()
    open_room(page, room_name)


def test_plain_room_both_ways(signed_in: tuple[WebServer, Page], web_user: TestUser,
                              nio_peer: Callable[..., NioProcess]) -> None:
    server, page = signed_in
    peer = nio_peer()
    room_id = peer.do("create_room", name="Plain talk", encrypted=False, invite=[web_user.user_id])["room_id"]
    accept_invite(page, "Plain talk")

    send_from_page(page, "hello from the page")
    got = peer.do("wait_event", where={"room_id": room_id, "body": "hello from the page"})
    assert got["sender"] == web_user.user_id
    assert got["decrypted"] is False

    peer.do("send", room=room_id, body="hello from nio")
    expect(message(page, "hello from nio")).to_be_visible()
    expect(page.locator(".room-head")).not_to_contain_text("Encrypted")
    shot(page, "plain-room")
    assert server.port
