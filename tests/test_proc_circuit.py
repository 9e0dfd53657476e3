"""The crash circuit as a pure state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from kumix.extensions.proc.circuit import RESTART_BACKOFF_BASE_S, RESTART_BACKOFF_MAX_S, CrashCircuit


def test_first_crash_in_a_window_restarts_at_once_then_backs_off_exponentially() -> None:
    c = CrashCircuit(max_crashes=100, window_s=60)
    assert c.crash(10.0).start_at == 10.0
    assert c.start_delay(10.0) == 0.0
    delays = [c.crash(10.0).start_at - 10.0 for _ in range(3)]
    assert delays == pytest.approx([RESTART_BACKOFF_BASE_S, RESTART_BACKOFF_BASE_S * 2, RESTART_BACKOFF_BASE_S * 4])
    assert c.start_delay(10.0) == pytest.approx(RESTART_BACKOFF_BASE_S * 4)
    assert c.start_delay(11.0) == 0.0, "the delay runs out by itself"


def test_backoff_is_capped() -> None:
    c = CrashCircuit(max_crashes=1000, window_s=3600)
    for _ in range(40):
        verdict = c.crash(0.0)
    assert verdict.start_at == RESTART_BACKOFF_MAX_S


def test_the_max_crashes_th_crash_in_the_window_opens_until_the_oldest_leaves() -> None:
    c = CrashCircuit(max_crashes=3, window_s=60)
    assert not c.crash(0.0).opened
    assert not c.crash(5.0).opened
    verdict = c.crash(9.0)
    assert verdict.opened
    assert verdict.crashes_in_window == 3
    assert verdict.start_at == 60.0
    assert c.is_open(59.9)
    assert c.open_for(30.0) == 30.0
    assert c.crashes_in_window(30.0) == 3
    assert c.start_delay(30.0) == 30.0, "no worker starts while open"
    assert not c.is_open(60.0)
    assert c.crashes_in_window(61.0) == 2, "the oldest left the window"
    assert c.crash(62.0).opened, "two still counted plus this one"


def test_crashes_spread_wider_than_the_window_never_open_it() -> None:
    c = CrashCircuit(max_crashes=3, window_s=10)
    for i in range(50):
        verdict = c.crash(i * 6.0)
        assert not verdict.opened
        assert verdict.crashes_in_window <= 2


def test_a_crash_while_open_keeps_it_open_and_counts_after_it_closes() -> None:
    c = CrashCircuit(max_crashes=2, window_s=10)
    c.crash(0.0)
    assert c.crash(1.0).opened
    verdict = c.crash(5.0)  # a worker still running when it opened crashed too
    assert verdict.opened
    assert c.is_open(9.9)
    assert not c.is_open(10.0), "open until the oldest counted crash leaves the window"
    assert c.crash(10.5).opened, "the crashes at 1 and 5 still count: one more reopens it"
    assert c.is_open(10.9)
    assert not c.is_open(11.0)


def test_reset_closes_and_forgets() -> None:
    c = CrashCircuit(max_crashes=2, window_s=60)
    c.crash(0.0)
    c.crash(0.0)
    assert c.is_open(1.0)
    c.reset()
    assert not c.is_open(1.0)
    assert c.start_delay(1.0) == 0.0
    assert c.crashes_in_window(1.0) == 0
    assert not c.crash(1.0).opened, "counting starts over"


def test_a_clock_that_runs_backwards_cannot_shrink_the_window() -> None:
    c = CrashCircuit(max_crashes=3, window_s=10)
    c.crash(100.0)
    c.crash(50.0)  # hostile: earlier than the previous crash
    verdict = c.crash(105.0)
    assert verdict.opened
    assert c.is_open(109.0)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        CrashCircuit(max_crashes=0, window_s=10)
    with pytest.raises(ValueError):
        CrashCircuit(max_crashes=1, window_s=0)
