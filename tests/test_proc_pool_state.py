"""The worker pool as a pure state machine: events in, plans out, a fake clock.

Workers and calls are plain strings here; `ProcSession` uses its own handles. Nothing forks:
these tests pin the pool's rules (one call per worker, bounded slots and queue, warm and
spare workers, idle retirement) under sequences a shell could produce, hostile ones included.
"""

from __future__ import annotations

import pytest

from kumix.extensions.proc.pool import PoolError, WorkerPool


def pool(max_workers: int = 4, max_queue: int = 8, spare: int = 0, retire: float = 60.0) -> WorkerPool[str, str]:
    return WorkerPool(max_workers=max_workers, max_queue=max_queue, spare=spare, idle_retire_s=retire)


def test_nothing_starts_before_the_first_call() -> None:
    p = pool()
    assert p.plan(0.0, may_start=True).starts == 0
    assert p.slots == 0


def test_first_call_reserves_one_start_and_runs_on_the_ready_worker() -> None:
    p = pool()
    p.submit("c1")
    plan = p.plan(0.0, may_start=True)
    assert (plan.sends, plan.starts) == ([], 1)
    # A second plan before the worker is ready does not start another for the same call.
    assert p.plan(0.0, may_start=True).starts == 0
    p.ready("w1", 0.1)
    plan = p.plan(0.1, may_start=True)
    assert plan.sends == [("w1", "c1")]
    assert p.worker_of("c1") == "w1"
    assert p.call_of("w1") == "c1"
    assert p.busy == 1
    assert p.answered("w1", 0.2) == "c1"
    assert p.busy == 0
    assert p.call_of("w1") is None
    assert p.plan(0.2, may_start=True).starts == 0, "one warm worker is kept, none added"


def test_a_worker_never_gets_a_second_call_before_it_answers() -> None:
    p = pool(max_workers=1)
    for call in ("c1", "c2", "c3"):
        p.submit(call)
    assert p.plan(0.0, may_start=True).starts == 1
    p.ready("w1", 0.0)
    assert p.plan(0.0, may_start=True).sends == [("w1", "c1")]
    assert p.plan(0.0, may_start=True).sends == [], "busy until it answers"
    p.answered("w1", 0.1)
    assert p.plan(0.1, may_start=True).sends == [("w1", "c2")]


def test_slots_never_exceed_max_workers_whatever_the_queue() -> None:
    p = pool(max_workers=3, max_queue=100)
    for i in range(50):
        p.submit(f"c{i}")
    assert p.plan(0.0, may_start=True).starts == 3
    assert p.plan(0.0, may_start=True).starts == 0
    assert p.slots == 3


def test_admission_counts_running_and_queued_calls() -> None:
    p = pool(max_workers=1, max_queue=2)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.submit("c2")
    p.submit("c3")
    assert not p.admits(), "1 running + 2 queued = maxConcurrency + maxQueue"
    assert p.withdraw("c3")
    assert p.admits()


def test_the_most_recently_used_idle_worker_is_taken_first() -> None:
    p = pool(max_workers=2)
    p.submit("a")
    p.submit("b")
    assert p.plan(0.0, may_start=True).starts == 2
    p.ready("w1", 0.0)
    p.ready("w2", 0.0)
    assert p.plan(0.0, may_start=True).sends == [("w2", "a"), ("w1", "b")], "the last ready first"
    p.answered("w2", 1.0)
    p.answered("w1", 2.0)
    p.submit("c")
    assert p.plan(2.0, may_start=True).sends == [("w1", "c")]


def test_an_unusable_worker_is_never_handed_a_call() -> None:
    p = pool(max_workers=2)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.answered("w1", 0.1)
    p.unusable("w1")
    p.unusable("w1")  # idempotent
    p.submit("c2")
    plan = p.plan(0.2, may_start=True)
    assert plan.sends == [], "the killed worker is not idle any more"
    assert plan.starts == 1, "its slot is still taken until reaped, the other slot starts a worker"


def test_an_answer_from_a_worker_made_unusable_does_not_make_it_idle() -> None:
    # The shell marks a protocol violator unusable first, then delivers the answers that came
    # before the violation: the call finishes, the worker gets no further call.
    p = pool(max_workers=1)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.unusable("w1")
    assert p.answered("w1", 0.1) == "c1"
    p.submit("c2")
    assert p.plan(0.1, may_start=True).sends == []
    assert p.gone("w1") is None
    assert p.plan(0.2, may_start=True).starts == 1, "the replacement"


