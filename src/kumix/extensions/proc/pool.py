"""One proc extension's worker pool: which call runs on which worker, and when to start or
retire a worker.

A sans-I/O state machine: events in (a call was submitted, a worker became ready, answered,
became unusable, was reaped …), decisions out (`Plan`: the calls to write to idle workers and
how many workers to start), time passed in. It never touches a process, a pipe or a clock;
`ProcSession` is the I/O shell that carries the decisions out, and the pool's tests drive it
with a fake clock and hostile sequences. Workers and calls are opaque hashable handles.

Rules:
- A worker runs one call at a time; a call is handed only to an idle, usable worker, the
  most recently used first (its caches and CPU placement are warmest).
- Worker slots (starting, serving or being reaped) never exceed `max_workers`
  (the policy's maxConcurrency), and calls accepted and not yet answered never exceed
  `max_workers + max_queue`.
- Starts: one per queued call no starting worker will take; and, once the extension is in
  use (`keep_warm`), enough to keep `1 + spare` worker slots — one warm worker for the next
  call plus `spare` already started (and so already confined) ones, ready to take over the
  moment a worker crashes or is killed. Spares start only once a worker is ready, so they
  never compete with the first worker's start, and a spare that replaces a crashed worker
  starts only at the time the shell gives (`defer_spares`), so its fork and confinement do not
  compete with the calls that follow the crash, which the spare already there serves. Spares
  are workers like any other: they count against `max_workers`, so against the policy's
  concurrency and memory bounds.
- An idle worker beyond the `1 + spare` kept ones is retired once it stayed idle for
  `idle_retire_s`: a burst may need max_workers processes, a quiet extension keeps few.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

W = TypeVar("W", bound=Hashable)
C = TypeVar("C", bound=Hashable)


@dataclass
class Plan(Generic[W, C]):
    """What the shell is to do now: write each call to its worker, start `starts` workers."""

    sends: list[tuple[W, C]] = field(default_factory=list)
    starts: int = 0


class PoolError(Exception):
    """An event that contradicts the pool's state: a bug in the shell, never input."""


