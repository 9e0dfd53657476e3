"""`kumix demo`: a local homeserver, two users, a few rooms, a bot, and a live room.

Everything lives under `<data dir>/demo/`: the Synapse directory (SQLite, loopback only),
each user's Kumix data directory, the demo users' passwords and a generated vault
passphrase file (all 0600). A second run reuses all of it. Ctrl-C stops the tail, the bot
and Synapse; no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from kumix.app.homeserver import Homeserver, HomeserverConfig, free_port
from kumix.app.markdown import extension_renderer
from kumix.app.matrix_session import MatrixService, Session
from kumix.cli.context import CliContext
from kumix.cli.matrix_commands import _print_event
from kumix.core.errors import BadRequest, StateCorrupt
from kumix.core.models import Event
from kumix.store.database import Database
from kumix.store.vault import ENV_PASSPHRASE_FILE

DEMO_ROOM = "Kumix demo"
SEED_MESSAGES = (
    "Welcome to **Kumix**! This room is *end-to-end encrypted*.",
    "Markdown works: `inline code`, [links](https://matrix.org) and lists:\n\n- one\n- two",
    "Type in another client, or run `kumix send`, and the bot answers.",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("demo", help="run a local homeserver with demo users, rooms and a bot", parents=[common])
    p.add_argument("--port", type=_port, default=0,
                   help="homeserver port, 1-65535 (default: reuse the last one, or a free one)")
    p.set_defaults(handler=cmd_demo)


def _port(text: str) -> int:
    """A TCP port, checked here: Synapse would only fail later, quoting its own traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:40]!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def _say(message: str) -> None:
    sys.stderr.write(f"kumix demo: {message}\n")
    sys.stderr.flush()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


