"""A worker's wait status, read from its zombie before its parent reaps it.

The host learns how a worker ended from the fork server's `exited` report, which comes after
three more wake-ups: the PID namespace's supervisor reaps the worker and reports, the fork
server reads that and reaps the supervisor, and only then writes to the host. On a busy
machine each of those waits for a CPU; the call the worker was running waits with them. A
process's pidfd turns readable the moment it becomes a zombie, and while it is one its
`/proc/PID/stat` holds the status its parent will read (field 52, `exit_code`, Linux >= 3.5), so
the host can answer that call at once and still leave the reaping and the counting to the
report.

The read is trusted only when it can be tied to the process behind the pidfd: the pid stays
taken while the zombie exists, so a zombie state read before the pidfd says its process is still
there (not reaped) is that process's own. A status of 0 is not trusted at all: the kernel shows 0
to a reader it denies (`ptrace_may_access`), so it cannot be told from a clean exit; the report
decides then, as it does for everything this module returns None for.
"""

from __future__ import annotations

import os
import signal

STAT_EXIT_CODE_FIELD = 52
"""1-based, as proc(5) counts: `exit_code`, the thread's exit status as waitpid reports it."""


def parse_zombie_status(stat: bytes) -> int | None:
    """The wait status in a `/proc/PID/stat` line of a zombie; None for any other state, a
    status of 0, or a line that does not parse (the command name, field 2, may hold anything,
    so the fields are counted from the last ')')."""
    end = stat.rfind(b")")
    if end < 0:
        return None
    fields = stat[end + 1 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    if len(fields) < STAT_EXIT_CODE_FIELD - 2 or fields[0] != b"Z":
        return None
    try:
        status = int(fields[STAT_EXIT_CODE_FIELD - 3])
    except ValueError:
        return None
    return status if 0 < status <= 0xFFFF else None


def zombie_status(pid: int, pidfd: int) -> int | None:
    """The wait status of the zombie `pidfd` refers to (whose pid is `pid`), or None when it
    cannot be known for sure now (see the module docstring)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # reaped already: the report is on its way
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    status = parse_zombie_status(stat)
    if status is None:
        return None
    try:
        # Signal 0 checks existence only; a zombie still exists (the pid is still its own).
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        return None
    return status
