"""Launching the fork server process, with next to nothing imported.

A separate step from `spawner.ForkServer` (which talks to the server from an event loop) so a
command can launch the server first thing, before it imports the rest of Kumix, asyncio or
its own use case: the server's Python start and imports (most of a cold start) then run on
the other CPU while the command starts up, and `ForkServer` adopts the running process when
the host opens (`ProcHost(..., launched=...)`). The server dies with the process that
launched it (PDEATHSIG, forkserver.py), so a launch nobody adopts leaves nothing behind; its
owner closes it all the same (`LaunchedServer.close`).

Every millisecond this module takes to import is one the first call waits, so it imports
only what the interpreter has loaded already or builds in: `os`, `sys`, `time`, and the C
halves of `socket` and `signal`. `socket.py`, `subprocess` and `contextlib`, with what they
bring (selectors, enum, threading, typing), are 15-25 ms of a cold command's start on a slow
machine, paid before the launch.
The process is started with `os.posix_spawn`; the server closes every descriptor it did not
ask for as it starts (`forkserver.main`), which is what `close_fds` did.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs; signal.py would bring enum
import _socket
import os
import sys
import time

from kumix.extensions.proc.simulation import SIMULATE_ENV

TYPE_CHECKING = False  # typing itself is one of the imports this module avoids
if TYPE_CHECKING:
    from pathlib import Path


def server_environment() -> dict[str, str]:
    """The fork server's whole environment; workers build their own from scratch anyway."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    # A testing aid that can only make confinement stricter or fail (see confinement.SIMULATE_ENV).
    if SIMULATE_ENV in os.environ:
        env[SIMULATE_ENV] = os.environ[SIMULATE_ENV]
    return env


class ServerProcess:
    """The launched server's process: the part of `subprocess.Popen` its owners use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        """Set once the process is reaped (negative: the signal that ended it)."""

    def poll(self) -> int | None:
        """Reap the process if it has ended; its returncode, or None while it runs."""
        if self.returncode is None:
            self._wait(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._wait(0)
        return self.returncode

    def kill(self) -> None:
        # Only before it is reaped: until then its pid cannot have been given to another process.
        if self.returncode is None:
            try:  # noqa: SIM105 - contextlib is one of the imports this module avoids
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _wait(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            # Reaped elsewhere (a SIGCHLD handler that waits for any child): gone all the same.
            self.returncode = -_signal.SIGKILL
            return
        except InterruptedError:
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class LaunchedServer:
    """A fork server process just launched, and the host's end of its control socket."""

    def __init__(self, logs_dir: Path | str, process: ServerProcess, control: _socket.socket) -> None:
        self._logs_dir = os.fspath(logs_dir)
        self.process = process
        self.control = control
        self.launched_at = time.monotonic()
        self.adopted = False
        """Taken over by a `ForkServer`, which owns it from then on: `close` leaves it alone."""

    @property
    def logs_dir(self) -> Path:
        """Where the server logs (a Path only when asked: pathlib is not loaded at launch)."""
        from pathlib import Path

        return Path(self._logs_dir)

    def close(self) -> None:
        """End a server nobody adopted (idempotent; a no-op once adopted)."""
        if self.adopted:
            return
        self.adopted = True
        self.control.close()
        self.process.kill()
        self.process.wait()


def launch_server(logs_dir: Path | str) -> LaunchedServer:
    """Start `python -I -m kumix.extensions.proc.forkserver` and return at once; its stdout
    and stderr go to `forkserver.log` in `logs_dir`."""
    logs = os.fspath(logs_dir)
    host_end, server_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        # Made 0700 here and not only by `mode` of the last one: the data directory above it,
        # when it is created here, must not be left world-readable either.
        os.makedirs(os.path.dirname(logs) or ".", mode=0o700, exist_ok=True)
        try:  # noqa: SIM105 - as above
            os.mkdir(logs, 0o700)
        except FileExistsError:
            pass
        log_fd = os.open(os.path.join(logs, "forkserver.log"),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            server_fd = server_end.fileno()
            os.set_inheritable(server_fd, True)
            pid = os.posix_spawn(
                sys.executable,
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "kumix.extensions.proc.forkserver",
                    "--control-fd",
                    str(server_fd),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                server_environment(),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                # What Python ignores for itself must not be ignored by the new interpreter
                # before it sets its own (subprocess's restore_signals).
                setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),
            )
        finally:
            os.close(log_fd)
    except BaseException:
        host_end.close()
        raise
    finally:
        server_end.close()
    return LaunchedServer(logs_dir, ServerProcess(pid), host_end)
