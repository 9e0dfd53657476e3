"""Spin-then-block: wait a few microseconds for a pipe to become readable before sleeping,
but only while that pays, and never by holding a CPU the peer needs.

Why spin at all: on a virtual machine whose idle vCPUs halt (this kind of machine runs with
guest halt polling off), a process that blocks and is woken by a write from the other vCPU
pays a vCPU wake-up of 25-30 µs, twice per round trip. Polling the pipe for a bounded moment
before blocking keeps the vCPU awake across the short gap between a request and its reply:
a cross-vCPU pipe round trip drops from ~71 µs to ~2.4 µs in a plain ping-pong.

Why it must not be a plain busy poll: when the peer runs on the same CPU (the kernel often
keeps a ping-pong pair on one CPU, always so on a busy machine), a poll that never yields
keeps the peer from running, so every wait burned its whole budget before the peer could
answer — twice per round trip (170 µs pings at load 1.6, issue 11). Two rules fix that:

1. Every poll that finds nothing calls `sched_yield`: a runnable peer on this CPU runs at
   once (a same-CPU round trip becomes two yields, no wake-up at all), while on a CPU with
   nothing else to run the yield returns in about a microsecond, so the cross-CPU spin keeps
   its gain.
2. `AdaptiveSpin` learns, per peer, whether spinning pays: a wait that found the answer
   within the budget is a success; one that ran out, or whose yield gave the CPU to some
   other task for longer than the budget (a CPU-bound neighbour), is a failure. After a few
   failures it stops spinning and blocks at once (blocking is what gives the CPU away to
   anyone), and tries one spin every `PROBE_EVERY` waits to notice when things change.
   The decision is `SpinGovernor`, a pure state machine; the tests drive it with sequences.

Cost: at most `budget_ns` of CPU per wait while spinning pays, about `budget_ns /
PROBE_EVERY` per wait when it does not.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

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


class SpinGovernor:
    """Whether the next wait should spin, learned from how the previous ones went. Pure."""

    def __init__(self) -> None:
        self.credit = CREDIT_START
        self._skipped = 0
        self.spins = 0
        self.successes = 0

    def should_spin(self) -> bool:
        if self.credit > 0:
            return True
        self._skipped += 1
        if self._skipped >= PROBE_EVERY:
            self._skipped = 0
            return True
        return False

    def record(self, *, success: bool) -> None:
        """The outcome of a wait that spun."""
        self.spins += 1
        if success:
            self.successes += 1
            self.credit = max(1, min(CREDIT_MAX, self.credit + 1))
        else:
            self.credit = max(0, self.credit - FAILURE_COST)


def spin_until_readable(
    fd: int, budget_ns: int, *, yield_cpu: Callable[[], None] = os.sched_yield
) -> bool:
    """Poll `fd` for up to `budget_ns`, yielding the CPU between polls; True as soon as it is
    readable (or at EOF/error, which a read will report). Never consumes data."""
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
        yield_cpu()


class AdaptiveSpin:
    """Spin-then-block for one peer: spins only while spinning pays (see module docstring)."""

    def __init__(self, budget_ns: int) -> None:
        self.budget_ns = budget_ns
        self.governor = SpinGovernor()

    def wait(self, fd: int) -> bool:
        """Spin for `fd` if that has paid lately; True if it became readable while spinning.
        False means: block (in read(2) or the event loop) as usual."""
        governor = self.governor
        if self.budget_ns <= 0 or not governor.should_spin():
            return False
        started = time.perf_counter_ns()
        readable = spin_until_readable(fd, self.budget_ns)
        # Readable late means a yield handed the CPU to some other task for longer than the
        # whole budget: on this CPU, blocking (and being woken) is the faster way to wait.
        governor.record(success=readable and time.perf_counter_ns() - started <= self.budget_ns)
        return readable
