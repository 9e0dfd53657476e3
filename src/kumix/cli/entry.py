"""The `kumix` command's entry point (and `python -m kumix`'s).

`kumix ext call` launches the extension host's fork server before anything else of Kumix is
imported — before `kumix.cli.main` and argparse (~20 ms of imports) — since the first call
waits for that server's start-up and not for the command's (cli/early_launch.py). Every other
command goes straight on to `main`.
"""

from __future__ import annotations

import sys


def run() -> None:
    early = None
    try:
        from kumix.cli.early_launch import launch_for

        early = launch_for(sys.argv[1:])
        from kumix.cli.main import run as run_command
    except KeyboardInterrupt:
        if early is not None:
            early.close()
        sys.stderr.write("kumix: interrupted\n")
        sys.exit(130)
    run_command(early)
