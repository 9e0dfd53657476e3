"""The worker as pid 1 of a PID namespace of its own, and the supervisor that stays behind.

`unshare(CLONE_NEWPID)` does not move the caller, only its future children, so the process
that entered the worker's namespaces (namespaces.enter) forks once more, before seccomp refuses
fork: the child is pid 1 of the new PID namespace and goes on to become the worker; the parent
stays behind as its supervisor. Inside, only the worker's own pid exists: `kill`, `pidfd_open`,
`getppid` (0: the parent is outside) and a /proc it might mount name nothing of the host or of
a sibling worker.

The supervisor runs no extension code and imports nothing: it closes every descriptor but two
(so the worker's death alone closes the channel and the log), reports the worker's pid as the
host sees it on the report descriptor (the fork server passes it on: the host kills that pid on
a timeout and reads /proc/PID for the spin governor and the memory figures), waits for the
worker, reports its raw wait status and exits the same way (a signal death as the same signal).

Parent death: the worker's parent is the supervisor, whose pid `getppid()` cannot show from
inside. The witness is a pipe whose only write end the supervisor holds: the kernel closes it
(exit_files) before it reparents the children (exit_notify, which also sends PDEATHSIG), so a
worker that sets PDEATHSIG and then finds the pipe still open is sure to be killed when the
supervisor dies; one that finds it closed exits at once (hygiene.die_with_parent).

pid 1 of a namespace ignores a signal whose action is the default unless it comes from an
ancestor namespace as SIGKILL or SIGSTOP, or from the kernel. The host's SIGKILL, RLIMIT_CPU's
signals and faults still end the worker; its own kill(1, SIGKILL) or raise(SIGABRT) does not
(abort() falls through to a fault, so it still dies, by SIGSEGV).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import struct
from typing import NoReturn

from kumix.extensions.proc.exit_codes import as_the_kernel_meant

RECORD = struct.Struct("=ci")
"""One report: a tag and a 32-bit number, written with one write (atomic on a pipe)."""
REPORT_PID = b"P"
"""The worker's pid, as the supervisor's (the host's) PID namespace names it."""
REPORT_STATUS = b"S"
"""The worker's raw wait status."""


def become_pid_one(report_fd: int | None) -> int:
    """Fork after unshare(CLONE_NEWPID). Returns in the child only (pid 1 of the new namespace):
    the read end of the parent witness, for hygiene.die_with_parent. The child must set its
    parent-death signal at once (fork clears it). The parent supervises and never returns."""
    witness_r, witness_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid != 0:
        os.close(witness_r)
        _supervise(pid, report_fd, witness_w)
    os.close(witness_w)
    if report_fd is not None:
        os.close(report_fd)
    # A session and process group of its own again (the supervisor's is outside the namespace,
    # so getpgid/getsid would say 0): the worker leads its own, as before the fork.
    os.setsid()
    return witness_r


def _close_all_but(keep: set[int]) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = soft if soft != resource.RLIM_INFINITY else 65_536
    low = 0
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, top)


def _report(report_fd: int | None, tag: bytes, value: int) -> None:
    if report_fd is not None:
        # A fork server that is gone cannot listen; the supervisor still ends like its worker.
        with contextlib.suppress(OSError):
            os.write(report_fd, RECORD.pack(tag, value))


def _supervise(child: int, report_fd: int | None, witness_w: int) -> NoReturn:
    _close_all_but({witness_w} | ({report_fd} if report_fd is not None else set()))
    _report(report_fd, REPORT_PID, child)
    try:
        _pid, status, usage = os.wait4(child, 0)
    except ChildProcessError:  # pragma: no cover - nobody else can reap it
        status, usage = 0x7F00, None  # "exited 127": unknown
    if usage is not None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_CPU)  # the worker's: set before the fork
        if soft != resource.RLIM_INFINITY:
            status = as_the_kernel_meant(status, usage.ru_utime + usage.ru_stime, soft) or status
    _report(report_fd, REPORT_STATUS, status)
    _exit_like(status)


def _exit_like(status: int) -> NoReturn:
    """End the way the worker ended, so whoever waits for the supervisor sees the same."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 127)
