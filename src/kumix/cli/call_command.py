"""`kumix ext call`: one call through the governed proc host, and the figures `ext info` shows.

The call runs through `ExtensionCaller`, the same path every front end uses: governance,
limits, a worker forked from a fresh fork server. `kumix ext info` shows the figures every
Kumix process using this data directory saved when its sessions ended
(`kumix.store.extension_stats`), with the limits that apply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionStatus
from kumix.cli.context import CliContext
from kumix.cli.output import emit_json
from kumix.core.errors import BadRequest
from kumix.extensions.proc.eventloop import new_event_loop
from kumix.extensions.proc.stats import latency_summary


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


def stats_for(ctx: CliContext, status: ExtensionStatus) -> dict[str, Any]:
    manifest = status.record.manifest
    if manifest is None or manifest.kind != "proc":
        return {}
    limits = ctx.policy.proc
    store = ctx.extensions.stats_store
    saved = store.load(status.id) if store is not None else {}
    figures: dict[str, Any] = {key: saved.get(key, 0) for key in ("calls", "ok", "timeouts", "crashes", "restarts")}
    figures["errors"] = dict(sorted(saved.get("errors", {}).items()))
    if saved.get("latencies"):
        figures["latency_ms"] = latency_summary(saved["latencies"])
    return {
        "scope": "saved by every kumix process using this data directory, when its sessions ended",
        **figures,
        "limits": {
            "timeoutMs": ctx.policy.effective_timeout_ms(manifest),
            "maxInputBytes": limits.max_input_bytes,
            "maxOutputBytes": limits.max_output_bytes,
            "maxMemoryMb": limits.max_memory_mb,
            "maxConcurrency": limits.max_concurrency,
            "maxQueue": limits.max_queue,
            "maxCrashes": limits.max_crashes,
            "crashWindowSeconds": limits.crash_window_seconds,
            "requireConfinement": limits.require_confinement,
        },
    }


def _parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"--params is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadRequest("--params must be a JSON object")
    return params


async def _call(ctx: CliContext, params: dict[str, Any]) -> Any:
    async with ExtensionCaller(ctx.extensions, ctx.settings) as caller:
        return await caller.call(ctx.args.id, ctx.args.method, params)


def cmd_call(ctx: CliContext) -> int:
    params = _parse_params(ctx.args.params)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result = runner.run(_call(ctx, params))
    emit_json(result)
    return 0
