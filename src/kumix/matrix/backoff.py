"""When to retry after a homeserver failure: exponential backoff with full jitter.

Sans-I/O: the policy only computes delays; the sync loop and the outbox do the sleeping.
Full jitter (a uniform draw below the exponential ceiling) spreads clients that lost the
same server at the same moment, so they do not all return in one thundering herd.
A server's own `retry_after_ms` (429) is a floor: retrying earlier only earns another 429.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BASE_DELAY_S = 0.5
"""First retry well under a second: most failures are a restarting server or a blip."""

MAX_DELAY_S = 30.0
"""Ceiling of the exponential: long enough not to hammer a server that is down, short
enough that a user sees messages within half a minute of the server returning."""

MAX_RETRY_AFTER_S = 300.0
"""A server asking for more than five minutes is treated as asking for five: a hostile or
buggy value must not park the client for days."""


@dataclass
class Backoff:
    base: float = BASE_DELAY_S
    cap: float = MAX_DELAY_S
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, retry_after_ms: int | float | None = None) -> float:
        """Seconds to wait before the next attempt; each call counts as one failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        delay = self.rng.uniform(0, ceiling)
        if retry_after_ms is not None:
            try:
                asked = float(retry_after_ms) / 1000.0
            except (TypeError, ValueError):
                asked = 0.0
            if asked == asked and asked > 0:  # NaN compares unequal to itself
                delay = max(delay, min(asked, MAX_RETRY_AFTER_S))
        return delay

    def reset(self) -> None:
        """A success: the next failure starts again from the base delay."""
        self.attempt = 0
