"""`kumix serve`: the web client's server on 127.0.0.1 (kumix.web does the work)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from kumix.cli.context import CliContext


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is between 0 and 65535")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "serve", parents=[common],
        help="serve the web client on 127.0.0.1 (prints the URL to open; Ctrl-C to stop)")
    p.add_argument("--port", type=_port, default=None,
                   help="TCP port on 127.0.0.1 (default: a free one); a port in use is refused")
    p.add_argument("--open", action="store_true",
                   help="open the URL in the default browser (through a 0600 file, so the token is not in argv)")
    p.set_defaults(handler=cmd_serve)


def _announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _notice(line: str) -> None:
    sys.stderr.write(f"kumix: {line}\n")
    sys.stderr.flush()


def cmd_serve(ctx: CliContext) -> int:
    from kumix.web.launch import run_serve

    ctx.settings.ensure_data_dir()
    asyncio.run(run_serve(ctx.settings, port=ctx.args.port, open_browser=ctx.args.open, announce=_announce,
                          notice=_notice))
    return 0
