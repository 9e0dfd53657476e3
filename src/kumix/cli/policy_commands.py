"""`kumix policy …` and `kumix schema export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kumix.cli.context import CliContext
from kumix.cli.output import emit_json, emit_table, printable
from kumix.core.errors import BadRequest

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

    from kumix.app.extensions import ExtensionStatus
    from kumix.app.kumix import Kumix

SCHEMA_FILES = ("manifest.schema.json", "policy.schema.json")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    policy = subparsers.add_parser("policy", help="show and check the active policy", parents=[common])
    sub = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    p = sub.add_parser("show", help="the active policy with every limit", parents=[common])
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser("check", help="which extension the policy allows, and why", parents=[common])
    p.set_defaults(handler=cmd_check)

    schema = subparsers.add_parser("schema", help="JSON Schemas for manifests and policies", parents=[common])
    sub = schema.add_subparsers(dest="schema_command", metavar="COMMAND", required=True)
    p = sub.add_parser("export", help="write the JSON Schema files into DIR", parents=[common])
    p.add_argument("dir", type=Path, help="directory to write into (created if missing)")
    p.set_defaults(handler=cmd_schema_export)


def cmd_show(ctx: CliContext) -> int:
    from kumix.app.settings import load_policy

    policy = load_policy(ctx.settings.policy)
    doc = policy.to_json()
    doc["source"] = policy.source
    if ctx.json:
        emit_json(doc)
        return 0
    sys.stdout.write(f"policy {doc['name']} ({printable(doc['source'])})\n")
    if doc["description"]:
        sys.stdout.write(f"  {printable(doc['description'], 300)}\n")
    sys.stdout.write(f"  capabilities: {', '.join(doc['capabilities']) or '(none)'}\n")
    for section in ("proc", "ui", "net"):
        for key, value in doc[section].items():
            sys.stdout.write(f"  {section}.{key}: {value}\n")
    return 0


def cmd_check(ctx: CliContext) -> int:
    from kumix.app.frame_egress import egress_summary

    def use(k: Kumix) -> tuple[str, list[tuple[ExtensionStatus, dict[str, Any] | None]]]:
        return k.policy().name, [(s, egress_summary(k.policy(), s)) for s in k.extensions()]

    policy_name, checked = ctx.local(use)
    rows: list[dict[str, Any]] = []
    for s, egress in checked:
        allowed = s.decision.allowed if s.decision else False
        row: dict[str, Any] = {"id": s.id, "allowed": allowed, "state": s.state, "reason": s.reason}
        if egress is not None:  # UI extensions: what their frame may reach over the network
            row["egress"] = egress
        rows.append(row)
    if ctx.json:
        emit_json({"policy": policy_name, "extensions": rows})
    else:
        emit_table(
            [
                [printable(str(r["id"]), 40), "yes" if r["allowed"] else "no", printable(str(r["reason"]), 100),
                 _egress_text(r.get("egress"))]
                for r in rows
            ],
            ["ID", "ALLOWED", "WHY", "EGRESS"],
        )
    return 0


def _egress_text(egress: dict[str, Any] | None) -> str:
    if egress is None:
        return "-"
    granted = [e["source"] for e in egress["connectSrc"]] or ["none"]
    refused = [e["source"] for e in egress["refused"]]
    return printable(" ".join(granted) + (f" (refused: {' '.join(refused)})" if refused else ""), 120)


def cmd_schema_export(ctx: CliContext) -> int:
    from kumix.app.settings import schema_bytes

    target: Path = ctx.args.dir
    if target.exists() and not target.is_dir():
        raise BadRequest(f"{target} exists and is not a directory")
    written = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in SCHEMA_FILES:
            data = schema_bytes(name)
            out = target / name
            tmp = target / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(out)
            written.append(str(out))
    except OSError as exc:
        # A parent that is a file, a read-only or virtual file system: the user's to fix.
        raise BadRequest(f"cannot write the schemas into {target}: {exc.strerror or exc}") from None
    if ctx.json:
        emit_json({"written": written})
    else:
        for path in written:
            sys.stdout.write(f"wrote {path}\n")
    return 0
