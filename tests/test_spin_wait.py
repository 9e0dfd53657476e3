"""Spin-then-block: the bounded poll that keeps a vCPU awake for a fast answer, and the
governor that stops it when it does not pay or the peer shares the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kumix.extensions.proc.spin_wait import (
    CREDIT_MAX,
    PLACEMENT_EVERY,
    PROBE_EVERY,
    PROBE_EVERY_MAX,
    AdaptiveSpin,
    SpinGovernor,
    runnable_tasks,
    spin_until_readable,
)


def test_readable_pipe_is_seen_without_consuming_data() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"reply")
        assert spin_until_readable(read_fd, 1_000_000) is True
        assert os.read(read_fd, 16) == b"reply"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_silent_pipe_gives_up_after_the_budget() -> None:
    read_fd, write_fd = os.pipe()
    try:
        assert spin_until_readable(read_fd, 200_000) is False
        assert spin_until_readable(read_fd, 0) is False
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_closed_writer_counts_as_readable_so_the_reader_sees_eof() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    try:
        assert spin_until_readable(read_fd, 1_000_000) is True
        assert os.read(read_fd, 16) == b""
    finally:
        os.close(read_fd)


def test_governor_spins_while_spinning_pays() -> None:
    governor = SpinGovernor()
    for _ in range(100):
        assert governor.should_spin()
        governor.record(success=True)
    assert governor.credit == CREDIT_MAX


def test_governor_stops_when_spins_mostly_fail_and_probes_now_and_then() -> None:
    governor = SpinGovernor()
    failures = 0
    while governor.credit > 0:
        assert governor.should_spin()
        governor.record(success=False)
        failures += 1
    assert failures == 2, "the optimistic start survives two failed spins"
    decisions = [governor.should_spin() for _ in range(PROBE_EVERY * 4)]
    assert decisions.count(True) == 4, "one probe in every PROBE_EVERY waits"
    assert decisions[PROBE_EVERY - 1] is True
    # A probe that pays resumes spinning; one failure then stops it again.
    governor.record(success=True)
    assert governor.should_spin()
    governor.record(success=False)
    assert not governor.should_spin()


def gap_to_next_probe(governor: SpinGovernor) -> int:
    waits = 1
    while not governor.should_spin():
        waits += 1
    return waits


def test_failed_probes_back_off_and_a_paying_one_brings_them_back() -> None:
    governor = SpinGovernor()
    while governor.credit > 0:
        governor.should_spin()
        governor.record(success=False)
    gaps = []
    for _ in range(7):
        gaps.append(gap_to_next_probe(governor))
        governor.record(success=False)
    assert gaps == [32, 64, 128, 256, 512, 512, 512]
    assert PROBE_EVERY_MAX == 512
    assert gap_to_next_probe(governor) == PROBE_EVERY_MAX
    governor.record(success=True)
    assert governor.should_spin(), "a probe that pays resumes spinning at once"
    governor.record(success=False)  # a failed spin with credit left: no back-off yet
    assert gap_to_next_probe(governor) == PROBE_EVERY


def test_governor_gives_up_on_a_one_in_two_success_rate() -> None:
    governor = SpinGovernor()
    spun = 0
    for i in range(1000):
        if governor.should_spin():
            spun += 1
            governor.record(success=i % 2 == 0)
    assert spun < 1000 // PROBE_EVERY * 3, "alternating outcomes cost more than they win"


def test_a_peer_on_this_cpu_is_never_spun_for() -> None:
    # Our own pid is, by definition, last seen on the CPU we run on.
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"reply")
        beside = AdaptiveSpin(1_000_000, peer_pid=os.getpid())
        assert beside.wait(read_fd) is False, "blocking gives the CPU to the peer"
        assert beside.shares_cpu
        assert beside.governor.spins == 0
        apart = AdaptiveSpin(1_000_000)
        assert apart.wait(read_fd) is True
        assert apart.governor.successes == 1
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_placement_look_ups_reuse_two_descriptors_until_closed() -> None:
    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    read_fd, write_fd = os.pipe()
    before = open_fds()
    try:
        spin = AdaptiveSpin(1_000_000, peer_pid=os.getpid())
        for _ in range(PLACEMENT_EVERY * 3):
            assert spin.wait(read_fd) is False  # our own pid shares our CPU: never spun for
        assert len(open_fds() - before) == 2, "/proc/PID/stat and /proc/loadavg, opened once"
        assert spin.shares_cpu
        spin.close()
        assert open_fds() == before
        os.write(write_fd, b"reply")
        assert spin.wait(read_fd) is False, "a closed spin never spins again"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_peer_whose_proc_entry_cannot_be_opened_leaks_no_descriptor() -> None:
    # /proc/PID/stat of a worker the host may not see (hidepid, another uid) fails to open at
    # every look-up; the loadavg descriptor beside it must be opened once, not once per try.
    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    missing = next(p for p in range(pid_max - 1, 1, -1) if not os.path.exists(f"/proc/{p}"))
    read_fd, write_fd = os.pipe()
    before = open_fds()
    try:
        spin = AdaptiveSpin(1_000, peer_pid=missing)
        for _ in range(PLACEMENT_EVERY * 20):
            spin.wait(read_fd)
        assert len(open_fds() - before) == 1, "only /proc/loadavg, opened once"
        spin.close()
        assert open_fds() == before
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_silent_peer_teaches_the_spin_to_block() -> None:
    read_fd, write_fd = os.pipe()
    try:
        spin = AdaptiveSpin(50_000)
        results = [spin.wait(read_fd) for _ in range(PROBE_EVERY)]
        assert results == [False] * PROBE_EVERY
        assert spin.governor.spins <= 3, "two failures stop the spinning, a probe may follow"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_saturated_machine_is_never_spun_on() -> None:
    # More runnable tasks than CPUs: no vCPU idles, so no halt to avoid, only a neighbour's
    # time slice to lose. Burners make the machine saturated whatever else runs.
    cpus = len(os.sched_getaffinity(0))
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus + 1)
    ]
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"reply")
        # Ask until the burners run (they are runnable from their first instruction on).
        spin = AdaptiveSpin(1_000_000, peer_pid=burners[0].pid)
        while (runnable_tasks() or 0) <= cpus:
            pass
        assert spin.wait(read_fd) is False
        assert spin.machine_busy
        assert spin.governor.spins == 0
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        os.close(read_fd)
        os.close(write_fd)
