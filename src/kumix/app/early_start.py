"""Starting the extension host's fork server before the rest of a command's start-up.

A cold start of the first extension call is mostly the fork server's own start: a fresh
Python and the worker essentials, 100-300 ms on a busy machine. A front end that knows it is
about to call an extension (`kumix ext call`, `kumix serve`) launches the server first thing,
before importing the rest of Kumix and opening the data directory, and hands it to
`Kumix.open(fork_server=...)`; the server then boots on the other CPU while the command starts
up, and the first call waits only for what is left of it. Importing this module costs only
`os` and the C half of `socket` (launch.py; not the settings: `kumix ext call`
launches the server before it has parsed its command line, `launch_fork_server_for`).
"""

from __future__ import annotations

import os

from kumix.app.data_dir import early_data_dir_name, early_logs_dir_name
from kumix.extensions.proc.launch import LaunchedServer, launch_server

TYPE_CHECKING = False
"""Not `typing.TYPE_CHECKING`: importing typing (~8 ms) would delay the launch this module is
for (cli/early_launch.py). Type checkers read any `TYPE_CHECKING` as true."""
if TYPE_CHECKING:
    from collections.abc import Mapping

    from kumix.app.settings import Settings

EarlyForkServer = LaunchedServer
"""A fork server launched ahead of `Kumix.open`; `close()` ends it if nothing adopted it."""


def launch_fork_server(settings: Settings) -> EarlyForkServer:
    """Launch the fork server the data directory's extension host will use, at once."""
    return launch_server(settings.logs_dir)


def launch_fork_server_for(data_dir_option: str | None, env: Mapping[str, str] | None = None) -> EarlyForkServer | None:
    """The same, for the data directory `Settings.resolve(data_dir=data_dir_option)` will
    choose, without resolving the settings. Its `logs_dir` says which one it was: a caller
    whose settings came out otherwise closes it and launches again.

    None when that data directory does not exist yet: the command line has not been checked,
    and a mistyped one must not leave a data directory (and a log) behind; the command creates
    it with its own checks, and only its very first call waits for the whole server start."""
    data_dir = early_data_dir_name(data_dir_option, os.environ if env is None else env)
    if not os.path.isdir(data_dir):
        return None
    return launch_server(early_logs_dir_name(data_dir))


def fits(early: EarlyForkServer, settings: Settings) -> bool:
    """Whether a server launched early logs where `settings` says this process logs."""
    return early.logs_dir == settings.logs_dir
