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

A SIGKILL is read the way the PID namespace's supervisor reads it (`as_the_kernel_meant`): past
the CPU soft limit it stands for RLIMIT_CPU. The zombie's CPU time (fields 14 and 15, in clock
ticks) is that figure rounded down, so near the limit the read is left to the report too.
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

from kumix.extensions.proc.exit_codes import as_the_kernel_meant

STAT_UTIME_FIELD = 14
STAT_STIME_FIELD = 15
"""1-based, as proc(5) counts: user and system CPU time, in clock ticks, rounded down."""
STAT_EXIT_CODE_FIELD = 52
"""`exit_code`, the thread's exit status as waitpid reports it."""
CPU_TICK_ERROR = 2
"""Ticks the two CPU figures together may fall short by (each is rounded down)."""


class ZombieExit(NamedTuple):
    status: int
    """The raw wait status, never 0."""
    cpu_ticks: int
    """User and system CPU time, in clock ticks."""


def parse_zombie_stat(stat: bytes) -> ZombieExit | None:
    """The wait status and CPU time in a `/proc/PID/stat` line of a zombie; None for any other
    state, a status of 0, or a line that does not parse (the command name, field 2, may hold
    anything, so the fields are counted from the last ')')."""
    end = stat.rfind(b")")
    if end < 0:
        return None
    fields = stat[end + 1 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    if len(fields) < STAT_EXIT_CODE_FIELD - 2 or fields[0] != b"Z":
        return None
    try:
        status = int(fields[STAT_EXIT_CODE_FIELD - 3])
        utime, stime = int(fields[STAT_UTIME_FIELD - 3]), int(fields[STAT_STIME_FIELD - 3])
    except ValueError:
        return None
    if not 0 < status <= 0xFFFF or utime < 0 or stime < 0:
        return None
    return ZombieExit(status, utime + stime)


def reported_status(zombie: ZombieExit, cpu_soft_limit: int, ticks_per_second: int) -> int | None:
    """The status the supervisor will report for this zombie, or None when its CPU time is too
    near the soft limit to tell."""
    return as_the_kernel_meant(
        zombie.status,
        zombie.cpu_ticks / ticks_per_second,
        cpu_soft_limit,
        cpu_error=CPU_TICK_ERROR / ticks_per_second,
    )


def zombie_status(pid: int, pidfd: int, cpu_soft_limit: int) -> int | None:
    """The wait status the zombie `pidfd` refers to (whose pid is `pid`) will be reported with,
    its CPU soft limit being `cpu_soft_limit` seconds, or None when it cannot be known for sure
    now (see the module docstring)."""
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
    zombie = parse_zombie_stat(stat)
    if zombie is None:
        return None
    status = reported_status(zombie, cpu_soft_limit, os.sysconf("SC_CLK_TCK"))
    if status is None:
        return None
    try:
        # Signal 0 checks existence only; a zombie still exists (the pid is still its own).
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        return None
    return status
