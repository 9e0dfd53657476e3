"""Live updates for front ends: one bounded queue per subscriber, and what happens when
a subscriber falls behind.

The sync (and late decryption, edits, redactions) publish `TimelineUpdate`s carrying the
store's change cursor, and `RoomsUpdate`s; each sync also publishes the typing notices
(`TypingUpdate`) and read receipts (`ReceiptsUpdate`) of joined rooms, which are live
only (never stored, so never replayed); so are the extension call figures
(`FiguresUpdate`) published after each extension call. `EventHub.publish` never blocks and never
waits for a slow subscriber: the producer is the sync loop, and one stalled browser tab
must not stall sync for everyone.

Overflow rule: a subscriber's queue holds at most `maxsize` updates. When it is full, the
new update and every later one are dropped until the subscriber has read everything still
queued; then it receives exactly one `Resync(cursor)`, where `cursor` is that of the last
timeline update it was given. It then replays from the store (everything after `cursor`,
`Kumix.timeline(after=...)` or a new `subscribe(since=...)`) and carries on with the live
stream, in which updates it already replayed are recognisable by their cursor. Room
updates dropped meanwhile are not replayed: after a `Resync` a front end re-reads the
room list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kumix.core.models import FiguresUpdate, ReceiptsUpdate, Resync, RoomsUpdate, TimelineUpdate, TypingUpdate, Update

if TYPE_CHECKING:
    import asyncio

DEFAULT_QUEUE = 1000
"""Updates one subscriber may have unread; a live room rarely has more than a screenful."""


@dataclass
class Subscription:
    """One subscriber: iterate it (`async for update in events`) or call `get()`."""

    rooms: frozenset[str] | None
    maxsize: int = DEFAULT_QUEUE
    _queue: asyncio.Queue[Update] = field(init=False)
    _last_cursor: int = field(default=0, init=False)
    _dropping: bool = field(default=False, init=False)
    dropped: int = field(default=0, init=False)
    """How many updates this subscriber lost to the overflow rule (for figures and tests)."""

    def __post_init__(self) -> None:
        import asyncio  # here, not at import: `kumix ext list` never starts an event loop

        if self.maxsize < 1:
            raise ValueError("a subscription queue holds at least one update")
        self._queue = asyncio.Queue()

    def wants(self, update: Update) -> bool:
        if self.rooms is None or isinstance(update, Resync):
            return True
        if isinstance(update, FiguresUpdate):
            return False  # about no room: a subscriber to some rooms does not want it
        if isinstance(update, TimelineUpdate):
            return update.event.room_id in self.rooms
        if isinstance(update, TypingUpdate | ReceiptsUpdate):
            return update.room_id in self.rooms
        return any(r.room_id in self.rooms for r in update.rooms)

    def offer(self, update: Update) -> None:
        """Queue an update, or apply the overflow rule; never blocks."""
        if not self.wants(update):
            return
        if isinstance(update, TimelineUpdate) and update.cursor <= self._last_cursor:
            return  # already given (replayed from the store while it was also published)
        if isinstance(update, RoomsUpdate) and self.rooms is not None:
            update = RoomsUpdate([r for r in update.rooms if r.room_id in self.rooms])
        if self._dropping or self._queue.qsize() >= self.maxsize:
            self._dropping = True
            self.dropped += 1
            return
        if isinstance(update, TimelineUpdate):
            self._last_cursor = max(self._last_cursor, update.cursor)
        self._queue.put_nowait(update)

    async def get(self) -> Update:
        if self._dropping and self._queue.empty():
            # Everything queued before the overflow has been read: now say where to resume.
            self._dropping = False
            return Resync(self._last_cursor)
        return await self._queue.get()

    def get_nowait(self) -> Update | None:
        if self._dropping and self._queue.empty():
            self._dropping = False
            return Resync(self._last_cursor)
        if self._queue.empty():
            return None
        return self._queue.get_nowait()

    def __aiter__(self) -> AsyncIterator[Update]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Update]:
        while True:
            yield await self.get()


class EventHub:
    """Fan-out of updates to the current subscribers; owned by `Kumix`."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []

    def add(self, subscription: Subscription) -> None:
        self._subscribers.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, updates: Iterable[Update]) -> None:
        batch = list(updates)
        for subscriber in list(self._subscribers):
            for update in batch:
                subscriber.offer(update)
