"""One proc extension's crash circuit: counts crashes in a window, spaces restarts, opens.

A sans-I/O state machine: events in (`crash`, `reset`), decisions out (`CrashVerdict`),
time passed in as seconds of any monotonic clock. `ProcSession` feeds it the loop's clock;
its tests feed it a fake one.

Rules (per extension, whichever worker crashed): the first replacement in a window starts
immediately, so the next call finds a warm worker; further starts within the window back
off exponentially (50 ms, 100 ms, 200 ms … up to 5 s). The `max_crashes`-th crash within
`window_s` opens the circuit until the oldest of those crashes leaves the window, or until
`reset` (the extension was re-enabled).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

RESTART_BACKOFF_BASE_S = 0.05
"""The second crash in a window delays the next start by 50 ms, the third 100 ms, then 200 ms …"""
RESTART_BACKOFF_MAX_S = 5.0
"""… up to 5 s, so a crash-looping extension costs at most one fork every few seconds."""


@dataclass(frozen=True)
class CrashVerdict:
    """What one crash decided."""

    opened: bool
    """True when this crash opened the circuit: every waiting call is to fail `unavailable`."""
    crashes_in_window: int
    start_at: float
    """No worker may start before this time (the back-off; the open window when opened)."""


class CrashCircuit:
    def __init__(self, *, max_crashes: int, window_s: float) -> None:
        if max_crashes < 1 or window_s <= 0:
            raise ValueError("a crash circuit needs max_crashes >= 1 and a positive window")
        self.max_crashes = max_crashes
        self.window_s = window_s
        self._crashes: deque[float] = deque()
        self._open_until = 0.0
        self._next_start_at = 0.0

    def crash(self, now: float) -> CrashVerdict:
        """A worker ended without the host asking (exit, signal, kill after a deadline,
        protocol violation, failed start)."""
        if self._crashes and now < self._crashes[-1]:
            now = self._crashes[-1]  # a clock that ran backwards must not reorder the window
        self._crashes.append(now)
        self._forget_before(now)
        count = len(self._crashes)
        if count >= self.max_crashes:
            self._open_until = self._crashes[0] + self.window_s
            self._next_start_at = max(self._next_start_at, self._open_until)
            return CrashVerdict(opened=True, crashes_in_window=count, start_at=self._open_until)
        delay = 0.0 if count <= 1 else min(RESTART_BACKOFF_BASE_S * 2 ** (count - 2), RESTART_BACKOFF_MAX_S)
        self._next_start_at = now + delay
        return CrashVerdict(opened=False, crashes_in_window=count, start_at=self._next_start_at)

    def is_open(self, now: float) -> bool:
        return self._open_until > now

    def open_for(self, now: float) -> float:
        """Seconds until the circuit closes by itself (0 when closed)."""
        return max(0.0, self._open_until - now)

    def start_delay(self, now: float) -> float:
        """Seconds a worker start must wait from `now` (0 when it may start at once)."""
        return max(0.0, self._next_start_at - now)

    def crashes_in_window(self, now: float) -> int:
        """Crashes still counted at `now`; while open, the ones that opened it."""
        if not self.is_open(now):
            self._forget_before(now)
        return len(self._crashes)

    def reset(self) -> None:
        """The extension was re-enabled: forget every crash, close the circuit."""
        self._crashes.clear()
        self._open_until = 0.0
        self._next_start_at = 0.0

    def _forget_before(self, now: float) -> None:
        while self._crashes and self._crashes[0] < now - self.window_s:
            self._crashes.popleft()
