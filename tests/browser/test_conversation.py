"""A conversation in the page with a separate matrix-nio process on the other side: sign-in
through the login page (the vault passphrase asked in the page), plain and encrypted rooms,
replies, edits, reactions, redactions both ways, a message whose key comes late, and an
encrypted image up and down. Each test looks at what the page shows and saves screenshots
to test-results/screenshots/."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.harness import (
    NioProcess,
    api,
    message,
    open_room,
    send_from_page,
    shot,
    token_url,
)
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import MatrixUser, WebServer

MAX_LOOKS = 60


def accept_invite(page: Page, room_name: str) -> None:
    page.locator("li.room.invite", has_text=room_name).get_by_role("button", name="Accept").click()
    open_room(page, room_name)


def room_id_named(server: WebServer, name: str) -> str:
    rooms = api(server, "GET", "/api/rooms")["rooms"]
    return next(r["room_id"] for r in rooms if r.get("name") == name)


def wait_for_device(server: WebServer, page: Page, peer: NioProcess) -> None:
    """Kumix encrypts for the devices it knows when it sends: wait until the sync loop has
    the peer's device (bounded; each look waits for the page's next paint, no sleep)."""
    for _ in range(MAX_LOOKS):
        devices = api(server, "GET", f"/api/devices?user={peer.user_id}")
        if peer.device_id in json.dumps(devices):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the server never learnt the peer's device {peer.device_id}")


def hover_action(page: Page, article: Locator, name: str) -> None:
    article.hover()
    article.locator(".hover-actions").get_by_role("button", name=name, exact=True).click()


def reaction(article: Locator, key: str) -> Locator:
    return article.locator("button.reaction", has_text=key)


def encrypted_room_with(server: WebServer, page: Page, peer: NioProcess, name: str) -> str:
    """A room made in the page's create dialog (encrypted by default), the peer invited and
    joined, and the server holding the peer's device."""
    # nio cannot cross-sign: under "exclude insecure devices" (MSC4153, on by default) its
    # device would get no keys and its messages would be withheld (docs/encryption.md).
    api(server, "PUT", "/api/encryption/settings", {"exclude_insecure_devices": False})
    page.get_by_role("button", name="Create a room").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Invite").fill(peer.user_id)
    expect(dialog.get_by_label("Encrypted")).to_be_checked()
    dialog.get_by_role("button", name="Create").click()
    page.locator(".room-head h1", has_text=name).wait_for()
    expect(page.locator(".room-head")).to_contain_text("Encrypted")
    room_id = room_id_named(server, name)
    peer.do("join", room=room_id)
    expect(page.locator(".notice", has_text=f"{peer.user.localpart} joined")).to_be_visible()
    wait_for_device(server, page, peer)
    return room_id


# -- signing in -------------------------------------------------------------------------


