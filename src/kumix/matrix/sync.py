"""The sync loop: long-poll /sync, hand each batch to the caller, back off on failure.

It resumes from the token the caller stored (the caller writes events and token in one
transaction, so the token never runs ahead of the stored events). Network errors, 5xx and
429 are retried after `Backoff` delays (429's `retry_after_ms` is honoured); an invalid
token (`unauthorized`) or any other typed error ends the loop and reaches the caller.
Stopping is immediate: a long-poll in flight is cancelled, and no task outlives `run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kumix.core.errors import Unavailable
from kumix.core.models import SyncBatch
from kumix.matrix.backoff import Backoff
from kumix.matrix.client import MatrixClient

log = logging.getLogger(__name__)

LONG_POLL_MS = 30_000
"""The spec's customary long-poll: the server answers at once when something happens."""

T = TypeVar("T")


async def until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await `awaitable` unless `stop` is set first; then it is cancelled and awaited.
    Returns (finished, result)."""
    work: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    stopper: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    pair: set[asyncio.Future[Any]] = {work, stopper}
    try:
        await asyncio.wait(pair, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (work, stopper):
            if not fut.done():
                fut.cancel()
        # Both are awaited here, so nothing is left running when we return or raise.
        await asyncio.gather(work, stopper, return_exceptions=True)
    if work.cancelled():
        return False, None
    return True, work.result()


async def sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    try:
        async with asyncio.timeout(delay):
            await stop.wait()
    except TimeoutError:
        pass


class SyncLoop:
    def __init__(
        self,
        client: MatrixClient,
        *,
        load_token: Callable[[], str | None],
        on_batch: Callable[[SyncBatch], Awaitable[None]],
        backoff: Backoff | None = None,
        on_retry: Callable[[Unavailable, float], None] | None = None,
        long_poll_ms: int = LONG_POLL_MS,
    ) -> None:
        self._client = client
        self._load_token = load_token
        self._on_batch = on_batch
        self._backoff = backoff or Backoff()
        self._on_retry = on_retry
        self._long_poll_ms = long_poll_ms
        self.batches = 0

    async def run(self, stop: asyncio.Event, *, first_full_state: bool = True) -> None:
        """Sync until `stop` is set. The first request of a process asks for full state,
        because nio keeps room state (members, encryption) only in memory."""
        full_state = first_full_state
        while not stop.is_set():
            since = self._load_token()
            try:
                finished, batch = await until_stopped(
                    self._client.sync_once(
                        since, timeout_ms=0 if full_state or since is None else self._long_poll_ms,
                        full_state=full_state and since is not None,
                    ),
                    stop,
                )
            except Unavailable as exc:
                delay = self._backoff.next_delay(exc.details.get("retry_after_ms"))
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                log.info("sync failed (%s); retrying in %.2f s", exc.code, delay)
                await sleep_or_stop(delay, stop)
                continue
            if not finished or batch is None:
                return
            self._backoff.reset()
            full_state = False
            self.batches += 1
            await self._on_batch(batch)
