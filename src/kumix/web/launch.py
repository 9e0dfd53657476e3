"""`kumix serve`: the server's lifecycle, from binding the port to the last closed connection.

Order matters: the account (and with it the device lock) is opened first, so a second
server for the same data directory is refused before it prints a URL (unless the vault is
locked: then the server starts without the device, the page asks for the passphrase, and
`POST /api/vault/unlock` takes the device); then the port is
bound, the URL printed and written to the 0600 URL file, the browser (with `--open`)
handed that file — never the token on a command line — and the server runs until Ctrl-C
or SIGTERM. Stopping closes the server, then the Matrix session, then the extension host
inside `Kumix.open`; no task or worker process outlives `run_serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import webbrowser
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path

from kumix.app.kumix import Kumix
from kumix.app.settings import Settings
from kumix.web.routes import build_app
from kumix.web.server import bind, port_of, serve
from kumix.web.sessions import Sessions

URL_FILE = "serve-url.html"


def write_url_file(data_dir: Path, url: str) -> Path:
    """A 0600 page that sends the browser to `url` (as Jupyter does): the browser is
    started with this file's path, so the token is in no process's argv."""
    path = data_dir / URL_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={escape(url)}">'
                f'<title>Kumix</title><a href="{escape(url)}">Open Kumix</a>\n')
    return path


async def run_serve(settings: Settings, *, port: int | None, open_browser: bool,
                    announce: Callable[[str], None], notice: Callable[[str], None] | None = None,
                    env: Mapping[str, str] | None = None) -> None:
    async with Kumix.open(settings, env=env, interactive=False, notice=notice, command="kumix serve") as k:
        # The device first: a second server for this account is refused before any URL. A
        # vault sealed with a passphrase this process cannot read is unlocked in the page.
        if k.has_account() and not await k.resume() and notice is not None:
            notice("the credential vault is locked: open the URL and give its passphrase in the page")
        sock = bind(port)
        try:
            sessions = Sessions(port_of(sock))
            app, _ = build_app(k, sessions)
            url = sessions.url()
            url_file = write_url_file(settings.data_dir, url)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                announce(f"Kumix is at {url}")
                if open_browser:
                    # webbrowser starts the browser with the file's URL; the token stays in the file.
                    await asyncio.to_thread(webbrowser.open, url_file.as_uri())
                await serve(app, sock, stop)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                sessions.close_all()
                with contextlib.suppress(FileNotFoundError):
                    url_file.unlink()
        finally:
            sock.close()
