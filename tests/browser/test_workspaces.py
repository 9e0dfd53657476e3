"""The page around the conversation: spaces as workspaces, search that jumps to the message
(an encrypted room's included), English and Japanese and light and dark switched at run
time, the phone layout, keyboard-only use, and axe-core on every screen in both themes.
Each test saves screenshots to test-results/screenshots/."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.harness import (
    REPO_ROOT,
    TIMEOUT_MS,
    NioProcess,
    api,
    message,
    open_room,
    room_button,
    send_from_page,
    shot,
    token_url,
)
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import MatrixUser, WebServer

AXE = REPO_ROOT / "tests" / "web_client" / "vendor" / "axe.min.js"
"""Vendored for the tests only (scripts/vendor-web, pinned in vendor.lock.json); the server
never serves it, so it is put into the page by Playwright, as a person's extension would."""


def accept_invite(page: Page, room_name: str) -> None:
    page.locator("li.room.invite", has_text=room_name).get_by_role("button", name="Accept").click()
    open_room(page, room_name)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (the browser must be able to show the avatar)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def build_space(synapse: SynapseHarness, user: TestUser) -> dict[str, str]:
    """As the page's own account (another device): a space that names one room as its child
    while another room names the space as its parent, and a room in no space."""
    me = MatrixUser(synapse.url, user.user_id, user.password)
    try:
        via = {"via": [user.user_id.split(":", 1)[1]]}
        space = me.create_room(name="Team space", creation_content={"type": "m.space"})
        design = me.create_room(name="Design")
        ops = me.create_room(name="Ops")
        loose = me.create_room(name="Loose room")
        me.put_state(space, "m.space.child", design, via)
        me.put_state(ops, "m.space.parent", space, via | {"canonical": True})
        me.put_state(space, "m.room.avatar", "", {"url": me.upload(png(32, 32, (220, 120, 30)), "image/png")})
        me.send(design, "mockups are ready")
        return {"space": space, "design": design, "ops": ops, "loose": loose}
    finally:
        me.close()


def section(page: Page, title: str) -> Any:
    title_el = page.locator("h2.section-title", has_text=re.compile(f"^{title}$"))
    return page.locator(".roomlist section.section", has=title_el)


def choose_settings(page: Page) -> None:
    page.locator("nav.tabs button").nth(3).click()
    page.locator("#settings-title").wait_for()


