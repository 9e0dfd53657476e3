"""Launching the fork server process, with nothing but the standard library imported.

A separate step from `spawner.ForkServer` (which talks to the server from an event loop) so a
command can launch the server first thing, before it imports the rest of Kumix, asyncio or
its own use case: the server's Python start and imports (most of a cold start) then run on
the other CPU while the command starts up, and `ForkServer` adopts the running process when
the host opens (`ProcHost(..., launched=...)`). The server dies with the process that
launched it (PDEATHSIG, forkserver.py), so a launch nobody adopts leaves nothing behind; its
owner closes it all the same (`LaunchedServer.close`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from kumix.extensions.proc.simulation import SIMULATE_ENV


def server_environment() -> dict[str, str]:
    """The fork server's whole environment; workers build their own from scratch anyway."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    # A testing aid that can only make confinement stricter or fail (see confinement.SIMULATE_ENV).
    if SIMULATE_ENV in os.environ:
        env[SIMULATE_ENV] = os.environ[SIMULATE_ENV]
    return env


class LaunchedServer:
    """A fork server process just launched, and the host's end of its control socket."""

    def __init__(self, logs_dir: Path, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.logs_dir = logs_dir
        self.process = process
        self.control = control
        self.launched_at = time.monotonic()
        self.adopted = False
        """Taken over by a `ForkServer`, which owns it from then on: `close` leaves it alone."""

    def close(self) -> None:
        """End a server nobody adopted (idempotent; a no-op once adopted)."""
        if self.adopted:
            return
        self.adopted = True
        self.control.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def launch_server(logs_dir: Path) -> LaunchedServer:
    """Start `python -I -m kumix.extensions.proc.forkserver` and return at once; its stdout
    and stderr go to `forkserver.log` in `logs_dir`."""
    host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # `mode` applies to the last directory only: the data directory above it, when it is
        # created here, must not be left world-readable either.
        logs_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        logs_dir.mkdir(exist_ok=True, mode=0o700)
        log_fd = os.open(logs_dir / "forkserver.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "kumix.extensions.proc.forkserver",
                    "--control-fd",
                    str(server_end.fileno()),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                pass_fds=[server_end.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=server_environment(),
                close_fds=True,
            )
        finally:
            os.close(log_fd)
    except BaseException:
        host_end.close()
        raise
    finally:
        server_end.close()
    return LaunchedServer(logs_dir, process, host_end)
