"""Entry point: parse arguments, run one command, map every failure to an exit code.

Exit codes: 0 success, 1 refused or failed (a typed Kumix error), 2 usage error,
130 interrupted. No traceback reaches the user unless KUMIX_DEBUG=1.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from kumix import __version__
from kumix.cli.output import emit_error
from kumix.core.errors import BadRequest, KumixError

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import NoReturn

    from kumix.app.confinement_report import RunningProbe
    from kumix.app.early_start import EarlyForkServer
    from kumix.cli.context import CliContext

# The command modules import only argparse-level code: each handler imports what it uses
# (the Matrix client, the extension host, jsonschema) when it runs, so `kumix --version`,
# `--help`, `ext list` or `policy show` never pay for nio (tests/test_cli_imports.py
# pins what each command leaves out). They are imported inside `run`'s Ctrl-C handling all the same.
def command_modules() -> list[ModuleType]:
    """Each module has `register(subparsers, common)`; order is the order in --help."""
    from kumix.cli import (
        demo_command,
        doctor_command,
        ext_commands,
        matrix_commands,
        policy_commands,
        serve_command,
        trust_commands,
    )

    # trust_commands after matrix_commands: it adds subcommands to `keys`.
    return [ext_commands, policy_commands, matrix_commands, trust_commands, serve_command, demo_command,
            doctor_command]


MODULE_OF = {"ext": "ext_commands", "policy": "policy_commands", "schema": "policy_commands",
             "demo": "demo_command", "doctor": "doctor_command"}
"""Commands whose module is known without importing the others; every other command word
is looked up in all modules (a Matrix command, or a typo that deserves the full usage)."""

_VALUE_OPTIONS = {"--data-dir", "--policy", "--extensions-dir"}


def command_word(argv: Sequence[str]) -> str | None:
    """The command of a command line: the first word that is neither an option nor the
    value of a global option."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg
    return None


def _modules_for(argv: Sequence[str]) -> list[ModuleType] | None:
    """Only the module of the command at hand: building every command's parser costs more
    than the rest of `kumix ext list` (~35 parsers, each copying the global options)."""
    name = MODULE_OF.get(command_word(argv) or "")
    if name is None:
        return None
    import importlib

    return [importlib.import_module(f"kumix.cli.{name}")]


def ext_subcommand(argv: Sequence[str]) -> str | None:
    """The `kumix ext` subcommand a command line names, for building its parser alone; None
    when the command is another or the word is not a subcommand (argparse then lists them all
    in its error), and whenever anything before it is not a global option spelt in full: help
    (`kumix ext -h list` lists them all too), an abbreviation (`--pol info list` makes `info`
    the policy's value), anything this scan would read otherwise than argparse."""
    words: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            words.append(arg)
            if len(words) == 2:
                break
        elif arg in _VALUE_OPTIONS:
            next(args, None)
        elif arg != "--json" and not arg.startswith(tuple(f"{option}=" for option in _VALUE_OPTIONS)):
            return None
    if len(words) < 2 or words[0] != "ext":
        return None
    from kumix.cli.ext_commands import SUBCOMMANDS

    return words[1] if words[1] in SUBCOMMANDS else None


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Handler = Callable[["CliContext"], int]


def _non_empty(text: str) -> str:
    """An empty value (`--data-dir "$UNSET"`) would silently mean the default data
    directory or policy, or the current directory as an extension root: refuse it."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command; SUPPRESS keeps a later one from
    overwriting an earlier one with its default."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        type=_non_empty,
        help="state directory (env KUMIX_DATA_DIR; default $XDG_DATA_HOME/kumix, else ~/.local/share/kumix)",
    )
    g.add_argument(
        "--policy",
        default=argparse.SUPPRESS,
        type=_non_empty,
        help="dev, strict or a policy file (env KUMIX_POLICY; default strict)",
    )
    g.add_argument(
        "--extensions-dir",
        action="append",
        default=argparse.SUPPRESS,
        type=_non_empty,
        metavar="DIR",
        help="extra root of external extensions, repeatable (env KUMIX_EXTENSIONS_PATH, ':'-separated)",
    )
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return common


class _Parser(argparse.ArgumentParser):
    """argparse with one addition: a usage error on a command line that asked for `--json`
    also prints the error as JSON (`bad_request`) on stdout, so a script reading stdout gets
    data it can parse. The text still goes to stderr and the exit code stays 2. Subparsers
    are created with the parent's class, so this holds for every command."""

    def error(self, message: str) -> NoReturn:
        if "--json" in _argv_in_use:
            emit_error(BadRequest(f"{self.prog}: {message}"), as_json=True)
        super().error(message)