def test_spaces_search_language_and_theme(synapse: SynapseHarness, signed_in: tuple[WebServer, Page],
                                          web_user: TestUser, nio_peer: Callable[..., NioProcess]) -> None:
    server, page = signed_in
    # The nio peer's device is not cross-signed: under MSC4153 (on by default) its messages
    # would be withheld. Searching encrypted rooms is the point here, not that rule.
    api(server, "PUT", "/api/encryption/settings", {"exclude_insecure_devices": False})
    build_space(synapse, web_user)
    peer = nio_peer()
    secret = peer.do("create_room", name="Secret plans", encrypted=True, invite=[web_user.user_id])["room_id"]

    # The rail shows the space; "home" groups its rooms under its name, the rest under
    # "Other rooms".
    rail = page.get_by_role("navigation", name="Workspaces")
    expect(rail.get_by_role("button", name=re.compile("^Team space"))).to_be_visible(timeout=TIMEOUT_MS)
    team = section(page, "Team space")
    expect(team.locator("[role=option]")).to_have_text([re.compile("Design"), re.compile("Ops")], timeout=TIMEOUT_MS)
    expect(section(page, "Other rooms")).to_contain_text("Loose room")
    expect(section(page, "Other rooms")).not_to_contain_text("Design")
    # The space's avatar comes through the server's authenticated media and is shown.
    avatar = rail.get_by_role("button", name=re.compile("^Team space")).locator("img")
    expect(avatar).to_have_attribute("src", re.compile(r"^/api/rooms/.+/avatar"), timeout=TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth === 32", arg=avatar.element_handle())
    accept_invite(page, "Secret plans")
    for i in range(8):
        peer.do("send", room=secret, body=f"filler {i}")
    peer.do("send", room=secret, body="the quarterly zebra report is late")
    # Enough after it that the newest messages are out of view once the page jumps to it.
    for i in range(30):
        peer.do("send", room=secret, body=f"later filler {i}")
    expect(message(page, "later filler 29")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".undecryptable")).to_have_count(0, timeout=TIMEOUT_MS)
    shot(page, "home-grouped")

    # Choosing the space shows its rooms only.
    rail.get_by_role("button", name=re.compile("^Team space")).click()
    expect(rail.get_by_role("button", name=re.compile("^Team space"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".roomlist [role=option]")).to_have_text([re.compile("Design"), re.compile("Ops")])
    expect(page.locator(".roomlist")).not_to_contain_text("Loose room")
    expect(page.locator(".roomlist")).not_to_contain_text("Secret plans")
    shot(page, "space-chosen")
    open_room(page, "Design")
    expect(message(page, "mockups are ready")).to_be_visible(timeout=TIMEOUT_MS)
    rail.get_by_role("button", name=re.compile("^Home")).click()
    expect(room_button(page, "Loose room")).to_be_visible()

    # Search finds the encrypted room's message (decrypted and indexed locally) and its hit
    # opens the room scrolled to it, marked.
    page.locator("nav.tabs button", has_text="Search").click()
    page.get_by_role("searchbox", name="Search messages").fill("zebra")
    page.get_by_role("search").get_by_role("button", name="Search").click()
    hit = page.locator(".results .result", has_text="zebra")
    expect(hit).to_contain_text("Secret plans", timeout=TIMEOUT_MS)
    expect(hit.locator("mark")).to_have_text(re.compile("zebra", re.I))
    shot(page, "search-hits")
    hit.click()
    page.locator(".room-head h1", has_text="Secret plans").wait_for()
    target = page.locator("article.message.focused")
    expect(target).to_contain_text("the quarterly zebra report is late")
    expect(target).to_be_in_viewport()
    expect(message(page, "later filler 29")).not_to_be_in_viewport()
    shot(page, "search-jumped")

    # Japanese at run time: the UI strings change, and dates come from Intl in Japanese.
    choose_settings(page)
    page.get_by_role("combobox", name="Language").select_option("ja")
    expect(page.locator("nav.tabs")).to_contain_text("設定")
    expect(page.locator("#settings-title")).to_have_text("設定")
    expect(page.get_by_role("navigation", name="ワークスペース")).to_be_visible()
    shot(page, "settings-ja")
    page.locator("nav.tabs button").first.click()
    open_room(page, "Design")
    # Every message of the test was sent today.
    want_ja = page.evaluate("new Intl.DateTimeFormat('ja', {dateStyle: 'full'}).format(Date.now())")
    expect(page.locator(".day").first).to_have_text(want_ja)
    assert "年" in want_ja
    expect(page.get_by_role("textbox", name="メッセージ")).to_be_visible()
    shot(page, "room-ja")
    choose_settings(page)
    page.get_by_role("combobox", name="言語").select_option("en")
    expect(page.locator("#settings-title")).to_have_text("Settings")
    want_en = page.evaluate("new Intl.DateTimeFormat('en', {dateStyle: 'full'}).format(Date.now())")

    # Dark and light at run time: the root's theme and the page's colours follow.
    def background() -> str:
        return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))

    page.get_by_role("radio", name="Light").check()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    light = background()
    page.get_by_role("radio", name="Dark").check()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = background()
    assert light != dark, (light, dark)
    assert luminance(dark) < luminance(light), (light, dark)
    shot(page, "settings-dark")
    page.locator("nav.tabs button").first.click()
    open_room(page, "Design")
    expect(page.locator(".day").first).to_have_text(want_en)
    # The UI extensions shown with the room follow the page's theme (their text is light on
    # the dark canvas, not the browser's default black on white).
    # These frames were mounted before the switch: the server pushed theme_change to them.
    frame_body = page.frame_locator("iframe[data-widget-id]").first.locator("body")
    expect(frame_body).to_have_css("color-scheme", "dark", timeout=TIMEOUT_MS)
    frame_text = str(frame_body.evaluate("(b) => getComputedStyle(b).color"))
    assert luminance(frame_text) > 128, frame_text
    shot(page, "room-dark")


