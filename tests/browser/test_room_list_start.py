"""The page's first read of the room list against the live feed: a room created while the
answer (made before the room existed) was on its way stays listed once that answer is in.

The race this pins down: the page asks GET /api/rooms and opens the event feed at once; a
room that arrives by a "rooms" frame before the older answer is applied must not be replaced
by that answer, since no frame comes for it again (the page said "No rooms yet." for good).
Here the answer is held by the browser until the frames for the new room have arrived.
"""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Route, WebSocket, expect

from tests.browser.harness import api, log_in_through_api, room_button, shot, token_url
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import MatrixUser, WebServer

WAIT_ROUNDS = 600
"""Rounds of 50 ms the test waits for the page's request and frames (what TIMEOUT_MS allows)."""


def test_a_room_list_answered_before_a_room_came_keeps_that_room(
        synapse: SynapseHarness, web_server: WebServer, web_user: TestUser, context: BrowserContext) -> None:
    log_in_through_api(web_server, synapse.url, web_user)
    # Known before the page opens, so only the held answer can show it: once it is shown,
    # that answer has been applied.
    api(web_server, "POST", "/api/rooms", {"name": "Early room", "encrypted": False})
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    context.route("**/api/rooms", hold)
    frames: list[str] = []

    def record(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: frames.append(payload if isinstance(payload, str) else ""))

    page = context.new_page()
    page.on("websocket", record)
    page.goto(token_url(web_server))
    page.locator("aside.sidebar").wait_for()
    for _ in range(WAIT_ROUNDS):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for the room list"
    answer = held[0].fetch()  # made now, before the new room exists
    names = [r["name"] for r in answer.json()["rooms"]]
    assert names == ["Early room"], names

    me = MatrixUser(synapse.url, web_user.user_id, web_user.password)
    try:
        me.create_room(name="Late room")
    finally:
        me.close()
    late = room_button(page, "Late room")
    # From the feed's "rooms" frame (the one that names it): the list is still unanswered.
    expect(late).to_be_visible()
    assert any('"rooms"' in f and "Late room" in f for f in frames), "the room came by no rooms frame"
    assert room_button(page, "Early room").count() == 0, "the room list was answered already"

    held[0].fulfill(response=answer)
    expect(room_button(page, "Early room")).to_be_visible()
    # Applied in the same step as the answer, so no waiting: it is there or it is gone.
    assert late.count() == 1, "the older room list answer replaced the room the feed had brought"
    shot(page, "both-rooms")
