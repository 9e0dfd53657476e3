"""The session's call deadlines as a pure state machine behind one timer, driven by a fake clock.

Items are plain strings; `ProcSession` uses its call handles. The rules pinned here: a deadline
never fires early, never twice and never after its call ended; the one timer is re-armed only
when a new deadline comes before the armed one; answered calls cost no timer work and no
unbounded memory. A model (a plain dict scanned on every step) checks random and hostile
sequences.
"""

from __future__ import annotations

import random

import pytest

from kumix.extensions.proc.deadlines import COMPACT_SLACK, DeadlineQueue


def test_nothing_is_due_before_its_deadline_and_everything_at_it() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    assert q.add("a", 10.0) is True, "nothing armed yet: the shell arms"
    assert q.add("b", 12.0) is False, "later than the armed deadline: the timer stays"
    assert q.wake_at() == 10.0
    assert q.due(9.999) == []
    assert q.due(10.0) == ["a"]
    assert q.wake_at() == 12.0
    assert q.due(100.0) == ["b"]
    assert q.due(200.0) == []
    assert q.wake_at() is None
    assert len(q) == 0


def test_an_ended_call_never_fires_and_a_stale_timer_finds_nothing() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("a", 10.0)
    q.add("b", 15.0)
    assert q.remove("a") is True
    assert q.remove("a") is False, "already gone"
    # The timer armed for "a" still fires at 10: nothing is due, the next wake-up is b's.
    assert q.due(10.0) == []
    assert q.wake_at() == 15.0
    assert q.due(15.0) == ["b"]
    assert q.remove("b") is False, "due items are no longer tracked"


def test_an_earlier_deadline_asks_for_a_re_arm_and_comes_first() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("late", 50.0)
    assert q.wake_at() == 50.0
    assert q.add("early", 20.0) is True
    assert q.wake_at() == 20.0
    assert q.due(60.0) == ["early", "late"], "earliest first"


def test_ties_keep_insertion_order_and_items_need_not_be_comparable() -> None:
    q: DeadlineQueue[object] = DeadlineQueue()
    first, second = object(), object()  # not orderable: only the sequence number breaks ties
    q.add(first, 5.0)
    q.add(second, 5.0)
    assert q.due(5.0) == [first, second]


def test_after_due_the_timer_counts_as_disarmed() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("a", 1.0)
    q.due(1.0)
    # The shell's timer fired and nothing re-armed it: the next add must ask for a timer.
    assert q.add("b", 9.0) is True


def test_adding_a_tracked_item_twice_is_refused() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("a", 1.0)
    with pytest.raises(ValueError):
        q.add("a", 2.0)
    assert q.due(1.0) == ["a"]
    q.add("a", 3.0)  # a due item may be tracked again
    assert q.due(3.0) == ["a"]


def test_a_removed_item_re_added_fires_once_at_its_new_deadline() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("a", 5.0)
    q.remove("a")
    q.add("a", 5.0)  # same deadline: its dead entry must not fire it twice
    q.add("b", 7.0)
    q.remove("b")
    q.add("b", 9.0)
    assert q.due(8.0) == ["a"]
    assert q.due(9.0) == ["b"]


def test_answered_calls_do_not_accumulate() -> None:
    # A session answering a million calls long before their deadlines keeps a bounded heap.
    q: DeadlineQueue[int] = DeadlineQueue()
    q.add(-1, 1e9)  # one call that never answers holds the front
    for i in range(10_000):
        q.add(i, 10.0 + i)
        q.remove(i)
        assert q.heap_size <= 2 * len(q) + COMPACT_SLACK + 1
    assert len(q) == 1
    assert q.wake_at() == 1e9


def test_calls_answered_in_order_leave_the_heap_at_once() -> None:
    # One call at a time (a warm worker): the heap holds the call in flight and nothing else,
    # so no compaction is ever needed, and the armed deadline stays where it was.
    q: DeadlineQueue[int] = DeadlineQueue()
    assert q.add(0, 10.0) is True
    q.remove(0)
    for i in range(1, 500):
        assert q.add(i, 10.0 + i) is False, "the timer armed for the first deadline stays"
        assert q.heap_size == 1
        q.remove(i)
        assert q.heap_size == 0
    assert q.due(1e9) == []
    assert q.wake_at() is None


def test_clear_returns_every_live_item_and_forgets_them() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.add("b", 2.0)
    q.add("a", 1.0)
    q.add("c", 3.0)
    q.remove("c")
    assert q.clear() == ["a", "b"]
    assert q.due(10.0) == []
    assert q.wake_at() is None


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_match_a_model(seed: int) -> None:
    """Adds (in order and out of order), removals, stale and on-time timer firings, a clock
    that only moves forward: the queue answers exactly what scanning every live item says."""
    rng = random.Random(seed)
    q: DeadlineQueue[int] = DeadlineQueue()
    model: dict[int, float] = {}
    now = 0.0
    armed: float | None = None
    next_item = 0
    for _ in range(600):
        op = rng.random()
        if op < 0.45:
            deadline = now + rng.choice([5.0, 5.0, 5.0, rng.uniform(0.0, 10.0)])
            rearm = q.add(next_item, deadline)
            model[next_item] = deadline
            next_item += 1
            if rearm:
                armed = q.wake_at()
            # The armed timer is never later than the earliest live deadline.
            assert armed is not None
            assert armed <= min(model.values())
        elif op < 0.75 and model:
            item = rng.choice(list(model))
            assert q.remove(item) is True
            del model[item]
        else:
            now += rng.uniform(0.0, 3.0)
            if armed is not None and armed <= now:
                # The shell's timer fires: exactly the model's due items, earliest first.
                expected = sorted((d, i) for i, d in model.items() if d <= now)
                assert q.due(now) == [i for _, i in expected]
                for _, item in expected:
                    del model[item]
                armed = q.wake_at()
                assert armed == (min(model.values()) if model else None)
        assert len(q) == len(model)
        # Nothing live is ever past due without the timer being due too.
        if model:
            assert armed is not None
            assert armed <= min(model.values())
