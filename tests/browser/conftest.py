"""Fixtures of the browser tests: one Chromium per test session, a new context per test (its
every request recorded and checked at teardown), a real kumix web server against the
session's Synapse, a page signed in through the printed token URL, and nio peers.

    browser        session: Debian's Chromium
    context        a fresh browser context (1200x800); fails the test if any request of
                   any of its pages or frames went to a host other than 127.0.0.1
    vault_env      a 0600 vault passphrase file for the server (no keyring, no prompt)
    web_server     a started kumix web server, not logged in (the login page shows)
    web_user       the fresh Synapse user the signed-in fixtures log in as
    signed_in      (server, page): the server logged in as web_user, the page opened on
                   the token URL and showing the room list
    nio_peer       a factory: nio_peer(user=None) starts a matrix-nio process (a fresh
                   user unless one is given); all are stopped at teardown
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.harness import TIMEOUT_MS, NioProcess, RequestRecorder, launch, log_in_through_api, open_signed_in
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import WebServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = []
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.synapse)
            ours.append(item)
    # Last in the session, together: Playwright's sync API keeps an event loop running in the
    # main thread while `browser` is open (package scope, below), and an asyncio test run in
    # between would fail ("cannot be called from a running event loop").
    mine = set(ours)
    rest = [item for item in items if item not in mine]
    items[:] = rest + ours


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package scope, not session: the sync API keeps an event loop running in this thread
    # while Playwright is up, and every asyncio test collected after this package would then
    # fail with "asyncio.run() cannot be called from a running event loop".
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 800}, locale="en-US", accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    recorder = RequestRecorder()
    recorder.attach(ctx)
    try:
        yield ctx
    finally:
        ctx.close()
    foreign = recorder.foreign()
    assert not foreign, f"the page made requests to hosts other than 127.0.0.1: {foreign[:20]}"
    assert recorder.urls, "the recorder saw no request at all: it is not attached"


@pytest.fixture
def vault_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "vault-passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"browser tests vault passphrase\n")
    os.close(fd)
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(path)}


@pytest.fixture
def web_server(data_dir: Path, vault_env: dict[str, str]) -> Iterator[WebServer]:
    server = WebServer(data_dir, vault_env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def web_user(synapse: SynapseHarness) -> TestUser:
    return synapse.user("web")


@pytest.fixture
def signed_in(synapse: SynapseHarness, web_server: WebServer, web_user: TestUser,
              context: BrowserContext) -> tuple[WebServer, Page]:
    log_in_through_api(web_server, synapse.url, web_user)
    return web_server, open_signed_in(context, web_server)


@pytest.fixture
def nio_peer(synapse: SynapseHarness, tmp_path: Path) -> Iterator[Callable[..., NioProcess]]:
    started: list[NioProcess] = []

    def start(user: TestUser | None = None) -> NioProcess:
        peer = NioProcess(synapse.url, user or synapse.user("peer"), tmp_path / f"nio-{len(started)}")
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()
