"""`kumix doctor`: which OS confinement layers proc workers get on this machine.

The layers are not guessed from kernel versions: a throwaway child is forked, confined exactly
as a worker would be, and asked to try a few forbidden things; this process stays unconfined.
The verdict follows the active policy: with `proc.requireConfinement` (strict) a missing layer
means proc workers are refused with `confinement_unavailable` — except a missing namespaces
layer when `proc.allowWithoutNamespaces` accepts the weaker mode ("weaker": every other layer
holds); without requireConfinement they start without the missing layers and say so on every
start. Exit status 1 when workers would be refused.
"""

from __future__ import annotations

import argparse
import sys

from kumix.cli.context import CliContext
from kumix.cli.output import emit_json, printable

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

LAYER_PURPOSE = {
    "no_new_privs": "no privilege gain through exec (setuid, file capabilities)",
    "unprivileged": "no capability left; as root host: each extension runs as a uid of its own",
    "namespaces": "own user, mount, IPC, network and PID namespaces: a root holding only the runtime, "
    "its extension dir (read-only) and its scratch dir; pid 1 of its own, no other process in sight",
    "task_limit": "a cap on the threads a worker holds at once (RLIMIT_NPROC in its own user namespace)",
    "landlock": "reads only its extension dir and the Python runtime; writes only its scratch dir",
    "seccomp": "an allowlist: no sockets, fork, exec, ptrace, mount, SysV IPC, xattrs, inotify, "
    "and no syscall it does not know",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="which OS confinement layers proc workers get on this machine",
        description=__doc__,
        parents=[common],
    )
    p.set_defaults(handler=cmd_doctor)


def _verdict(layers: dict[str, bool], required: bool, accept_weaker: bool) -> tuple[str, str]:
    from kumix.app.confinement_report import WEAKER_WITHOUT_NAMESPACES

    missing = {name for name, on in layers.items() if not on}
    if not missing:
        return "confined", "proc workers start fully confined"
    if required and accept_weaker and missing <= WEAKER_WITHOUT_NAMESPACES:
        return "weaker", ("proc workers start without their own namespaces, on every other layer "
                          "(policy accepts it: allowWithoutNamespaces)")
    if required:
        return "refused", "proc workers are refused with confinement_unavailable (policy requires confinement)"
    return "unconfined", "proc workers start without the missing layers, with a warning on every start"


def cmd_doctor(ctx: CliContext) -> int:
    from kumix.app.confinement_report import LAYERS, SIMULATE_ENV, start_probe
    from kumix.app.settings import load_policy

    # The probe child first (entry.py forked it before the command line was parsed, unless its
    # scan could not tell): it imports the confinement code and confines itself while this
    # process loads the policy.
    with ctx.early_probe or start_probe() as probe:
        policy = load_policy(ctx.settings.policy)
        result = probe.result()
    report = result.report
    required = policy.proc.require_confinement
    accept_weaker = policy.proc.allow_without_namespaces
    verdict, explanation = _verdict(report.layers, required, accept_weaker)
    doc: dict[str, Any] = {
        "policy": policy.name,
        "requireConfinement": required,
        "allowWithoutNamespaces": accept_weaker,
        "verdict": verdict,
        **result.to_json(),
    }
    if ctx.json:
        emit_json(doc)
    else:
        out = sys.stdout
        out.write(f"kernel {printable(result.kernel)}, Landlock ABI {result.landlock_abi}, "
                  f"seccomp API {result.seccomp_api}, host uid {result.host_uid}\n")
        for layer in LAYERS:
            on = report.layers.get(layer, False)
            why = LAYER_PURPOSE[layer] if on else printable(report.problems.get(layer, "unavailable"), 200)
            out.write(f"  {'active     ' if on else 'UNAVAILABLE'}  {layer:<13} {why}\n")
        if report.details.get("namespaces"):
            out.write(f"  namespaces entered: {', '.join(map(str, report.details['namespaces']))}\n")
        if "pid_in_namespace" in report.details:
            out.write(f"  pid inside its PID namespace: {report.details['pid_in_namespace']} "
                      "(the host kills and watches it by the pid its supervisor reports)\n")
        if "max_tasks" in report.details:
            out.write(f"  task limit: {report.details['max_tasks']} per {report.details.get('task_limit_scope')}\n")
        if result.checks:
            seen = ", ".join(f"{name}: {printable(value, 40)}" for name, value in result.checks.items())
            out.write(f"  confined probe tried: {seen}\n")
        out.write(f"policy {printable(policy.name)} (requireConfinement: {str(required).lower()}, "
                  f"allowWithoutNamespaces: {str(accept_weaker).lower()}): "
                  f"{explanation}\n")
        if any(SIMULATE_ENV in p for p in report.problems.values()):
            out.write(f"  (layers marked simulated come from {SIMULATE_ENV})\n")
    return 1 if verdict == "refused" else 0
