"""Spin-then-block: wait a few microseconds for a pipe to become readable before sleeping,
but only while that pays, and never by holding a CPU the peer needs.

Why spin at all: on a virtual machine whose idle vCPUs halt (this kind of machine runs with
guest halt polling off), a process that blocks and is woken by a write from the other vCPU
pays a vCPU wake-up of 25-30 µs, twice per round trip. Polling the pipe for a bounded moment
before blocking keeps the vCPU awake across the short gap between a request and its reply:
a cross-vCPU pipe round trip drops from ~71 µs to ~2.4 µs in a plain ping-pong.

Why it must not be a plain busy poll: when the peer runs on the same CPU (the kernel often
keeps a ping-pong pair on one CPU, always so on a busy machine), a poll keeps the peer from
running, so every wait burned its whole budget before the peer could answer — twice per
round trip (170 µs pings at load 1.6, issue 11). Yielding inside the poll is no cure: with
any other runnable task on the CPU (a browser, a build), `sched_yield` hands it a whole time
slice, milliseconds, before the poller runs again. What works is not spinning at all then:
blocking is what gives the CPU away to the peer at once, and the kernel's wake-up preemption
brings the waiter back as soon as the answer is written. So:

1. The host knows its peer: every `PLACEMENT_EVERY` waits it reads the worker's last CPU
   (field 39 of /proc/PID/stat, ~10-35 µs, so only now and then) and compares it with its
   own (`sched_getcpu`, a vDSO call); while they share a CPU it does not spin. At the same
   moments it reads how many tasks are runnable right now (/proc/loadavg): when there are
   more than CPUs, no vCPU is idle, so there is no halt to avoid, and a spinner only spends
   the scheduler's favour a sleeper has (a woken sleeper preempts a CPU-bound neighbour; a
   task that never sleeps waits for the neighbour's time slice) — it does not spin then.
2. `AdaptiveSpin` learns, per peer, whether spinning pays: a wait that found the answer
   within the budget is a success; one that ran out, or that was preempted for longer than
   the budget, is a failure. After a few failures it stops spinning and blocks at once, and
   tries one spin every `PROBE_EVERY` waits to notice when things change. The worker, which
   cannot see the host's process (confinement), relies on this alone: spinning on the host's
   CPU means the host's request never comes within the budget, so it stops after two waits.
   The decision is `SpinGovernor`, a pure state machine; the tests drive it with sequences.

Cost: at most `budget_ns` of CPU per wait while spinning pays, about `budget_ns /
PROBE_EVERY` per wait when it does not.
"""

from __future__ import annotations

import ctypes
import os
import select
import time
from collections.abc import Callable
from typing import cast

HOST_SPIN_NS = 60_000
"""How long the host polls for a reply right after writing a request: covers `ping` and
trivial methods (a warm worker answers those in 10-40 µs); slower calls fall back to the
event loop, having cost the host at most this much."""

WORKER_SPIN_NS = 60_000
"""How long an idle worker polls for the next request after answering one: a caller
issuing calls back to back finds the worker awake."""

CREDIT_START = 4
"""Optimistic at first: the first waits of a new pair spin."""
CREDIT_MAX = 8
"""A long run of successes is forgiven no more than 4 failures' worth (each costs 2)."""
FAILURE_COST = 2
"""A failure outweighs a success: spinning must win at least two waits in three to go on."""
PROBE_EVERY = 32
"""While spinning does not pay, one wait in this many spins anyway, to learn whether it pays
again (the placement of a pair changes over seconds, not microseconds)."""
PROBE_EVERY_MAX = 512
"""Each probe that fails doubles the gap to the next one, up to this many waits; one that pays
brings it back to PROBE_EVERY. A failed probe spends its whole budget (60 µs) — and, with the
peer on the same CPU, holds the peer's answer back as long — so one in 32 waits was ~1.9 µs of
CPU per wait on a machine where spinning never pays; one in 512 is ~0.12 µs, and a pair that
moves to an idle vCPU is still noticed within a few hundred round trips (milliseconds)."""
PLACEMENT_EVERY = 64
"""How often (in waits) the host looks up its peer's CPU: a /proc read costs about as much as
a whole fast round trip, and the kernel keeps a pair's placement for long stretches."""