@pytest.fixture
def keyless_server(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebServer]:
    """A server with no vault key source: no passphrase file, no OS keyring (no session bus),
    no terminal. The page must ask for the passphrase."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    server = WebServer(data_dir, {}).start()
    try:
        yield server
    finally:
        server.stop()


def test_login_page_with_the_vault_question(synapse: SynapseHarness, keyless_server: WebServer,
                                            context: BrowserContext, data_dir: Path,
                                            request: pytest.FixtureRequest) -> None:
    user = synapse.user("login")
    other = MatrixUser(synapse.url, user.user_id, user.password)
    request.addfinalizer(other.close)

    def devices() -> set[str]:
        return {d["device_id"] for d in other.http.get("/_matrix/client/v3/devices").json()["devices"]}

    before = devices()
    page = context.new_page()
    page.goto(token_url(keyless_server))
    expect(page.get_by_role("heading", name="Sign in to Matrix")).to_be_visible()
    page.get_by_label("Homeserver").fill(synapse.url)
    page.get_by_label("User").fill(user.user_id)
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#vault-why")).to_contain_text("Choose a passphrase for the vault")
    expect(page.get_by_label("Vault passphrase", exact=True)).to_be_focused()
    # Asked before the homeserver was: no device was made for the refused login.
    assert devices() == before
    sign_in = page.get_by_role("button", name="Sign in")
    page.get_by_label("Vault passphrase", exact=True).fill("a passphrase for the page")
    page.get_by_label("Vault passphrase again").fill("a passphrase with a typo")
    expect(page.get_by_text("The two passphrases differ.")).to_be_visible()
    expect(sign_in).to_be_disabled()
    shot(page, "vault-question")
    page.get_by_label("Vault passphrase again").fill("a passphrase for the page")
    expect(sign_in).to_be_enabled()
    # The homeserver's refusal is said in words.
    page.get_by_label("Password", exact=True).fill("not the password")
    sign_in.click()
    expect(page.get_by_role("alert")).to_contain_text("The homeserver refused these credentials.")
    shot(page, "wrong-password")
    page.get_by_label("Password", exact=True).fill(user.password)
    sign_in.click()

    page.locator("aside.sidebar").wait_for()
    expect(page.locator(".account")).to_contain_text(user.user_id)
    expect(page.locator(".account")).not_to_contain_text("offline")
    shot(page, "signed-in")
    header = json.loads((data_dir / "vault.json").read_text())
    assert header["mode"] == "passphrase"
    assert "a passphrase for the page" not in (data_dir / "vault.json").read_text()
    account = api(keyless_server, "GET", "/api/whoami")["account"]
    assert account["user_id"] == user.user_id
    assert devices() == before | {account["device_id"]}


# -- rooms ------------------------------------------------------------------------------


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
    expect(message(page, "hello from nio").locator(".lock")).to_have_count(0)
    shot(page, "plain-room")


def test_encrypted_room_with_replies_edits_reactions_and_redactions(
        signed_in: tuple[WebServer, Page], web_user: TestUser, nio_peer: Callable[..., NioProcess]) -> None:
    server, page = signed_in
    peer = nio_peer()
    room_id = encrypted_room_with(server, page, peer, "Secret talk")

    # Both ways, encrypted; markdown from the page is sent rendered.
    send_from_page(page, "a **bold** hello from the page")
    mine = peer.do("wait_event", where={"room_id": room_id, "body": "a **bold** hello from the page"})
    assert mine["decrypted"] is True
    assert "<strong>bold</strong>" in mine["formatted_body"]
    theirs_id = peer.do("send", room=room_id, body="an encrypted hello from nio")["event_id"]
    theirs = message(page, "an encrypted hello from nio")
    expect(theirs).to_be_visible()
    expect(theirs.locator(".lock")).to_be_visible()

    # A reply from the page: the composer says so, the peer sees the relation.
    hover_action(page, theirs, "Reply")
    expect(page.locator(".composer .mode")).to_contain_text("Replying")
    page.keyboard.type("the page replies")
    page.keyboard.press("Enter")
    page_reply_doc = peer.do("wait_event", where={"room_id": room_id, "body": "the page replies"})
    assert page_reply_doc["in_reply_to"] == theirs_id
    page_reply = message(page, "the page replies")
    expect(page_reply.locator("blockquote.reply")).to_contain_text("an encrypted hello from nio")

    # A reply from the peer to the markdown message: the quote is rendered, not markdown.
    peer.do("send", room=room_id, body="nio replies", reply_to=mine["event_id"])
    quote = message(page, "nio replies").locator("blockquote.reply")
    expect(quote.locator("strong", has_text="bold")).to_be_visible()
    expect(quote).not_to_contain_text("**")
    shot(page, "replies")

    # Edits: Up in the empty composer edits the page's last message; the peer edits its own.
    page.get_by_role("textbox", name="Message").click()
    page.keyboard.press("ArrowUp")
    expect(page.locator(".composer .mode")).to_contain_text("Editing")
    page.get_by_role("textbox", name="Message").fill("the page replies, edited")
    page.keyboard.press("Enter")
    got = peer.do("wait_event", where={"room_id": room_id, "rel_type": "m.replace",
                                       "new_body": "the page replies, edited"})
    assert got["relates_to"] == page_reply_doc["event_id"]
    assert got["sender"] == web_user.user_id
    expect(message(page, "the page replies, edited")).to_contain_text("(edited)")
    peer.do("edit", room=room_id, event_id=theirs_id, body="an encrypted hello from nio, edited")
    edited = message(page, "an encrypted hello from nio, edited")
    expect(edited).to_contain_text("(edited)")

    # Reactions: the page's thumbs up reaches the peer and toggles off on a second click.
    hover_action(page, edited, "React with a thumbs up")
    thumbs = reaction(edited, "👍")
    expect(thumbs).to_have_text("👍 1")
    expect(thumbs).to_have_attribute("aria-pressed", "true")
    got = peer.do("wait_event", where={"room_id": room_id, "etype": "m.reaction", "relates_to": theirs_id})
    assert got["key"] == "👍"
    assert got["decrypted"] is True  # the homeserver does not see who reacted with what
    thumbs.click()
    expect(reaction(edited, "👍")).to_have_count(0)
    peer.do("wait_event", where={"room_id": room_id, "etype": "m.room.redaction", "redacts": got["event_id"]})
    # The peer's reaction shows with its count and joins on a click.
    peer.do("react", room=room_id, event_id=mine["event_id"], key="🎉")
    bold = message(page, "hello from the page")
    party = reaction(bold, "🎉")
    expect(party).to_have_text("🎉 1")
    expect(party).to_have_attribute("aria-pressed", "false")
    party.click()
    expect(party).to_have_text("🎉 2")
    expect(party).to_have_attribute("aria-pressed", "true")
    got = peer.do("wait_event", where={"room_id": room_id, "etype": "m.reaction", "key": "🎉",
                                       "sender": web_user.user_id})
    assert got["relates_to"] == mine["event_id"]
    shot(page, "edits-and-reactions")

    # Redactions: the page deletes its own message after asking; the peer deletes its own.
    hover_action(page, bold, "Delete")
    dialog = page.get_by_role("dialog", name="Delete this message?")
    shot(page, "delete-dialog")
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_have_count(0)
    peer.do("wait_event", where={"room_id": room_id, "etype": "m.room.redaction", "redacts": mine["event_id"]})
    expect(page.get_by_text("a **bold** hello")).to_have_count(0)
    expect(page.locator("article.message", has_text="hello from the page")).to_have_count(0)
    peer.do("redact", room=room_id, event_id=theirs_id)
    expect(page.locator("article.message", has_text="an encrypted hello from nio, edited")).to_have_count(0)
    expect(page.locator("article.message .redacted")).to_have_count(2)
    # All of it was read in the open room: no unread count stays behind (the encrypted
    # reaction and redactions count as unread on the homeserver until a receipt covers them).
    expect(page.locator(".roomlist .badge")).to_have_count(0)
    shot(page, "redactions")


def test_a_message_becomes_readable_when_its_key_arrives(
        signed_in: tuple[WebServer, Page], web_user: TestUser, nio_peer: Callable[..., NioProcess]) -> None:
    server, page = signed_in
    peer = nio_peer()
    room_id = encrypted_room_with(server, page, peer, "Late keys")
    device = api(server, "GET", "/api/whoami")["account"]["device_id"]
    # A first message sets up the Olm channel to the page's device.
    peer.do("send", room=room_id, body="keys on time")
    expect(message(page, "keys on time")).to_be_visible()

    # The next one is in a Megolm session whose key the page's device has not got.
    late_id = peer.do("send_late_key", room=room_id, user=web_user.user_id, device=device,
                      body="this one waited for its key")["event_id"]
    waiting = page.locator(f"article.message[data-event-id='{late_id}']")
    expect(waiting).to_contain_text("Waiting for this message's keys…")
    shot(page, "waiting-for-key")

    peer.do("deliver_key", event_id=late_id)
    expect(waiting).to_contain_text("this one waited for its key")
    expect(waiting).not_to_contain_text("Waiting for this message's keys…")
    shot(page, "key-arrived")


def png(width: int, height: int) -> bytes:
    """A real PNG (a colour gradient) written with zlib: what a person would attach."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_encrypted_image_up_and_down(signed_in: tuple[WebServer, Page], tmp_path: Path,
                                     nio_peer: Callable[..., NioProcess]) -> None:
    server, page = signed_in
    peer = nio_peer()
    room_id = encrypted_room_with(server, page, peer, "Pictures")

    # Up: attached in the page, decrypted by the peer to the same bytes.
    sent = png(96, 64)
    path = tmp_path / "from-the-page.png"
    path.write_bytes(sent)
    page.locator(".composer input[type=file]").set_input_files(str(path))
    got = peer.do("wait_event", where={"room_id": room_id, "body": "from-the-page.png"})
    assert got["type"] == "RoomEncryptedImage", got
    assert got["plain_sha256"] == hashlib.sha256(sent).hexdigest()
    mine = page.locator("article.message img[alt='from-the-page.png']")
    expect(mine).to_be_visible()

    # Down: the peer's encrypted image shows inline, and its bytes are the ones sent.
    theirs_bytes = png(120, 80)
    event_id = peer.do("send_image", room=room_id, name="from-nio.png", hex=theirs_bytes.hex(),
                       mimetype="image/png", w=120, h=80)["event_id"]
    img = page.locator("img[alt='from-nio.png']")
    expect(img).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 120", arg=img.element_handle())
    src = img.get_attribute("src")
    assert src == f"/api/media/{event_id.replace('$', '%24')}"
    downloaded = page.request.get(f"{server.origin}{src}")
    assert downloaded.status == 200
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.body() == theirs_bytes
    shot(page, "images")
