"""Exit statuses of a proc worker: the part of the host ⇄ worker contract that travels
through wait(2) rather than the channel.

Both sides import it: the worker runtime exits with these, the host's session classifies a
worker's end by them. It sits beside `protocol.py` (the frames) so that neither side of the
wire needs the other's modules — in particular the host never imports the authors' SDK.
"""

from __future__ import annotations

import os
import signal

EXIT_OK = 0
EXIT_RESOURCE_LIMIT = 3
"""The worker ran out of memory under its RLIMIT_AS; the host reports `resource_limit`."""
EXIT_PROTOCOL = 5
"""The host sent bytes the worker could not parse; should never happen."""


def as_the_kernel_meant(status: int, cpu_seconds: float, cpu_soft_limit: int, *, cpu_error: float = 0.0) -> int | None:
    """The wait status a worker's end stands for, given the CPU time it used.

    RLIMIT_CPU's SIGXCPU at the soft limit is ignored by pid 1 of a PID namespace (default
    action, sent from inside), so a worker over its CPU time runs on to the hard limit and dies
    of the kernel's SIGKILL there. A SIGKILL death at or past the soft limit is therefore read as
    the SIGXCPU the kernel sent first, and the host answers `resource_limit` rather than
    `crashed`. The PID namespace's supervisor applies this to the exact figure wait4 gives
    (`cpu_error` 0); the host applies it to a zombie's `/proc` figure, which may fall short of
    the truth by up to `cpu_error` seconds, and gets None when that leaves the answer open."""
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        return status
    if cpu_seconds >= cpu_soft_limit:
        return int(signal.SIGXCPU)
    if cpu_seconds + cpu_error < cpu_soft_limit:
        return status
    return None