def _libc_sched_getcpu() -> Callable[[], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - glibc and musl both have it
        return None
    function.restype = ctypes.c_int
    function.argtypes = []
    return cast("Callable[[], int]", function)


_sched_getcpu = _libc_sched_getcpu()


def own_cpu() -> int | None:
    """The CPU this thread runs on now, or None where the C library cannot say."""
    if _sched_getcpu is None:
        return None
    cpu = int(_sched_getcpu())
    return cpu if cpu >= 0 else None


def runnable_tasks(fd: int | None = None) -> int | None:
    """Tasks runnable on the whole machine right now (the 4th field of /proc/loadavg). `fd`:
    /proc/loadavg kept open, re-read from offset 0 (one pread instead of a Python file's
    open, fstat, ioctl, lseek, read and close)."""
    try:
        if fd is not None:
            text = os.pread(fd, 256, 0)
        else:
            with open("/proc/loadavg", "rb") as loadavg:
                text = loadavg.read()
        return int(text.split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None


def last_cpu_of(pid: int, fd: int | None = None) -> int | None:
    """The CPU process `pid` last ran on (field 39 of /proc/PID/stat), None if unknown. `fd`:
    that file kept open (see runnable_tasks); it names the process it was opened for, even
    after the pid is reused."""
    try:
        if fd is not None:
            text = os.pread(fd, 1024, 0)
        else:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read()
        return int(text.rsplit(b")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _open_proc(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class SpinGovernor:
    """Whether the next wait should spin, learned from how the previous ones went. Pure."""

    def __init__(self) -> None:
        self.credit = CREDIT_START
        self._skipped = 0
        self.probe_every = PROBE_EVERY
        """Waits between two probes while spinning does not pay (PROBE_EVERY..PROBE_EVERY_MAX)."""
        self.spins = 0
        self.successes = 0

    def should_spin(self) -> bool:
        if self.credit > 0:
            return True
        self._skipped += 1
        if self._skipped >= self.probe_every:
            self._skipped = 0
            return True
        return False

    def record(self, *, success: bool) -> None:
        """The outcome of a wait that spun."""
        self.spins += 1
        if success:
            self.successes += 1
            self.credit = max(1, min(CREDIT_MAX, self.credit + 1))
            self.probe_every = PROBE_EVERY
        elif self.credit == 0:
            # A probe that failed: spinning still does not pay; look again later.
            self.probe_every = min(PROBE_EVERY_MAX, self.probe_every * 2)
        else:
            self.credit = max(0, self.credit - FAILURE_COST)


def spin_until_readable(fd: int, budget_ns: int) -> bool:
    """Poll `fd` without sleeping for up to `budget_ns`; True as soon as it is readable (or at
    EOF/error, which a read will report). Never consumes data."""
    if budget_ns <= 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready = poller.poll
    clock = time.perf_counter_ns
    end = clock() + budget_ns
    while True:
        if ready(0):
            return True
        if clock() >= end:
            return False


class AdaptiveSpin:
    """Spin-then-block for one peer: spins only while spinning pays (see module docstring)."""

    def __init__(self, budget_ns: int, *, peer_pid: int | None = None) -> None:
        self.budget_ns = budget_ns
        self.governor = SpinGovernor()
        self.peer_pid = peer_pid
        self.shares_cpu = False
        """Whether the peer was last seen on this CPU (looked up every PLACEMENT_EVERY waits)."""
        self.machine_busy = False
        """Whether more tasks were runnable than there are CPUs (looked up at the same time)."""
        self._cpus = len(os.sched_getaffinity(0))
        self._until_placement = 0
        self._stat_fd: int | None = None
        self._loadavg_fd: int | None = None
        """/proc/PID/stat and /proc/loadavg, opened at the first look-up, closed by `close`."""

    def close(self) -> None:
        """Release the /proc descriptors (the peer is gone or no longer waited for)."""
        for fd in (self._stat_fd, self._loadavg_fd):
            if fd is not None:
                os.close(fd)
        self._stat_fd = self._loadavg_fd = None
        self.budget_ns = 0  # never spins again

    def wait(self, fd: int) -> bool:
        """Spin for `fd` if that has paid lately; True if it became readable while spinning.
        False means: block (in read(2) or the event loop) as usual."""
        if self.budget_ns <= 0:
            return False
        if self.peer_pid is not None:
            if self._until_placement <= 0:
                self._until_placement = PLACEMENT_EVERY
                # Each opened only while it is not open: a peer whose /proc entry this process
                # cannot open (hidepid, another uid) is tried again at every look-up, and the
                # loadavg descriptor must not be opened anew (and leaked) each time.
                if self._stat_fd is None:
                    self._stat_fd = _open_proc(f"/proc/{self.peer_pid}/stat")
                if self._loadavg_fd is None:
                    self._loadavg_fd = _open_proc("/proc/loadavg")
                mine, theirs = own_cpu(), last_cpu_of(self.peer_pid, self._stat_fd)
                self.shares_cpu = mine is not None and mine == theirs
                runnable = runnable_tasks(self._loadavg_fd)
                self.machine_busy = runnable is not None and runnable > self._cpus
            self._until_placement -= 1
            if self.shares_cpu or self.machine_busy:
                return False
        governor = self.governor
        if not governor.should_spin():
            return False
        started = time.perf_counter_ns()
        readable = spin_until_readable(fd, self.budget_ns)
        # Readable late means this thread was preempted for longer than the whole budget: on
        # this CPU, blocking (and being woken) is the faster way to wait.
        governor.record(success=readable and time.perf_counter_ns() - started <= self.budget_ns)
        return readable
