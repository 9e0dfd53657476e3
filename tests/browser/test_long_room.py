"""A room of 10 000 messages in the page: scrolled from the newest to the oldest, the
timeline keeps at most a few hundred message nodes in the DOM (the virtualizer renders what
is near the viewport, never the whole history). A screenshot at each end.

The room is real (created on the test Synapse, its newest message sent there); its 10 000
older messages are put into the server's own timeline store, where backward pagination
would have put them, and the page reads them through the real API. Sending them through
Synapse is not practical here: its SQLite-backed test instance took about 13 events a second
on this machine (10 000 would take some 13 minutes).
"""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page, expect

from kumix.core.models import Event
from kumix.store.timeline import TimelineStore
from tests.browser.harness import TIMEOUT_MS, message, open_room, room_button, shot
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import MatrixUser, WebServer

MESSAGES = 10_000
MAX_NODES = 300
"""A few hundred: what one screen and the virtualizer's overscan need, far from 10 000."""


def fill(server: WebServer, room_id: str, sender: str) -> None:
    """10 000 older text messages, one a second up to an hour before now, as a page of backward
    pagination stores them (each `older` one before everything held), and no more history
    beyond them on the homeserver."""
    assert server.kumix is not None
    k = server.kumix
    now = int(time.time() * 1000) - 3_600_000
    events = [Event(event_id=f"$long{i}", room_id=room_id, sender=sender, origin_ts=now - (MESSAGES - i) * 1000,
                    kind="text", body=f"long {i}", msgtype="m.text") for i in reversed(range(MESSAGES))]

    def put() -> None:
        with k.database.transaction() as tx:
            TimelineStore.put_events(tx, events, older=True)
            TimelineStore.set_prev_batch(tx, room_id, None)

    server.call(put)


def message_nodes(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('[role=log] article.message').length"))


def test_ten_thousand_messages_keep_the_dom_small(synapse: SynapseHarness, signed_in: tuple[WebServer, Page],
                                                  web_user: TestUser) -> None:
    server, page = signed_in
    me = MatrixUser(synapse.url, web_user.user_id, web_user.password)
    try:
        room_id = me.create_room(name="Long room")
    finally:
        me.close()
    expect(room_button(page, "Long room")).to_be_visible(timeout=TIMEOUT_MS)
    fill(server, room_id, web_user.user_id)
    last = MatrixUser(synapse.url, web_user.user_id, web_user.password)
    try:
        last.send(room_id, "the newest message")
    finally:
        last.close()
    open_room(page, "Long room")
    expect(message(page, "the newest message")).to_be_visible(timeout=TIMEOUT_MS)
    shot(page, "newest")

    most = message_nodes(page)
    log = page.locator("[role=log]").first
    start = page.locator("[role=log]").get_by_text("This is the start of the room.")
    first_text = """() => document.querySelector('[role=log] article.message')?.textContent ?? null"""
    rounds = 0
    # Scroll to the top again and again: each time a page of older messages comes (the first
    # rendered message changes) until the start of the room shows.
    while not start.count():
        rounds += 1
        assert rounds <= MESSAGES // 50, "the start of the room never came into view"
        before: Any = page.evaluate(first_text)
        log.evaluate("el => { el.scrollTop = 0; }")
        page.wait_for_function(f"""(before) => ({first_text})() !== before
            || document.querySelector('[role=log]').textContent.includes('This is the start of the room.')""",
                               arg=before, timeout=TIMEOUT_MS)
        most = max(most, message_nodes(page))
    # Every one of the 10 000 came through: the oldest is the first message shown at the start.
    expect(page.locator("[role=log] article.message").first).to_contain_text("long 0")
    expect(message(page, "long 0")).to_be_in_viewport()
    assert most <= MAX_NODES, f"{most} message nodes in the DOM"
    assert most > 10, f"only {most} message nodes: the timeline did not render"
    shot(page, "oldest")