class WorkerPool(Generic[W, C]):
    def __init__(self, *, max_workers: int, max_queue: int, spare: int = 0, idle_retire_s: float = 60.0) -> None:
        if max_workers < 1 or max_queue < 0 or spare < 0:
            raise ValueError("a pool needs max_workers >= 1, max_queue >= 0 and spare >= 0")
        self.max_workers = max_workers
        self.max_queue = max_queue
        self.spare = min(spare, max_workers - 1)
        """At most max_workers - 1: a spare is only a spare beside a worker that serves."""
        self.idle_retire_s = idle_retire_s
        self.keep_warm = False
        """Set by the first call (or `warm`): from then on a warm worker is kept."""
        self._queue: deque[C] = deque()
        self._workers: list[W] = []
        """Every worker that became ready and is not reaped yet, oldest first."""
        self._ready: set[W] = set()
        """The same workers, for membership tests on every answer."""
        self._unusable: set[W] = set()
        self._idle: list[W] = []
        """Usable workers with no call; the most recently used last (it is taken first)."""
        self._idle_since: dict[W, float] = {}
        self._running: dict[W, C] = {}
        self._running_on: dict[C, W] = {}
        self._slots = 0
        """Workers starting, serving or being reaped. At most max_workers."""
        self._starting = 0
        self._spares_after = float("-inf")
        """No spare starts before this time (`defer_spares`)."""

    # ------------------------------------------------------------ what the shell asks

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Usable workers running a call."""
        if not self._unusable:  # the common case, asked on every call
            return len(self._running)
        return sum(1 for w in self._running if w not in self._unusable)

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def workers(self) -> list[W]:
        """Every ready, not yet reaped worker, oldest first."""
        return list(self._workers)

    def next_idle(self) -> W | None:
        """The worker the next call is handed to (the most recently used idle one), if any."""
        return self._idle[-1] if self._idle else None

    def usable(self, worker: W) -> bool:
        return worker not in self._unusable and worker in self._ready

    def usable_workers(self) -> list[W]:
        return [w for w in self._workers if w not in self._unusable]

    def has_usable(self) -> bool:
        return any(w not in self._unusable for w in self._workers)

    def admits(self) -> bool:
        """Whether one more call may be accepted (running and queued calls are bounded)."""
        return self.busy + len(self._queue) < self.max_workers + self.max_queue

    def call_of(self, worker: W) -> C | None:
        return self._running.get(worker)

    def worker_of(self, call: C) -> W | None:
        """The worker running `call`, or None (queued, answered, or never seen)."""
        return self._running_on.get(call)

    def is_queued(self, call: C) -> bool:
        return call in self._queue

    @property
    def settled(self) -> bool:
        """Nothing for `plan` to do: no call queued and every kept worker slot taken (so a
        plan would neither send nor start). Asked after every answer."""
        return not self._queue and self._slots >= 1 + self.spare

    @property
    def surplus(self) -> bool:
        """More usable workers than the kept `1 + spare`: the retirement timer matters."""
        return len(self._workers) - len(self._unusable) > 1 + self.spare

    # ------------------------------------------------------------ calls

    def submit(self, call: C) -> None:
        """Queue an accepted call (the shell checked `admits` first); `plan` places it."""
        if call in self._running_on or call in self._queue:
            raise PoolError("call submitted twice")
        self._queue.append(call)
        self.keep_warm = True

    def run_now(self, call: C) -> W | None:
        """`submit` and `plan` in one step for the common case: when the extension is in use,
        nothing is queued, an idle worker is there and no start is wanted, `call` runs on the
        most recently used idle worker, which is returned (the shell writes the call to it).
        Otherwise None and nothing changed: the shell submits and plans as usual. Decides
        exactly as `submit` followed by `plan` would."""
        if self._queue or not self._idle or not self.keep_warm or self._slots < 1 + self.spare:
            return None
        if call in self._running_on:
            raise PoolError("call submitted twice")
        worker = self._idle.pop()
        del self._idle_since[worker]
        self._running[worker] = call
        self._running_on[call] = worker
        return worker

    def withdraw(self, call: C) -> bool:
        """A queued call leaves (its deadline passed, its caller went away); False if it was
        not queued (already running, answered, or never seen)."""
        try:
            self._queue.remove(call)
        except ValueError:
            return False
        return True

    def drain_queue(self) -> list[C]:
        """Every queued call, removed, oldest first (to be failed by the shell)."""
        queue, self._queue = list(self._queue), deque()
        return queue

    def take_call(self, worker: W) -> C | None:
        """The call `worker` runs, which no longer does (a deadline, the worker's end)."""
        call = self._running.pop(worker, None)
        if call is not None:
            del self._running_on[call]
        return call

    # ------------------------------------------------------------ workers

    def plan(self, now: float, *, may_start: bool, warm_wanted: bool = False) -> Plan[W, C]:
        """Hand queued calls to idle workers; then reserve the worker starts still needed.
        `may_start` is False while the crash circuit is open."""
        plan: Plan[W, C] = Plan()
        while self._queue and self._idle:
            worker = self._idle.pop()
            self._idle_since.pop(worker, None)
            call = self._queue.popleft()
            self._running[worker] = call
            self._running_on[call] = worker
            plan.sends.append((worker, call))
        if not may_start:
            return plan
        wanted = len(self._queue) - self._starting
        if self.keep_warm or warm_wanted:
            # Spares only once a worker is ready: started beside the first one, a spare's fork
            # and confinement would compete with it for the CPU and delay the first call.
            ready = len(self._workers) > len(self._unusable)
            spares = self.spare if ready and now >= self._spares_after else 0
            wanted = max(wanted, 1 + spares - self._slots)
        starts = max(0, min(wanted, self.max_workers - self._slots))
        self._slots += starts
        self._starting += starts
        plan.starts = starts
        return plan

    def defer_spares(self, until: float) -> None:
        """Start no spare before `until` (a worker just crashed: the calls after it come first).
        Starts for queued calls and for the one warm worker are not deferred."""
        self._spares_after = max(self._spares_after, until)

    def spares_deferred_until(self, now: float) -> float | None:
        """When a deferred spare start becomes due, if one is waiting for it: the shell plans
        again then."""
        if now < self._spares_after and self.keep_warm and self.spare and self._slots < 1 + self.spare:
            return self._spares_after
        return None

    def ready(self, worker: W, now: float) -> None:
        """A reserved start produced a worker that said hello: it is idle."""
        if self._starting <= 0:
            raise PoolError("a worker became ready that no start was reserved for")
        if worker in self._ready:
            raise PoolError("worker became ready twice")
        self._starting -= 1
        self._workers.append(worker)
        self._ready.add(worker)
        self._make_idle(worker, now)

    def start_failed(self) -> None:
        """A reserved start ended without a worker (failed, delayed past the circuit opening,
        or abandoned); its slot is free."""
        if self._starting <= 0 or self._slots <= 0:
            raise PoolError("a start failed that was never reserved")
        self._starting -= 1
        self._slots -= 1

    def answered(self, worker: W, now: float) -> C | None:
        """`worker` answered its call (returned, no longer running); it is idle again if usable.
        (take_call, usable and _make_idle written out: this runs on every answer.)"""
        call = self._running.pop(worker, None)
        if call is not None:
            del self._running_on[call]
        if worker in self._ready and worker not in self._unusable and worker not in self._idle:
            self._idle.append(worker)
            self._idle_since[worker] = now
        return call

    def unusable(self, worker: W) -> None:
        """`worker` is on its way out: no call is handed to it from now on. Idempotent."""
        if worker not in self._ready:
            return
        self._unusable.add(worker)
        self._forget_idle(worker)

    def gone(self, worker: W) -> C | None:
        """`worker` was reaped: its slot is free. Returns the call it still ran, if any."""
        if worker not in self._ready:
            raise PoolError("a worker was reaped that never became ready, or twice")
        call = self.take_call(worker)
        self._forget_idle(worker)
        self._workers.remove(worker)
        self._ready.discard(worker)
        self._unusable.discard(worker)
        self._slots -= 1
        return call

    def retire_due(self, now: float) -> list[W]:
        """Idle workers to stop now (beyond the kept `1 + spare`, idle for `idle_retire_s`),
        already marked unusable; the longest idle go first."""
        keep = 1 + self.spare
        retired: list[W] = []
        usable = len(self.usable_workers())
        for worker in sorted(self._idle, key=lambda w: self._idle_since[w]):
            if usable <= keep:
                break
            if now - self._idle_since[worker] >= self.idle_retire_s:
                self.unusable(worker)
                retired.append(worker)
                usable -= 1
        return retired

    def next_retire_at(self) -> float | None:
        """When `retire_due` may next return a worker, or None while none is beyond the kept ones."""
        if not self._idle or len(self._workers) - len(self._unusable) <= 1 + self.spare:
            return None
        return min(self._idle_since[w] for w in self._idle) + self.idle_retire_s

    def _make_idle(self, worker: W, now: float) -> None:
        self._idle.append(worker)
        self._idle_since[worker] = now

    def _forget_idle(self, worker: W) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
        self._idle_since.pop(worker, None)
