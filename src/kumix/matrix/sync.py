"""The sync loop: long-poll /sync through the caller's step, back off on failure.

The caller's `step` syncs once from its stored token and stores the batch (events and
token in one transaction, so the token never runs ahead of the stored events). Network
errors, 5xx and 429 (`Transient`) are retried after `Backoff` delays (429's
`retry_after_ms` is honoured); an invalid token (`unauthorized`) or any other typed error
ends the loop and reaches its owner. There is no stop flag: the owner cancels the task,
which cancels a long poll in flight, and no task outlives `run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from kumix.core.errors import Transient
from kumix.matrix.backoff import Backoff

log = logging.getLogger(__name__)

LONG_POLL_MS = 30_000
"""The spec's customary long-poll: the server answers at once when something happens."""


class SyncLoop:
    def __init__(
        self,
        step: Callable[[int], Awaitable[None]],
        *,
        backoff: Backoff | None = None,
        on_retry: Callable[[Transient, float], None] | None = None,
        long_poll_ms: int = LONG_POLL_MS,
    ) -> None:
        self._step = step
        self._backoff = backoff or Backoff()
        self._on_retry = on_retry
        self._long_poll_ms = long_poll_ms
        self.batches = 0

    async def run(self) -> NoReturn:
        """Sync until cancelled (or until a failure that no retry can fix, raised)."""
        while True:
            try:
                await self._step(self._long_poll_ms)
            except Transient as exc:
                delay = self._backoff.next_delay(exc.details.get("retry_after_ms"))
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                log.info("sync failed (%s); retrying in %.2f s", exc.code, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            self.batches += 1