def test_a_reaped_worker_returns_the_call_it_still_ran_and_frees_its_slot() -> None:
    p = pool(max_workers=1)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.unusable("w1")
    assert p.gone("w1") == "c1"
    assert (p.slots, p.busy, p.workers) == (0, 0, [])
    assert p.worker_of("c1") is None


def test_deadline_of_a_running_call_detaches_it_and_a_late_answer_finds_none() -> None:
    p = pool(max_workers=1)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    assert not p.withdraw("c1"), "running, not queued"
    assert p.take_call("w1") == "c1"
    assert p.take_call("w1") is None
    p.unusable("w1")
    assert p.answered("w1", 1.0) is None


def test_withdraw_of_unknown_or_twice_is_false() -> None:
    p = pool()
    assert not p.withdraw("ghost")
    p.submit("c1")
    assert p.withdraw("c1")
    assert not p.withdraw("c1")
    assert p.queued == 0


def test_events_that_contradict_the_state_are_refused() -> None:
    p = pool()
    with pytest.raises(PoolError):
        p.ready("w1", 0.0)  # no start reserved
    with pytest.raises(PoolError):
        p.start_failed()
    with pytest.raises(PoolError):
        p.gone("w1")
    p.submit("c1")
    with pytest.raises(PoolError):
        p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    with pytest.raises(PoolError):
        p.ready("w1", 0.0)
    p.unusable("w1")
    p.gone("w1")
    with pytest.raises(PoolError):
        p.gone("w1")
    assert p.slots == 0


def test_a_failed_start_frees_its_slot_and_the_next_plan_tries_again() -> None:
    p = pool(max_workers=1)
    p.submit("c1")
    assert p.plan(0.0, may_start=True).starts == 1
    p.start_failed()
    assert (p.slots, p.starting) == (0, 0)
    assert p.plan(0.1, may_start=True).starts == 1


def test_no_start_while_the_circuit_is_open_but_idle_workers_still_serve() -> None:
    p = pool(max_workers=2)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.answered("w1", 0.1)
    p.submit("c2")
    p.submit("c3")
    plan = p.plan(0.2, may_start=False)
    assert (plan.sends, plan.starts) == ([("w1", "c2")], 0)
    assert p.drain_queue() == ["c3"]
    assert p.queued == 0


def test_a_spare_is_started_beside_the_warm_worker_once_in_use() -> None:
    p = pool(max_workers=4, spare=1)
    assert p.plan(0.0, may_start=True).starts == 0, "no spare before the extension is used"
    p.submit("c1")
    assert p.plan(0.0, may_start=True).starts == 1, "the spare waits until a worker is ready"
    p.ready("w1", 0.0)
    plan = p.plan(0.0, may_start=True)
    assert plan.sends == [("w1", "c1")]
    assert plan.starts == 1, "now the spare"
    p.ready("w2", 0.0)
    assert p.plan(0.0, may_start=True).starts == 0
    p.answered("w1", 0.1)
    # The warm worker dies: the spare takes the next call at once, a new spare follows the reap.
    p.unusable("w1")
    p.submit("c2")
    plan = p.plan(0.2, may_start=True)
    assert plan.sends == [("w2", "c2")]
    assert plan.starts == 0, "the dead worker's slot is not free until it is reaped"
    p.gone("w1")
    assert p.plan(0.3, may_start=True).starts == 1


