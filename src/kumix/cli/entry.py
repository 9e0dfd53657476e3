"""The `kumix` command's entry point (and `python -m kumix`'s).

`kumix ext call` launches the extension host's fork server before anything else of Kumix is
imported — before `kumix.cli.main` and argparse (~20 ms of imports) — since the first call
waits for that server's start-up and not for the command's (cli/early_launch.py); `kumix
doctor` forks its probe child there too. `kumix --version` answers before anything of Kumix
but the version is imported. Every other command goes straight on to `main`.
"""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from kumix import __version__

        sys.stdout.write(f"kumix {__version__}\n")  # what main, and argparse's version action, print
        sys.exit(0)
    early = probe = None
    try:
        from kumix.cli.early_launch import launch_for, probe_for

        early = launch_for(sys.argv[1:])
        probe = probe_for(sys.argv[1:])
        from kumix.cli.main import run as run_command
    except KeyboardInterrupt:
        for started in (early, probe):
            if started is not None:
                started.close()
        sys.stderr.write("kumix: interrupted\n")
        sys.exit(130)
    run_command(early, probe)
