"""`kumix demo`: a local homeserver, two users, a few rooms, a bot, and a live room.

The use case (directories, seeding, the bot) is `kumix.app.demo`; this module parses the
arguments, prints the demo room live and stops everything on Ctrl-C: the tail, the bot
and Synapse; no process is left behind.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from kumix.cli.context import CliContext
from kumix.cli.matrix_commands import _print_event, until_interrupted

if TYPE_CHECKING:
    from kumix.app.demo import DemoServer, DemoState
    from kumix.app.kumix import Kumix


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


def cmd_demo(ctx: CliContext) -> int:
    import asyncio

    from kumix.app import demo

    state, hs = demo.prepare(ctx.settings, ctx.args.port or None)
    _say(("reusing demo data in " if state.seeded else "creating demo data in ") + str(state.root))
    _say(f"starting Synapse on {hs.url} …")
    hs.start()
    try:
        demo.register_users(state, hs)
        asyncio.run(until_interrupted(_run_demo(ctx, state, hs)))
    finally:
        _say("stopping Synapse …")
        hs.stop()
    return 0


async def _run_demo(ctx: CliContext, state: DemoState, hs: DemoServer) -> None:
    import asyncio

    from kumix.app import demo
    from kumix.core.models import TimelineUpdate

    async with demo.open_user(state, "alice", hs, ctx.settings, notice=_say) as alice, \
            demo.open_user(state, "bot", hs, ctx.settings) as bot:
        if not state.seeded:
            _say("seeding rooms and messages …")
        rooms = await demo.seed(alice, bot, state)
        for ev in await alice.history(rooms.demo, limit=20):
            _print_event(ev, ctx.json)
        async with alice.subscribe(rooms={rooms.demo}) as updates, asyncio.TaskGroup() as tg:
            await alice.start_live()
            await bot.start_live()
            bot_ready = asyncio.Event()
            tg.create_task(demo.run_bot(bot, rooms.demo, started=bot_ready.set))
            _announce(alice, state, rooms.demo)
            await bot_ready.wait()
            await alice.send_text(rooms.demo, demo.GREETING)
            async for update in updates:
                if isinstance(update, TimelineUpdate):
                    _print_event(update.event, ctx.json)


def _announce(alice: Kumix, state: DemoState, room_id: str) -> None:
    from kumix.app.demo import DEMO_ROOM, PASSPHRASE_FILE_VARIABLE

    _say(f"logged in as {alice.account().user_id}; tailing '{DEMO_ROOM}' (Ctrl-C to stop)")
    # `kumix send` on alice's data hands the message to this process, which holds her
    # device (docs/matrix.md, "One process per device").
    _say("to write as alice from another terminal: "
         f"KUMIX_DATA_DIR={shlex.quote(str(state.user_dir('alice')))} "
         f"KUMIX_VAULT_PASSPHRASE_FILE={shlex.quote(state.vault_env()[PASSPHRASE_FILE_VARIABLE])} "
         f"kumix send {shlex.quote(room_id)} 'hello **bot**'")