def test_a_spare_replacing_a_crashed_worker_waits_for_the_time_given_but_calls_do_not() -> None:
    p = pool(max_workers=4, spare=1)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.ready("w2", 0.0)
    p.answered("w1", 0.1)
    # w1 crashes; the shell defers the spare that replaces it to 0.3.
    p.defer_spares(0.3)
    p.defer_spares(0.2)  # an earlier time never shortens a deferral
    p.unusable("w1")
    p.gone("w1")
    assert p.spares_deferred_until(0.15) == 0.3, "the shell is told when to plan again"
    p.submit("c2")
    plan = p.plan(0.15, may_start=True)
    assert (plan.sends, plan.starts) == ([("w2", "c2")], 0), "the spare serves; no start competes with it"
    p.submit("c3")
    assert p.plan(0.16, may_start=True).starts == 1, "a call no worker can take starts one at once"
    p.ready("w3", 0.2)
    p.plan(0.2, may_start=True)  # w3 takes c3
    p.answered("w2", 0.25)
    p.answered("w3", 0.25)
    assert p.spares_deferred_until(0.25) is None, "two slots again: nothing waits for the time"
    lone = pool(max_workers=4, spare=1)
    lone.submit("a")
    lone.plan(0.0, may_start=True)
    lone.ready("w1", 0.0)
    lone.defer_spares(0.3)
    assert lone.plan(0.1, may_start=True).starts == 0, "a spare is deferred"
    lone.answered("w1", 0.1)
    lone.unusable("w1")
    lone.gone("w1")
    assert lone.plan(0.1, may_start=True).starts == 1, "but not the warm worker itself"
    lone.ready("w2", 0.2)
    assert lone.spares_deferred_until(0.2) == 0.3
    assert lone.plan(0.3, may_start=True).starts == 1, "the spare at the time given"
    assert lone.spares_deferred_until(0.3) is None


def test_spares_count_against_max_workers() -> None:
    p = pool(max_workers=2, spare=1)
    for call in ("a", "b", "c"):
        p.submit(call)
    assert p.plan(0.0, may_start=True).starts == 2
    p.ready("w1", 0.0)
    p.ready("w2", 0.0)
    p.plan(0.0, may_start=True)
    assert p.plan(0.0, may_start=True).starts == 0, "never a third process for a spare"
    one = pool(max_workers=1, spare=3)
    assert one.spare == 0, "a lone worker has no room for a spare"
    one.submit("a")
    assert one.plan(0.0, may_start=True).starts == 1


def test_warm_wanted_starts_one_even_without_a_call() -> None:
    p = pool(spare=1)
    assert p.plan(0.0, may_start=True, warm_wanted=True).starts == 1
    p.ready("w1", 0.0)
    assert p.plan(0.0, may_start=True, warm_wanted=True).starts == 1
    p.ready("w2", 0.0)
    assert p.plan(0.0, may_start=True).starts == 0


def test_idle_workers_beyond_the_kept_ones_retire_longest_idle_first() -> None:
    p = pool(max_workers=4, spare=1, retire=10.0)
    for call in ("a", "b", "c", "d"):
        p.submit(call)
    p.plan(0.0, may_start=True)
    for worker in ("w1", "w2", "w3", "w4"):
        p.ready(worker, 0.0)
    p.plan(0.0, may_start=True)
    for at, worker in ((1.0, "w3"), (2.0, "w1"), (3.0, "w4"), (4.0, "w2")):
        p.answered(worker, at)
    assert p.next_retire_at() == 11.0
    assert p.retire_due(10.5) == []
    assert p.retire_due(12.0) == ["w3", "w1"], "two kept: the warm one and the spare"
    assert p.next_retire_at() is None
    assert p.retire_due(100.0) == []
    assert sorted(p.usable_workers()) == ["w2", "w4"]
    p.submit("e")
    assert p.plan(100.0, may_start=True).sends == [("w2", "e")], "a retired worker gets no call"


def test_a_busy_worker_is_never_retired_and_counts_as_the_kept_one() -> None:
    p = pool(max_workers=2, retire=5.0)
    p.submit("a")
    p.submit("b")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.ready("w2", 0.0)
    p.plan(0.0, may_start=True)
    p.answered("w1", 1.0)
    p.answered("w2", 2.0)
    p.submit("c")
    assert p.plan(3.0, may_start=True).sends == [("w2", "c")]
    assert p.retire_due(50.0) == ["w1"], "w2 is busy and is the one kept"
    assert p.retire_due(50.0) == []
    assert p.answered("w2", 51.0) == "c"
    assert p.usable_workers() == ["w2"]
    assert p.retire_due(500.0) == [], "the last worker stays warm"


