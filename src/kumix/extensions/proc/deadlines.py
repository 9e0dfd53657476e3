"""The deadlines of a session's calls, behind one event-loop timer instead of one per call.

Arming a loop timer for every call and cancelling it when the answer comes was a fixed cost of
each round trip (a timer handle, a heap push, a cancellation and, later, the dead handle's pop);
almost every call is answered long before its deadline, so almost all of that work was for
nothing. `DeadlineQueue` is a sans-I/O state machine: the shell adds a call with its deadline
and removes it when the call ends, asks `due(now)` when its one timer fires, and keeps that
timer at `wake_at()`. Time is passed in; the tests drive it with a fake clock.

Rules:
- `due(now)` returns, earliest first, every live item whose deadline is `<= now`, and forgets
  them; an item is never returned early, never twice, and never after it was removed.
- `wake_at()` is the earliest live deadline (None when nothing is pending). The shell need not
  re-arm when an item is removed: its timer may fire early for an item already answered, and
  `due` then returns nothing and `wake_at` names the next live deadline. It re-arms only when
  `add` reports a deadline earlier than the armed one (`add` returns True then).
- Removal is O(1) amortized: the entry of the earliest deadline leaves the heap at once (the
  usual case: calls answered in the order they came); any other stays until it reaches the top
  or the heap is compacted, which happens once dead entries outnumber live ones (bounded memory
  however many calls are answered before their deadline).

Within a session every call gets the same timeout, so deadlines arrive in order and the heap
push is a plain append in effect; the heap keeps the queue right when they do not.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

COMPACT_SLACK = 64
"""Dead entries tolerated beyond the live count before the heap is rebuilt."""


class DeadlineQueue(Generic[T]):
    __slots__ = ("_armed", "_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._live: dict[T, float] = {}
        self._seq = 0
        """Ties at one deadline keep insertion order, and items themselves are never compared."""
        self._armed: float | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, item: object) -> bool:
        return item in self._live

    @property
    def heap_size(self) -> int:
        """Entries held, live or dead (for the tests of the memory bound)."""
        return len(self._heap)

    def add(self, item: T, deadline: float) -> bool:
        """Track `item` until `deadline`. True when the shell must (re-)arm its timer at
        `wake_at()`: nothing was armed, or this deadline comes before the armed one."""
        live = self._live
        if item in live:
            raise ValueError("item already has a deadline")
        live[item] = deadline
        seq = self._seq = self._seq + 1
        heapq.heappush(self._heap, (deadline, seq, item))
        armed = self._armed
        if armed is None or deadline < armed:
            self._armed = deadline
            return True
        return False

    def remove(self, item: T) -> bool:
        """The item ended before its deadline; False if it was not tracked (already due)."""
        live = self._live
        if live.pop(item, None) is None:
            return False
        heap = self._heap
        if heap[0][2] is item:
            # The usual case, calls answered in the order they came: the entry leaves at once,
            # so the heap stays at the calls in flight and never needs compacting.
            heapq.heappop(heap)
        elif len(heap) > 2 * len(live) + COMPACT_SLACK:
            self._compact()
        return True

    def due(self, now: float) -> list[T]:
        """Every live item whose deadline is `<= now`, earliest first, no longer tracked. The
        shell calls it when its timer fires; afterwards the timer counts as disarmed until
        `wake_at` re-arms it."""
        heap, live = self._heap, self._live
        expired: list[T] = []
        while heap and heap[0][0] <= now:
            deadline, _, item = heapq.heappop(heap)
            if live.get(item) == deadline:
                del live[item]
                expired.append(item)
        self._armed = None
        return expired

    def wake_at(self) -> float | None:
        """The earliest live deadline, which the shell arms its timer for (None: nothing to arm)."""
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # dead: answered before its deadline
        self._armed = heap[0][0] if heap else None
        return self._armed

    def clear(self) -> list[T]:
        """Forget everything (the session is disposed); the live items, earliest first."""
        items = sorted(self._live, key=self._live.__getitem__)
        self._heap.clear()
        self._live.clear()
        self._armed = None
        return items

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
