"""`kumix ext call`: one call through the governed proc host, and the figures `ext info` shows.

The call runs through `Kumix.call`, the same path every front end uses: governance,
limits, a worker forked from a fresh fork server. `kumix ext info` shows the figures every
Kumix process using this data directory saved when its sessions ended
(`kumix.store.extension_stats`), with the limits that apply.
"""

from __future__ import annotations

import argparse
import json

from kumix.cli.context import CliContext
from kumix.cli.output import emit_json
from kumix.core.errors import BadRequest

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "call",
        help="call a method of a proc extension",
        description="Call one method through the governed proc host. Prints the result as JSON; "
        "on failure exits 1 (with --json the error is printed as {\"error\": {code, message}}).",
        parents=[common],
    )
    p.add_argument("id", help="extension id, as shown by 'kumix ext list'")
    p.add_argument("method", help="one of the methods its manifest declares ('kumix ext info ID')")
    p.add_argument("--params", default="{}", help="JSON object of parameters (default {})")
    p.set_defaults(handler=cmd_call)


def _parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"--params is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadRequest("--params must be a JSON object")
    return params


def cmd_call(ctx: CliContext) -> int:
    params = _parse_params(ctx.args.params)
    result = ctx.run(lambda k: k.call(ctx.args.id, ctx.args.method, params), fast_loop=True, extensions=True)
    emit_json(result)
    return 0