def _feed(p: WorkerPool[str, str], seed: int, *, fast: bool) -> list[object]:
    """Drive a pool through a random sequence of what a session can see, the way the session
    does: with `fast`, calls go through `run_now` first and an answer is planned only when the
    pool is not `settled`; without, every event is followed by a full plan. Events pick their
    worker among the pool's own, so two pools in the same state see the same sequence."""
    import random

    rng = random.Random(seed)
    seen: list[object] = []
    now = 0.0
    made = 0
    circuit_open = False
    kinds = ["call", "call", "call", "ready", "ready", "answer", "answer", "answer", "crash", "fail", "circuit"]

    def plan() -> None:
        result = p.plan(now, may_start=not circuit_open)
        seen.extend(("sent", w, c) for w, c in result.sends)
        seen.append(("starts", result.starts))

    for i in range(400):
        now += 0.1
        kind = rng.choice(kinds)
        busy = sorted(w for w in p.usable_workers() if p.call_of(w) is not None)
        usable = sorted(p.usable_workers())
        if kind == "circuit":
            # The crash circuit opens or closes. Closing plans nothing by itself: the next
            # call finds whatever slots the open circuit left empty.
            circuit_open = not circuit_open
        elif kind == "fail" and p.starting:
            p.start_failed()
            p.keep_warm = False  # as the session does when a start fails
            plan()
        elif kind == "call":
            name = f"c{i}"
            if circuit_open or not p.admits():
                seen.append(("refused", name))
                continue
            worker = p.run_now(name) if fast else None
            if worker is not None:
                seen.append(("sent", worker, name))
                seen.append(("starts", 0))
            else:
                p.submit(name)
                plan()
        elif kind == "ready" and p.starting:
            made += 1
            p.ready(f"w{made}", now)
            plan()
        elif kind == "answer" and busy:
            seen.append(("answered", p.answered(rng.choice(busy), now)))
            if fast and p.settled:
                seen.append(("starts", 0))
            else:
                plan()
        elif kind == "crash" and usable:
            victim = rng.choice(usable)
            p.unusable(victim)
            seen.append(("lost", p.gone(victim)))
            plan()
        seen.append((p.busy, p.queued, p.slots, p.starting, sorted(p.usable_workers()), p.keep_warm))
    return seen


@pytest.mark.parametrize("seed", range(30))
def test_run_now_decides_exactly_as_submit_then_plan(seed: int) -> None:
    spare = seed % 3
    slow = _feed(pool(max_workers=3, max_queue=2, spare=spare), seed, fast=False)
    fast = _feed(pool(max_workers=3, max_queue=2, spare=spare), seed, fast=True)
    assert fast == slow
    assert sum(1 for entry in fast if isinstance(entry, tuple) and entry[:1] == ("sent",)) > 20


def test_run_now_declines_until_the_pool_is_in_use_and_settled() -> None:
    p = pool(max_workers=2, spare=1)
    assert p.run_now("c0") is None, "no worker yet"
    assert p.queued == 0, "a declined call is not queued by run_now"
    p.submit("c1")
    assert p.plan(0.0, may_start=True).starts == 1
    p.ready("w1", 0.0)
    plan = p.plan(0.0, may_start=True)
    assert (plan.sends, plan.starts) == ([("w1", "c1")], 1), "the call, and the spare's start"
    assert p.answered("w1", 0.1) == "c1"
    assert p.settled, "a reserved start counts: nothing more to start"
    p.start_failed()  # the spare did not come up
    assert not p.settled
    assert p.run_now("c2") is None, "a start is wanted: the full plan must run"
    p.submit("c2")
    plan = p.plan(0.1, may_start=True)
    assert (plan.sends, plan.starts) == ([("w1", "c2")], 1)
    p.ready("w2", 0.2)
    p.answered("w1", 0.3)
    assert p.settled
    assert p.run_now("c3") == "w1", "the most recently used idle worker"
    with pytest.raises(PoolError):
        p.run_now("c3")
    assert p.run_now("c4") == "w2"
    assert p.run_now("c5") is None, "no idle worker: it queues through submit"


def test_settled_means_a_plan_would_do_nothing() -> None:
    p = pool(max_workers=3, spare=1)
    p.submit("c1")
    p.plan(0.0, may_start=True)
    p.ready("w1", 0.0)
    p.plan(0.0, may_start=True)
    p.answered("w1", 0.1)
    p.plan(0.1, may_start=True)
    p.ready("w2", 0.2)
    assert p.settled
    plan = p.plan(0.2, may_start=True)
    assert (plan.sends, plan.starts) == ([], 0)
    assert not p.surplus, "two usable workers are exactly the kept 1 + spare"
