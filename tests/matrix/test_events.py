"""The subscription overflow rule (kumix.app.events), driven directly: a slow subscriber
loses updates, never blocks the producer, and is told exactly where to resume."""

from __future__ import annotations

from kumix.app.events import EventHub, Subscription
from kumix.core.models import (
    Event,
    FiguresUpdate,
    Receipt,
    ReceiptsUpdate,
    Resync,
    Room,
    RoomsUpdate,
    TimelineUpdate,
    TypingUpdate,
)


def update(cursor: int, room: str = "!a:x") -> TimelineUpdate:
    return TimelineUpdate(cursor, Event(f"$e{cursor}", room, "@s:x", cursor, "text", body=str(cursor)))


async def test_a_full_queue_drops_then_gives_one_resync_from_the_last_delivered_cursor() -> None:
    hub = EventHub()
    slow = Subscription(None, maxsize=2)
    fast = Subscription(None, maxsize=100)
    hub.add(slow)
    hub.add(fast)
    hub.publish(update(c) for c in range(1, 6))  # never blocks, whoever is slow
    assert [u.cursor for u in (await slow.get(), await slow.get())] == [1, 2]  # type: ignore[union-attr]
    assert await slow.get() == Resync(2)  # exactly once, after what was queued
    assert slow.dropped == 3
    hub.publish([update(6)])
    assert await slow.get() == update(6)  # live again
    assert slow.get_nowait() is None
    assert [fast.get_nowait() for _ in range(5)] == [update(c) for c in range(1, 6)]  # unaffected


async def test_room_filter_replayed_duplicates_and_unsubscribe() -> None:
    hub = EventHub()
    sub = Subscription(frozenset({"!a:x"}))
    hub.add(sub)
    hub.publish([update(1, "!b:x"), update(2), update(2), update(1)])  # other room; already given; older
    hub.publish([RoomsUpdate([Room("!a:x", "A", None, False, "join"), Room("!b:x", "B", None, False, "join")])])
    assert sub.get_nowait() == update(2)
    rooms = sub.get_nowait()
    assert isinstance(rooms, RoomsUpdate)
    assert [r.room_id for r in rooms.rooms] == ["!a:x"]
    assert sub.get_nowait() is None
    hub.remove(sub)
    hub.publish([update(3)])
    assert sub.get_nowait() is None
    assert hub.subscribers == 0


async def test_live_only_updates_follow_the_room_filter() -> None:
    hub = EventHub()
    some = Subscription(frozenset({"!a:x"}))
    every = Subscription(None)
    hub.add(some)
    hub.add(every)
    live = [TypingUpdate("!b:x", ("@s:x",)), TypingUpdate("!a:x", ("@s:x",)),
            ReceiptsUpdate("!b:x", (Receipt("@s:x", "$e", "m.read", 1),)),
            ReceiptsUpdate("!a:x", (Receipt("@s:x", "$e", "m.read", 1),)), FiguresUpdate("x", {"calls": 1})]
    hub.publish(live)
    assert [some.get_nowait() for _ in range(3)] == [live[1], live[3], None]  # figures are about no room
    assert [every.get_nowait() for _ in range(6)] == [*live, None]
