"""`kumix ext …`: list, inspect, enable, disable, grant, validate and call extensions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kumix.cli import call_command
from kumix.cli.context import CliContext
from kumix.cli.output import emit_json, emit_table, printable
from kumix.core.errors import InvalidManifest

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from kumix.app.extensions import ExtensionStatus
    from kumix.app.kumix import Kumix


SUBCOMMANDS = ("list", "info", "enable", "disable", "grant", "validate", "call")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser,
             only: str | None = None) -> None:
    """`only`: the one subcommand the command line names (`main` scans for it), whose parser
    alone is built: building the others, each with the global options, was most of the
    parser cost of `kumix ext list`."""
    ext = subparsers.add_parser("ext", help="list, inspect, enable and call extensions", parents=[common])
    sub = ext.add_subparsers(dest="ext_command", metavar="COMMAND", required=True)

    def wanted(name: str) -> bool:
        return only is None or only == name

    if wanted("list"):
        p = sub.add_parser("list", help="every discovered extension and its state", parents=[common])
        p.set_defaults(handler=cmd_list)

    for name, summary, handler in (
        ("info", "details of one extension", cmd_info),
        ("enable", "enable an extension the policy allows", cmd_enable),
        ("disable", "disable an extension", cmd_disable),
    ):
        if wanted(name):
            p = sub.add_parser(name, help=summary, parents=[common])
            p.add_argument("id", help="extension id, as shown by 'kumix ext list'")
            p.set_defaults(handler=handler)

    if wanted("grant"):
        p = sub.add_parser(
            "grant",
            help="grant one capability to an external extension",
            description="Record that you allow an external (untrusted) extension one capability. "
            "The policy must allow it too; strict refuses an external extension until every "
            "capability it declares is granted.",
            parents=[common],
        )
        p.add_argument("id", help="id of an external extension")
        p.add_argument("capability", help="one capability its manifest declares, e.g. render.markdown")
        p.set_defaults(handler=cmd_grant)

    if wanted("validate"):
        p = sub.add_parser("validate", help="check an extension directory or manifest", parents=[common])
        p.add_argument("path", type=Path, help="an extension directory or its manifest.json")
        p.set_defaults(handler=cmd_validate)

    if wanted("call"):
        call_command.register(sub, common)


def _status_row(status: ExtensionStatus) -> list[str]:
    manifest = status.record.manifest
    return [
        printable(status.id, 40),
        manifest.kind if manifest else "?",
        status.record.origin,
        status.state,
        printable(status.reason, 100),
    ]


def cmd_list(ctx: CliContext) -> int:
    def use(k: Kumix) -> tuple[str, list[ExtensionStatus]]:
        return k.policy().name, k.extensions()

    policy_name, statuses = ctx.local(use)
    if ctx.json:
        emit_json({"policy": policy_name, "extensions": [s.to_json() for s in statuses]})
    else:
        emit_table([_status_row(s) for s in statuses], ["ID", "KIND", "ORIGIN", "STATE", "REASON"])
    return 0


def cmd_info(ctx: CliContext) -> int:
    def use(k: Kumix) -> tuple[ExtensionStatus, dict[str, object]]:
        return k.extension(ctx.args.id), k.figures(ctx.args.id)

    status, figures = ctx.local(use)
    doc = status.to_json()
    if status.record.manifest is not None:
        doc["manifest"] = status.record.manifest.to_json()
    doc["stats"] = figures
    if ctx.json:
        emit_json(doc)
        return 0
    for key in ("id", "state", "reason", "origin", "path", "name", "version", "kind"):
        if key in doc:
            sys.stdout.write(f"{key:>18}: {printable(str(doc[key]))}\n")
    if status.record.manifest is not None:
        m = status.record.manifest
        sys.stdout.write(f"{'capabilities':>18}: {', '.join(m.capabilities) or '-'}\n")
        if m.kind == "proc":
            sys.stdout.write(f"{'methods':>18}: {', '.join(m.methods) or '-'}\n")
            sys.stdout.write(f"{'timeout (ms)':>18}: {status.effective_timeout_ms}\n")
    if status.record.external:
        sys.stdout.write(f"{'granted':>18}: {', '.join(sorted(status.granted)) or '-'}\n")
    if "problem" in doc:
        sys.stdout.write(f"{'problem':>18}: {printable(str(status.record.problem), 400)}\n")
    stats = doc["stats"]
    if stats:
        for key, value in stats.items():
            sys.stdout.write(f"{key:>18}: {_figure_text(value)}\n")
    return 0


def _figure_text(value: object) -> str:
    """`errors`, `limits` and `latency_ms` are maps: `name value` pairs, not Python reprs."""
    if isinstance(value, dict):
        return ", ".join(f"{printable(str(k), 40)} {_figure_text(v)}" for k, v in value.items()) or "-"
    return printable(str(value))


def _changed(ctx: CliContext, status: ExtensionStatus, verb: str) -> int:
    if ctx.json:
        emit_json(status.to_json())
    else:
        sys.stdout.write(f"{status.id}: {verb} ({status.state})\n")
    return 0


def cmd_enable(ctx: CliContext) -> int:
    return _changed(ctx, ctx.run(lambda k: k.enable_extension(ctx.args.id)), "enabled")


def cmd_disable(ctx: CliContext) -> int:
    return _changed(ctx, ctx.run(lambda k: k.disable_extension(ctx.args.id)), "disabled")


def cmd_grant(ctx: CliContext) -> int:
    status = ctx.local(lambda k: k.grant(ctx.args.id, ctx.args.capability))
    return _changed(ctx, status, f"granted {ctx.args.capability}")


def cmd_validate(ctx: CliContext) -> int:
    from kumix.app.extensions import validate_extension_dir

    record = validate_extension_dir(ctx.args.path)
    if record.manifest is None:
        problem = record.problem
        raise InvalidManifest(str(problem), details=problem.as_dict() if problem else None)
    if ctx.json:
        emit_json({"valid": True, "id": record.id, "manifest": record.manifest.to_json()})
    else:
        sys.stdout.write(f"{record.id}: valid {record.manifest.kind} extension {record.manifest.version}\n")
    return 0