def luminance(css: str) -> float:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_phone_layout_and_keyboard(synapse: SynapseHarness, signed_in: tuple[WebServer, Page],
                                   web_user: TestUser) -> None:
    """At 390 px the list and the room are separate views with a back button; on a desktop
    width everything is reachable from the keyboard: room switching, the timeline, dialogs
    that keep Tab inside and give focus back."""
    _, page = signed_in
    ids = build_space(synapse, web_user)
    expect(room_button(page, "Loose room")).to_be_visible(timeout=TIMEOUT_MS)
    me = MatrixUser(synapse.url, web_user.user_id, web_user.password)
    try:
        for i in range(5):
            me.send(ids["loose"], f"loose message {i}")
    finally:
        me.close()

    # Keyboard: Alt+Down walks the rooms in the order the list shows them.
    page.locator("body").press("Alt+ArrowDown")
    first = page.locator(".roomlist [role=option][aria-selected=true]")
    expect(first).to_be_focused()
    order = page.locator(".roomlist [role=option] .room-name").all_inner_texts()
    expect(page.locator(".room-head h1")).to_have_text(order[0])
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator(".room-head h1")).to_have_text(order[1])
    page.keyboard.press("Alt+ArrowUp")
    page.keyboard.press("Alt+ArrowUp")
    expect(page.locator(".room-head h1")).to_have_text(order[-1])
    # Ctrl+K goes to the filter; typing filters; Enter on an option opens it.
    page.keyboard.press("Control+k")
    expect(page.locator("#room-filter")).to_be_focused()
    page.keyboard.type("loose")
    expect(page.locator(".roomlist [role=option]")).to_have_count(1)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.locator(".roomlist [role=option]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".room-head h1")).to_have_text("Loose room")
    expect(message(page, "loose message 4")).to_be_visible(timeout=TIMEOUT_MS)
    # The timeline: arrows move between messages.
    message(page, "loose message 4").focus()
    page.keyboard.press("ArrowUp")
    expect(message(page, "loose message 3")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(message(page, "loose message 4")).to_be_focused()
    # A dialog: focus moves in, Tab stays inside, Esc closes and gives focus back.
    create = page.get_by_role("button", name="Create a room")
    create.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Create a room")
    expect(dialog).to_be_visible()
    inside = "document.activeElement && document.activeElement.closest('[role=dialog]') !== null"
    # Focus moves in once the dialog has rendered (an effect after paint). A function, not
    # the bare expression: Playwright re-polls a bare expression with eval() inside the page,
    # which the page's CSP refuses whenever the first look comes out false.
    page.wait_for_function(f"() => {inside}")
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate(inside), "Tab left the dialog"
    for _ in range(12):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside), "Shift+Tab left the dialog"
    shot(page, "dialog-keyboard")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(create).to_be_focused()
    page.locator("#room-filter").fill("")

    # Attaching: the upload shows its progress while the bytes go (the network is slowed
    # through the DevTools protocol so there is a moment to see it), then the file is sent.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 512 * 1024})
    page.locator("form.composer input[type=file]").set_input_files(
        files=[{"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"k" * 3_000_000}])
    bar = page.get_by_role("progressbar", name="Upload progress of big.bin")
    bar.wait_for()
    page.wait_for_function("bar => bar.value > 0 && bar.value < bar.max", arg=bar.element_handle())
    expect(page.locator(".upload")).to_contain_text("%")
    shot(page, "upload-progress")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    expect(page.locator("article.message a.file", has_text="big.bin")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".upload")).to_have_count(0)
    cdp.detach()

    # The phone: the list alone, then the room alone, then back.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("button", name="Back to the room list").first.click()
    expect(page.locator("aside.sidebar")).to_be_visible()
    expect(page.locator("main.main")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the list is wider than the phone"
    shot(page, "phone-list")
    open_room(page, "Loose room")
    expect(page.locator("aside.sidebar")).to_be_hidden()
    expect(message(page, "loose message 4")).to_be_visible()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the room is wider than the phone"
    send_from_page(page, "sent from a phone")
    expect(message(page, "sent from a phone")).to_be_visible(timeout=TIMEOUT_MS)
    shot(page, "phone-room")
    page.get_by_role("button", name="Back to the room list").first.click()
    expect(page.locator("aside.sidebar")).to_be_visible()
    expect(page.locator("main.main")).to_be_hidden()
    # Another screen is a view of its own too, with its own way back.
    choose_settings(page)
    expect(page.locator("aside.sidebar")).to_be_hidden()
    shot(page, "phone-settings")
    page.get_by_role("button", name="Back to the room list").first.click()
    expect(page.locator("aside.sidebar")).to_be_visible()


# -- axe-core ---------------------------------------------------------------------------


def axe(page: Page, screen: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on what the page shows now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, so the page's CSP (scripts from itself only)
        # does not apply to the test's own tool; the page's code is unchanged.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return {violations: r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}))};
    }""")
    return [v | {"screen": screen} for v in result["violations"] if v["impact"] in ("serious", "critical")]


def set_theme(page: Page, theme: str) -> None:
    choose_settings(page)
    page.get_by_role("radio", name=theme.capitalize()).check()
    expect(page.locator("html")).to_have_attribute("data-theme", theme)


def test_axe_finds_nothing_serious_on_any_screen(synapse: SynapseHarness, signed_in: tuple[WebServer, Page],
                                                 web_user: TestUser) -> None:
    _, page = signed_in
    build_space(synapse, web_user)
    expect(room_button(page, "Design")).to_be_visible(timeout=TIMEOUT_MS)
    found: list[dict[str, Any]] = []
    for theme in ("light", "dark"):
        set_theme(page, theme)
        found += axe(page, f"settings-{theme}")
        page.locator("nav.tabs button").first.click()
        page.get_by_role("navigation", name="Workspaces").get_by_role("button", name=re.compile("^Home")).click()
        found += axe(page, f"room-list-{theme}")
        shot(page, f"axe-room-list-{theme}")
        open_room(page, "Design")
        send_from_page(page, f"**bold** message in {theme}")
        expect(message(page, f"bold message in {theme}").locator("strong")).to_be_visible(timeout=TIMEOUT_MS)
        # The composer's preview: the markdown extension's sanitized rendering, in the page.
        page.get_by_role("textbox", name="Message").fill("*slanted* and `code`")
        page.get_by_role("button", name="Preview").click()
        preview = page.get_by_role("region", name="Preview")
        expect(preview.locator("em")).to_have_text("slanted", timeout=TIMEOUT_MS)
        expect(preview.locator("code")).to_have_text("code")
        found += axe(page, f"room-{theme}")
        shot(page, f"axe-room-{theme}")
        page.get_by_role("textbox", name="Message").press("Escape")
        expect(preview).to_have_count(0)
        page.get_by_role("textbox", name="Message").fill("")
        page.get_by_role("button", name="Create a room").click()
        expect(page.get_by_role("dialog")).to_be_visible()
        found += axe(page, f"dialog-{theme}")
        shot(page, f"axe-dialog-{theme}")
        page.keyboard.press("Escape")
        page.locator("nav.tabs button", has_text="Search").click()
        page.get_by_role("searchbox", name="Search messages").fill("mockups")
        page.get_by_role("search").get_by_role("button", name="Search").click()
        expect(page.locator(".results .result")).to_have_count(1, timeout=TIMEOUT_MS)
        found += axe(page, f"search-{theme}")
        page.locator("nav.tabs button", has_text="Extensions").click()
        expect(page.locator("article.extension").first).to_be_visible()
        found += axe(page, f"extensions-{theme}")
        shot(page, f"axe-extensions-{theme}")
    assert found == [], json.dumps(found, indent=1)


def test_axe_on_the_login_page(web_server: WebServer, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(token_url(web_server))
    page.locator("form").first.wait_for()
    found = axe(page, "login-system")
    page.emulate_media(color_scheme="dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    found += axe(page, "login-dark")
    shot(page, "login-dark")
    page.emulate_media(color_scheme="light")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    found += axe(page, "login-light")
    shot(page, "login-light")
    assert found == [], json.dumps(found, indent=1)
    # The scan is live: an image without a text alternative, put in through the DOM, is caught.
    page.evaluate("document.querySelector('form')"
                  ".append(Object.assign(document.createElement('img'), {src: '/x.png'}))")
    assert "image-alt" in {v["id"] for v in axe(page, "login-broken")}
