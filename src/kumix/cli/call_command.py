"""`kumix ext call`: one call through the governed proc host (written with the proc host)."""

from __future__ import annotations

import argparse
from typing import Any

from kumix.app.extensions import ExtensionStatus
from kumix.cli.context import CliContext
from kumix.core.errors import Unavailable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("call", help="call a method of a proc extension", parents=[common])
    p.add_argument("id")
    p.add_argument("method")
    p.add_argument("--params", default="{}", help="JSON object of parameters")
    p.set_defaults(handler=cmd_call)


def stats_for(ctx: CliContext, status: ExtensionStatus) -> dict[str, Any]:
    return {}


def cmd_call(ctx: CliContext) -> int:
    raise Unavailable("the proc host is not available yet")
