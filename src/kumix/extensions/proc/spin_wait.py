"""Spin-then-block: wait a few microseconds for a pipe to become readable before sleeping.

Why: on a virtual machine whose idle vCPUs halt (this kind of machine runs with guest halt
polling off), a process that blocks and is woken by a write from the other vCPU pays a
vCPU wake-up of 25-30 µs, twice per round trip: a confined ping measured 70-100 µs across
vCPUs against ~3 µs when both ends shared one (bench/confinement_layers.py). Polling the
pipe for a bounded moment before blocking keeps the vCPU awake across the short gap
between a request and its reply: a cross-vCPU pipe round trip drops from ~71 µs to ~2.4 µs
in a plain ping-pong. It is the classic adaptive spin of futexes and message pumps.

Cost: at most `budget_ns` of CPU per wait, spent only when an answer does not come at once.
The budgets below are small next to any real work and next to the policy's CPU limits.
"""

from __future__ import annotations

import select
import time

HOST_SPIN_NS = 60_000
"""How long the host polls for a reply right after writing a request: covers `ping` and
trivial methods (a warm worker answers those in 10-40 µs); slower calls fall back to the
event loop, having cost the host at most this much."""

WORKER_SPIN_NS = 60_000
"""How long an idle worker polls for the next request after answering one: a caller
issuing calls back to back finds the worker awake."""


def spin_until_readable(fd: int, budget_ns: int) -> bool:
    """Poll `fd` without sleeping for up to `budget_ns`; True as soon as it is readable
    (or at EOF/error, which a read will report). Never consumes data."""
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