class DemoState:
    """seed.json: demo users' passwords, the port, and which rooms were seeded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "seed.json"
        self.doc: dict[str, Any] = {}
        fix = f"remove {root} to start the demo afresh"
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StateCorrupt(f"demo state {self.path} is unreadable ({exc}); {fix}") from None
            if not isinstance(doc, dict):
                raise StateCorrupt(f"demo state {self.path} is not a JSON object; {fix}")
            self.doc = doc

    def save(self) -> None:
        _write_private(self.path, json.dumps(self.doc, indent=2))

    def vault_env(self) -> dict[str, str]:
        # Demo data is throwaway, so its vaults use a generated passphrase file; a real
        # account uses the keyring or the user's own passphrase (see docs/matrix.md).
        passfile = self.root / "vault-passphrase"
        if not passfile.exists():
            _write_private(passfile, secrets.token_urlsafe(24) + "\n")
        return {ENV_PASSPHRASE_FILE: str(passfile)}


def cmd_demo(ctx: CliContext) -> int:
    ctx.settings.ensure_data_dir()  # a data dir that cannot be one is a typed error
    root = ctx.settings.data_dir / "demo"
    try:
        root.mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BadRequest(f"demo directory {str(root)!r} cannot be used: {exc.strerror}") from None
    state = DemoState(root)
    port = ctx.args.port or int(state.doc.get("port", 0)) or free_port()
    if not ctx.args.port and state.doc.get("port"):
        port = _port_if_free(port)
    hs = Homeserver(HomeserverConfig(root / "homeserver", port))
    reusing = bool(state.doc.get("seeded"))
    _say(("reusing demo data in " if reusing else "creating demo data in ") + str(root))
    _say(f"starting Synapse on {hs.url} …")
    hs.start()
    try:
        state.doc["port"] = port
        users = state.doc.setdefault("users", {})
        for name in ("alice", "bot"):
            if name not in users:
                password = secrets.token_urlsafe(16)
                users[name] = {"user_id": hs.register(name, password), "password": password}
        state.save()
        asyncio.run(_run_demo(ctx, hs, state))
    finally:
        _say("stopping Synapse …")
        hs.stop()
    return 0


def _port_if_free(port: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


async def _service(state: DemoState, name: str, hs: Homeserver, **kw: Any) -> MatrixService:
    data = state.root / f"kumix-{name}"
    data.mkdir(exist_ok=True, mode=0o700)
    service = MatrixService(data, Database(data / "state.db"), env=state.vault_env(), interactive=False,
                            command="kumix demo", **kw)
    account = service.timeline.account()
    if account is not None and account.homeserver != hs.url:
        service.forget_local()  # the port changed: that session points at a dead address
        account = None
    if account is None:
        user = state.doc["users"][name]
        # The demo's accounts are used by the demo alone: a device logging in again (the
        # old one was forgotten) replaces the identity nobody holds the keys of any more, so
        # that "exclude insecure devices" still lets the bot's messages through.
        await service.login_password(hs.url, user["user_id"], user["password"], reset_cross_signing=True)
    return service


async def _seed(alice: Session, bot: Session, state: DemoState) -> str:
    if state.doc.get("seeded"):
        return str(state.doc["rooms"]["demo"])
    _say("seeding rooms and messages …")
    bot_id = state.doc["users"]["bot"]["user_id"]
    demo = await alice.create_room(name=DEMO_ROOM, topic="Talk to the bot (encrypted)", encrypted=True,
                                   invite=(bot_id,))
    general = await alice.create_room(name="General", topic="An unencrypted room", encrypted=False, invite=(bot_id,))
    direct = await alice.create_direct(bot_id)
    await bot.sync()
    for room_id in (demo, general, direct):
        await bot.join(room_id)
    await alice.sync()
    for text in SEED_MESSAGES:
        await alice.send_text(demo, text)
    await bot.send_text(general, "Hello from the **General** room.")
    state.doc["rooms"] = {"demo": demo, "general": general, "direct": direct}
    state.doc["seeded"] = True
    state.save()
    return demo


async def _bot_loop(bot: Session, room_id: str, inbox: asyncio.Queue[Event], stop: asyncio.Event) -> None:
    """Answer every text message of another user in the demo room."""
    me = bot.account.user_id
    while not stop.is_set():
        getter = asyncio.ensure_future(inbox.get())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (getter, stopper):
            fut.cancel()
        await asyncio.gather(getter, stopper, return_exceptions=True)
        if getter.cancelled():
            return
        ev = getter.result()
        if ev.room_id == room_id and ev.kind == "text" and ev.sender != me:
            await bot.send_text(room_id, f"🤖 You said: *{ev.body[:200]}*", notice=True)


async def _run_demo(ctx: CliContext, hs: Homeserver, state: DemoState) -> None:
    async with extension_renderer(ctx.extensions_if_loadable(), ctx.settings) as renderer:
        alice_service = await _service(state, "alice", hs, renderer=renderer, progress=_say)
        bot_service = await _service(state, "bot", hs, renderer=renderer)
        try:
            async with alice_service.session() as alice, bot_service.session() as bot:
                await alice.sync()
                await bot.sync()
                room_id = await _seed(alice, bot, state)
                for ev in alice_service.timeline.events(room_id, limit=20):
                    _print_event(ev, ctx.json)
                inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)

                def to_bot(ev: Event) -> None:
                    with contextlib.suppress(asyncio.QueueFull):
                        inbox.put_nowait(ev)

                bot.add_listener(to_bot)
                alice.add_listener(lambda ev: _print_event(ev, ctx.json) if ev.room_id == room_id else None)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                _say(f"logged in as {alice.account.user_id}; tailing '{DEMO_ROOM}' (Ctrl-C to stop)")
                # `kumix send` on alice's data hands the message to this process, which holds
                # her device (docs/matrix.md, "One process per device").
                _say("to write as alice from another terminal: "
                     f"KUMIX_DATA_DIR={shlex.quote(str(alice_service.paths.data_dir))} "
                     f"KUMIX_VAULT_PASSPHRASE_FILE={shlex.quote(state.vault_env()[ENV_PASSPHRASE_FILE])} "
                     f"kumix send {shlex.quote(room_id)} 'hello **bot**'")
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(alice.run(stop))
                        tg.create_task(bot.run(stop))
                        tg.create_task(_bot_loop(bot, room_id, inbox, stop))
                        await alice.send_text(room_id, "Hello bot, are you there?")
                finally:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        loop.remove_signal_handler(sig)
        finally:
            alice_service.db.close()
            bot_service.db.close()
