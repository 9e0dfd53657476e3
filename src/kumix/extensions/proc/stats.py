"""Per-extension call figures: calls, errors by code, timeouts, restarts, latency percentiles,
and the pool's gauges (workers alive, busy, calls queued) at the moment of the snapshot."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

LATENCY_WINDOW = 1_024
"""Percentiles describe the most recent calls; a thousand is enough for a stable p99 and
keeps the figure about now rather than about start-up."""


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    """p50/p90/p99 in milliseconds of a list of durations in seconds (non-empty)."""
    ordered = sorted(latencies)
    return {
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p90": round(percentile(ordered, 0.90) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "samples": len(ordered),
    }


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


class CallStats:
    def __init__(self, gauges: Callable[[], dict[str, int]] | None = None) -> None:
        self._gauges = gauges
        self.calls = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.timeouts = 0
        self.crashes = 0
        self.restarts = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._unsaved_latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._saved: dict[str, Any] = {}

    def record_ok(self, seconds: float) -> None:
        self.ok += 1
        self.latencies.append(seconds)
        self._unsaved_latencies.append(seconds)

    def take_delta(self) -> dict[str, Any]:
        """What was recorded since the previous call, for adding to the saved figures of the
        data directory (`store.extension_stats`): counts as differences, new latencies."""
        now: dict[str, Any] = {
            "calls": self.calls,
            "ok": self.ok,
            "timeouts": self.timeouts,
            "crashes": self.crashes,
            "restarts": self.restarts,
            "errors": dict(self.errors),
        }
        before = self._saved
        delta: dict[str, Any] = {
            key: now[key] - int(before.get(key, 0)) for key in ("calls", "ok", "timeouts", "crashes", "restarts")
        }
        old_errors: dict[str, int] = before.get("errors", {})
        delta["errors"] = {
            code: count - old_errors.get(code, 0) for code, count in now["errors"].items()
            if count - old_errors.get(code, 0)
        }
        delta["latencies"] = list(self._unsaved_latencies)
        self._unsaved_latencies.clear()
        self._saved = now
        return delta

    def record_error(self, code: str) -> None:
        self.errors[code] += 1
        if code == "timeout":
            self.timeouts += 1

    def snapshot(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "calls": self.calls,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "timeouts": self.timeouts,
            "crashes": self.crashes,
            "restarts": self.restarts,
        }
        doc.update(self._gauges() if self._gauges is not None else {"workers": 0, "busy": 0, "queued": 0})
        if self.latencies:
            doc["latency_ms"] = latency_summary(list(self.latencies))
        return doc