_argv_in_use: list[str] = []
"""The arguments `main` is parsing (it can be called with a list other than sys.argv)."""


def build_parser(modules: list[ModuleType] | None = None, *, ext_only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `modules` only (the command at hand); `ext_only`:
    of `kumix ext`, only that subcommand (`ext_subcommand`)."""
    common = _common_options()
    parser = _Parser(
        prog="kumix",
        description="Kumix: a Matrix client whose features come from governed extensions.",
        epilog="Run 'kumix COMMAND --help' for the options of one command.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"kumix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in modules if modules is not None else command_modules():
        if ext_only is not None and module.__name__ == "kumix.cli.ext_commands":
            module.register(sub, common, only=ext_only)
        else:
            module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None, *, early: EarlyForkServer | None = None,
         probe: RunningProbe | None = None) -> int:
    """`early`: the fork server `kumix.cli.entry` launched for this command line, if it did;
    `probe`: the doctor's probe child it forked, if it did."""
    _argv_in_use[:] = list(sys.argv[1:] if argv is None else argv)
    if _argv_in_use == ["--version"]:
        sys.stdout.write(f"kumix {__version__}\n")  # what argparse's version action prints
        return EXIT_OK
    if early is None:
        from kumix.cli.early_launch import launch_for

        early = launch_for(_argv_in_use)  # `ext call`: the fork server boots while the rest starts
    try:
        return _run(argv, early, probe)
    finally:
        if early is not None:
            early.close()  # a no-op once the extension host adopted it
        if probe is not None:
            probe.close()  # a no-op once the doctor read it; kills it after a usage error


def _run(argv: Sequence[str] | None, early: EarlyForkServer | None, probe: RunningProbe | None) -> int:
    parser = build_parser(_modules_for(_argv_in_use), ext_only=ext_subcommand(_argv_in_use))
    args = parser.parse_args(argv)  # exits 2 on usage errors
    handler: Handler = args.handler
    as_json = bool(getattr(args, "json", False))
    from kumix.app.settings import Settings
    from kumix.cli.context import CliContext

    try:
        settings = Settings.resolve(
            data_dir=getattr(args, "data_dir", None),
            policy=getattr(args, "policy", None),
            extension_roots=getattr(args, "extensions_dir", None) or (),
        )
        return handler(CliContext(args=args, settings=settings, early_fork_server=early, early_probe=probe))
    except KumixError as exc:
        emit_error(exc, as_json=as_json)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # Output piped into a closed reader (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("KUMIX_DEBUG") == "1":
            raise
        emit_error(KumixError(f"unexpected {type(exc).__name__}: {exc}"), as_json=as_json)
        return EXIT_FAILED


def _interrupted() -> int:
    sys.stderr.write("kumix: interrupted\n")
    return EXIT_INTERRUPTED


def run(early: EarlyForkServer | None = None, probe: RunningProbe | None = None) -> None:
    try:
        code = main(early=early, probe=probe)
    except KeyboardInterrupt:
        # Ctrl-C before `main` reached its own handler: while the command modules load.
        code = _interrupted()
    # The command is over and has closed what it opened. The interpreter's last garbage
    # collection at exit would walk every object of every imported module once more
    # (10-20 ms, the largest part of a short command's end); frozen, they are left out of it.
    # Exit still runs atexit handlers and flushes the streams.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
