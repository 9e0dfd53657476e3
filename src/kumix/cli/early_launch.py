"""`kumix ext call` launches the extension host's fork server before it parses its command line,
and `kumix doctor` forks its probe child.

Building the parser and importing what parsing needs (the settings, dataclasses) is 20-40 ms
of the command's start-up, and the fork server's own start is what the first call waits for:
each millisecond the launch comes earlier is one the call does not wait. So the command line
is scanned here for the two words `ext call` and the data directory, with nothing imported;
the settings resolved after parsing decide whether the server launched fits
(`context.CliContext.run` launches another when it does not, which a command line this scan
reads differently from argparse could cause).

`kumix doctor` waits for its probe child, which imports the confinement code and confines
itself (~100 ms): forked here, it does so while this process imports argparse and the settings
and loads the policy, on the other CPU when one is free. The probe does not depend on the
settings; a probe forked for a command line argparse then reads otherwise (`doctor --help`, a
usage error) is killed by `main`.
"""

from __future__ import annotations

TYPE_CHECKING = False
"""Not `typing.TYPE_CHECKING`: importing typing (~8 ms) would delay the fork server's launch.
Type checkers read any `TYPE_CHECKING` as true."""
if TYPE_CHECKING:
    from collections.abc import Sequence

    from kumix.app.confinement_report import RunningProbe
    from kumix.app.early_start import EarlyForkServer

DATA_DIR_OPTION = "--data-dir"
VALUE_OPTIONS = frozenset({DATA_DIR_OPTION, "--policy", "--extensions-dir", "--params"})
"""The options of `kumix ext call` that take a value (global ones included)."""


def ext_call_data_dir(argv: Sequence[str]) -> tuple[bool, str | None]:
    """(True, the --data-dir value or None) for a command line of `kumix ext call`; (False,
    None) for any other command, or when the data directory is spelt in a way argparse
    would accept but this scan does not follow (an abbreviation such as `--data`)."""
    words, data_dir = _scan(argv)
    return words is not None and words[:2] == ["ext", "call"], data_dir


def is_doctor(argv: Sequence[str]) -> bool:
    """Whether `argv` is a command line of `kumix doctor` (False when the scan cannot tell)."""
    words, _ = _scan(argv)
    return words is not None and words[:1] == ["doctor"]


def _scan(argv: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """The words of the command line that are neither options nor their values, and the
    --data-dir value; (None, None) when an option starting `--d` is one this scan does not
    follow (argparse may read it as an abbreviation of `--data-dir`)."""
    words: list[str] = []
    data_dir: str | None = None
    args = iter(argv)
    for arg in args:
        if arg == "--":
            words.extend(args)
        elif arg in VALUE_OPTIONS:
            value = next(args, None)
            if arg == DATA_DIR_OPTION:
                data_dir = value
        elif arg.startswith(DATA_DIR_OPTION + "="):
            data_dir = arg.partition("=")[2]
        elif arg.startswith("--d"):
            return None, None
        elif not arg.startswith("-"):
            words.append(arg)
    return words, data_dir


def launch_for(argv: Sequence[str]) -> EarlyForkServer | None:
    """Launch the fork server now if `argv` is `kumix ext call`; None otherwise, or when it
    cannot be launched (the host launches its own then, and reports what went wrong)."""
    is_call, data_dir = ext_call_data_dir(argv)
    if not is_call or data_dir == "":
        return None  # an empty --data-dir is a usage error: nothing to launch it in
    try:
        from kumix.app.early_start import launch_fork_server_for

        return launch_fork_server_for(data_dir)
    except Exception:
        # Whatever the scan found (`~nosuchuser/x`, no home directory, a file where the
        # directory should be), `main` resolves the settings again and reports it as a typed
        # error: nothing of it may escape here, outside main's error handling.
        return None


def probe_for(argv: Sequence[str]) -> RunningProbe | None:
    """Fork `kumix doctor`'s probe child now if `argv` is that command; None otherwise, or
    when it cannot be forked (the command then forks its own, and reports what goes wrong)."""
    if not is_doctor(argv):
        return None
    try:
        from kumix.app.confinement_report import start_probe

        return start_probe()
    except Exception:
        return None  # as in launch_for: nothing may escape here, outside main's error handling
