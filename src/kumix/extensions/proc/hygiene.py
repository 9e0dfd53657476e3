"""Process hygiene of a freshly forked worker, before confinement and extension code.

Each step removes something a worker must not inherit from the fork server: the parent's
lifetime (PDEATHSIG), its process group and terminal, its open files, its environment, its
unbounded resources. Everything here runs in the forked child only, single-threaded.
"""

from __future__ import annotations

import ctypes
import fcntl
import io
import os
import resource
import select
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

CHANNEL_READ_FD = 3
"""Requests from the host arrive here."""
CHANNEL_WRITE_FD = 4
"""Replies to the host leave here. Never stdout: an extension's print must not reach the channel."""
LOG_FD = 1
"""stdout and stderr both point at the extension's log file."""
REPORT_FD = 5
"""Where the fork server learns the worker's pid and wait status (pid_namespace.py); closed in
the worker itself before any extension code runs."""

EXIT_ORPHANED = 6
"""The parent died between fork and PDEATHSIG; nobody is left to serve."""

PR_SET_PDEATHSIG = 1

MAX_OPEN_FILES = 64
"""The runtime needs five descriptors (stdin, log twice, channel twice) and an import a few
more; 64 lets an extension read some files of its own while a descriptor leak stays a
local failure instead of exhausting the machine."""

WORKER_PATH = "/usr/bin:/bin"
"""Enough for the runtime; workers are not supposed to run programs (confinement forbids exec)."""


@dataclass(frozen=True)
class WorkerLimits:
    max_memory_mb: int
    max_cpu_seconds: int
    max_log_bytes: int


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(expected_parent: int, witness_fd: int | None = None) -> None:
    """SIGKILL this process when its parent dies, and close the race with a parent that
    already died before the request took effect.

    The check is `getppid()` against the expected parent, or, with `witness_fd`, the read end
    of a pipe whose only write end the parent holds (pid 1 of a PID namespace sees its parent
    as 0): a parent's exit closes its descriptors before it reparents its children and sends
    PDEATHSIG, so a pipe still open after the prctl means the signal will come."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    if witness_fd is not None:
        if select.select([witness_fd], [], [], 0)[0]:  # readable = EOF: the parent is gone
            os._exit(EXIT_ORPHANED)
    elif os.getppid() != expected_parent:
        os._exit(EXIT_ORPHANED)


def place_fds(channel_read: int, channel_write: int, log: int, report: int | None = None) -> None:
    """Put the channel on fds 3/4, the log on 1/2, /dev/null on 0 and the report pipe (when
    given) on 5, then close the rest."""
    # Move the sources above the targets first, so a source already sitting on 0..5 is
    # not overwritten by an earlier dup2.
    sources = (channel_read, channel_write, log) if report is None else (channel_read, channel_write, log, report)
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, REPORT_FD + 1) for fd in sources]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(moved[2], LOG_FD)
    os.dup2(moved[2], 2)
    os.dup2(moved[0], CHANNEL_READ_FD)
    os.dup2(moved[1], CHANNEL_WRITE_FD)
    if report is not None:
        os.dup2(moved[3], REPORT_FD)
    os.closerange(REPORT_FD + 1 if report is not None else CHANNEL_WRITE_FD + 1, max_fd())


def max_fd() -> int:
    """One past the highest descriptor this process may hold (its RLIMIT_NOFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65_536


def fresh_environment(extension_id: str, home: Path | None) -> dict[str, str]:
    """The whole environment of a worker: an allowlist, nothing copied from the host."""
    return {
        "PATH": WORKER_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home) if home is not None else "/nonexistent",
        "TMPDIR": str(home) if home is not None else "/nonexistent",
        "PYTHONIOENCODING": "utf-8",
        "KUMIX_EXTENSION_ID": extension_id,
    }


def replace_environment(env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)


def apply_rlimits(limits: WorkerLimits) -> None:
    """Hard limits equal soft limits, so extension code cannot raise them again."""
    memory = limits.max_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit ends the worker; the hard limit one second later is SIGKILL
    # for a worker that ignores SIGXCPU.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.max_cpu_seconds, limits.max_cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_log_bytes, limits.max_log_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))


def reset_signals() -> None:
    """Undo the fork server's signal setup and make an over-long log write fail with EFBIG
    instead of killing the worker with SIGXFSZ."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class _CappedLog(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: straight to the log file. Once RLIMIT_FSIZE is
    reached writes are dropped instead of raising into extension code."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._full = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self._full:
            try:
                os.write(self._fd, text.encode("utf-8", "replace"))
            except OSError:
                self._full = True
        return len(text)


def redirect_python_streams() -> None:
    sys.stdin = io.StringIO("")
    sys.stdout = sys.stderr = _CappedLog(LOG_FD)
