"""The unlock screen: a server restarted with a vault sealed by the page's passphrase (no
passphrase file) opens the page on it; a wrong passphrase is said in words and leaves the
vault as it was; the right one brings the room list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.harness import room_button, shot, token_url
from tests.synapse_harness import SynapseHarness
from tests.web.web_harness import MatrixUser, WebServer

PASSPHRASE = "browser unlock passphrase"
ROOM_NAME = "Behind the vault"


@pytest.fixture
def locked_server(synapse: SynapseHarness, data_dir: Path) -> Iterator[WebServer]:
    user = synapse.user("unlockpage")
    MatrixUser(synapse.url, user.user_id, user.password).create_room(name=ROOM_NAME)
    # Signed in as the login page does it on a server with no key source, then restarted.
    first = WebServer(data_dir, {}).start()
    try:
        with first.client() as c:
            r = c.post("/api/login", json={"homeserver": synapse.url, "user": user.user_id,
                                           "password": user.password, "vault_passphrase": PASSPHRASE})
            assert r.status_code == 200, r.text
    finally:
        first.stop()
    server = WebServer(data_dir, {}).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_page_unlocks_the_vault(locked_server: WebServer, context: BrowserContext, data_dir: Path) -> None:
    sealed = (data_dir / "vault.json").read_bytes()
    page = context.new_page()
    page.goto(token_url(locked_server))
    field = page.get_by_label("Vault passphrase")
    expect(page.get_by_role("heading", name="Unlock the vault")).to_be_visible()
    expect(field).to_be_focused()
    expect(page.locator("aside.sidebar")).to_have_count(0)
    shot(page, "unlock")

    field.fill("not the passphrase")
    page.get_by_role("button", name="Unlock").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("That passphrase does not open the vault")
    expect(field).to_have_value("")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    shot(page, "wrong-passphrase")
    assert (data_dir / "vault.json").read_bytes() == sealed

    field.fill(PASSPHRASE)
    field.press("Enter")
    page.locator("aside.sidebar").wait_for()
    expect(room_button(page, ROOM_NAME)).to_be_visible()
    shot(page, "unlocked")
    assert PASSPHRASE.encode() not in locked_server.capture.blob()
