"""The epoch clock: one thread that advances the epoch of every engine with a WASM call in flight.

wasmtime checks a store's epoch deadline at function entries and loop back-edges; counting
the ticks is Kumix's job. This module owns that thread and the helper that starts threads
with a stack size of their own (the ticker's and the compiler's).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import wasmtime

from kumix.core.errors import ResourceLimit

EPOCH_TICK_SECONDS = 0.005
"""Deadline resolution. The ticker only runs while a WASM call is in flight."""

TICKER_STACK_BYTES = 256 * 1024

_THREAD_START_LOCK = threading.Lock()


def start_thread(target: Callable[[], None], name: str, stack_bytes: int) -> threading.Thread:
    """Start a daemon thread with its own stack size (threading.stack_size is process-wide)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _THREAD_START_LOCK:
        previous = threading.stack_size(stack_bytes)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


def deadline_ticks(remaining_seconds: float) -> int:
    """Epoch ticks from now to a deadline `remaining_seconds` away; never early."""
    # +1: the current tick may be almost over.
    return int(remaining_seconds / EPOCH_TICK_SECONDS) + 1


class EpochTicker:
    """Advances the epoch of every engine with a call in flight, every EPOCH_TICK_SECONDS.

    One daemon thread per process, started on first use (never in the fork template, which
    must stay single-threaded) and idle while no WASM call runs.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._active: dict[int, tuple[wasmtime.Engine, int]] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self, engine: wasmtime.Engine) -> Iterator[None]:
        key = id(engine)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # The ticker needs almost no stack; the default 8 MiB would count against the
                # worker's address-space rlimit.
                try:
                    thread = start_thread(self._run, "kumix-wasm-epoch", TICKER_STACK_BYTES)
                except RuntimeError as exc:
                    # Without the ticker no wall-clock deadline holds: refuse rather than run unbounded.
                    raise ResourceLimit(f"cannot start the WASM deadline thread: {exc}") from None
                self._thread = thread
            _, count = self._active.get(key, (engine, 0))
            self._active[key] = (engine, count + 1)
            self._wake.notify()
        try:
            yield
        finally:
            with self._lock:
                _, count = self._active[key]
                if count <= 1:
                    del self._active[key]
                else:
                    self._active[key] = (engine, count - 1)

    def _run(self) -> None:
        # Ticks are counted from the clock, not from sleeps: every sleep oversleeps a little
        # (more on a loaded machine or with the GIL busy), and counting sleeps stretched every
        # deadline by that factor -- 6% measured, 1.8 s on a 30 s call, past the reply margin.
        base: float | None = None
        while True:
            with self._lock:
                while not self._active:
                    base = None
                    self._wake.wait()
                engines = [engine for engine, _ in self._active.values()]
            if base is None:
                # Idle time is not counted: a burst of ticks would end new deadlines early.
                base = time.monotonic()
            time.sleep(EPOCH_TICK_SECONDS)
            due = int((time.monotonic() - base) / EPOCH_TICK_SECONDS)
            base += due * EPOCH_TICK_SECONDS
            for engine in engines:
                for _ in range(due):
                    engine.increment_epoch()


TICKER = EpochTicker()
