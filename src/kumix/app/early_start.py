"""Starting the extension host's fork server before the rest of a command's start-up.

A cold start of the first extension call is mostly the fork server's own start: a fresh
Python and the worker essentials, 100-300 ms on a busy machine. A front end that knows it is
about to call an extension (`kumix ext call`, `kumix serve`) launches the server first thing,
before importing the rest of Kumix and opening the data directory, and hands it to
`Kumix.open(fork_server=...)`; the server then boots on the other CPU while the command starts
up, and the first call waits only for what is left of it. Importing this module costs only
the standard library's process and socket modules.
"""

from __future__ import annotations

from kumix.app.settings import Settings
from kumix.extensions.proc.launch import LaunchedServer, launch_server

EarlyForkServer = LaunchedServer
"""A fork server launched ahead of `Kumix.open`; `close()` ends it if nothing adopted it."""


def launch_fork_server(settings: Settings) -> EarlyForkServer:
    """Launch the fork server the data directory's extension host will use, at once."""
    return launch_server(settings.logs_dir)
