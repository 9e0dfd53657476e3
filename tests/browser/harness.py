"""What the browser tests share: Debian's Chromium through Playwright, a recorder of every
request a page makes (anything not on 127.0.0.1 fails the test), screenshots, a real kumix
web server (tests/web/web_harness.py) signed in as a fresh test user, and the other side of
a conversation as a separate matrix-nio process (tests/matrix/nio_peer.py) driven over
stdin/stdout JSON lines.

Playwright's sync API is used: tests are plain functions, the server runs its own event
loop in a thread, the peer in its own process.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, WebSocket

from tests.synapse_harness import TestUser
from tests.web.web_harness import WebServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = REPO_ROOT / "test-results" / "screenshots"
LOCAL_HOST = "127.0.0.1"
LOCAL_SCHEMES = {"data", "blob", "about"}
"""Schemes that never leave the page: a data: or blob: URL is bytes the page already has."""

TIMEOUT_MS = 30_000
"""Playwright's wait for anything on the page (an element, a navigation): generous for a
2-core machine shared with other test runs; never a timing assertion."""


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, never a browser Playwright downloaded."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# -- the request recorder ---------------------------------------------------------------


@dataclass
class RequestRecorder:
    """Every request of every page and frame of one browser context (the context's own
    `request` event covers popups and frames too; WebSocket handshakes are recorded from each
    page's `websocket` event, which `request` does not report)."""

    urls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._request)
        context.on("page", self._page)
        for page in context.pages:
            self._page(page)

    def _page(self, page: Page) -> None:
        page.on("websocket", self._websocket)

    def _request(self, request: Request) -> None:
        self._add(request.url)

    def _websocket(self, ws: WebSocket) -> None:
        self._add(ws.url)

    def _add(self, url: str) -> None:
        with self.lock:
            self.urls.append(url)

    def foreign(self) -> list[str]:
        """Requests that went anywhere but 127.0.0.1."""
        with self.lock:
            return [u for u in self.urls if not is_local(u)]


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == LOCAL_HOST


# -- screenshots ------------------------------------------------------------------------


def current_test() -> str:
    """The running test's name (pytest sets PYTEST_CURRENT_TEST), safe as a file name."""
    raw = os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0].split("::")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-") or "test"


def shot(page: Page, name: str) -> Path:
    """Save what the user sees to test-results/screenshots/<test>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{current_test()}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), animations="disabled", caret="initial")
    return path


# -- the kumix web server and a signed-in page --------------------------------------------


def token_url(server: WebServer) -> str:
    """The URL `kumix serve` prints."""
    return f"{server.origin}/?token={server.token}"


def log_in_through_api(server: WebServer, homeserver: str, user: TestUser) -> dict[str, Any]:
    """What the login page does, through the API (for tests that are not about login)."""
    with server.client() as c:
        r = c.post("/api/login", json={"homeserver": homeserver, "user": user.user_id, "password": user.password})
        assert r.status_code == 200, r.text
        who: dict[str, Any] = r.json()
        return who


def api(server: WebServer, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call of the server's API with a fresh session (as a second tab would)."""
    with server.client() as c:
        r = c.request(method, path, json=body) if body is not None else c.request(method, path)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


def open_signed_in(context: BrowserContext, server: WebServer) -> Page:
    """Open the printed token URL in a new page and wait for the signed-in shell."""
    page = context.new_page()
    page.goto(token_url(server))
    page.locator("aside.sidebar").wait_for()
    # The token left the address bar (the server answered 303 to /).
    assert "token=" not in page.url, page.url
    return page


def room_button(page: Page, name: str) -> Any:
    return page.locator(".roomlist [role=option]", has_text=name).first


def open_room(page: Page, name: str) -> None:
    room_button(page, name).click()
    page.locator(".room-head h1", has_text=name).wait_for()


def message(page: Page, text: str) -> Any:
    """The message article whose own text (the latest of an edited message; not a quote
    of it in a reply) contains this text."""
    own_text = page.locator(".content > :is(p.text, div.html)", has_text=text)
    return page.locator("article.message").filter(has=own_text).last


def send_from_page(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


# -- the other side: matrix-nio in its own process ----------------------------------------


class PeerError(AssertionError):
    pass


class NioProcess:
    """tests/matrix/nio_peer.py in a subprocess, driven synchronously: `do(op, **args)`
    writes one JSON line and waits for its one-line answer (a reader thread feeds a queue,
    so a peer that hangs fails the test after `timeout` instead of blocking it)."""

    def __init__(self, homeserver: str, user: TestUser, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.matrix.nio_peer", homeserver, user.user_id, user.password, str(store)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True, bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="nio-peer-reader", daemon=True)
        self.reader.start()
        hello = self._answer(120)
        if not hello.get("ready"):
            raise PeerError(f"the nio peer did not start: {hello}")
        self.device_id: str = hello["device_id"]

    @property
    def user_id(self) -> str:
        return self.user.user_id

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise PeerError(f"the nio peer gave no answer in {timeout} s") from None
        if not line:
            raise PeerError(f"the nio peer exited ({self.proc.poll()})")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def do(self, op: str, timeout: float = 90, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        result = self._answer(timeout)
        if "error" in result:
            seen = ""
            if op == "wait_event":
                # What did arrive, to say why the awaited event did not.
                events = self.do("seen", room=args.get("where", {}).get("room_id"))["events"]
                brief = [{k: v for k, v in e.items() if v is not None} for e in events[-12:]]
                seen = "; received: " + json.dumps(brief)
            raise PeerError(f"{op} {json.dumps(args)[:300]}: {result['error']}{seen}")
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.do("stop", timeout=30)
                self.proc.wait(30)
            except (PeerError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(30)
        self.reader.join(30)
