"""One proc extension's session: its pool of worker processes, its call queue, limits and crash policy.

A session is the asyncio shell around three sans-I/O state machines: each worker's
`HostChannel` (protocol.py: the frames), the `WorkerPool` (pool.py: which call runs where,
when to start or retire a worker) and the `CrashCircuit` (circuit.py: crash counting,
restart back-off, the open circuit). The session owns the processes, pipes, timers and
futures, feeds those machines events with the loop's clock, and carries out what they
decide. A worker answers one call at a time, so the session runs up to `maxConcurrency`
workers, started on demand from the fork server, and hands each call to an idle worker. A
call is written to a worker only when that worker is idle: when a worker ends (deadline,
crash, protocol violation, oversized output) exactly one call — the one it was running —
fails, and every queued call goes to another worker or to the replacement.

Ownership (structured concurrency): the session owns one task, `_run`, which holds a
TaskGroup; every worker has one task in it (`_slot`: start, serve until the process ends,
reap) and nothing else is ever spawned. Calls create no task: a call is a future resolved by
the worker's channel reader callback (a pipe transport the worker owns). Deadlines are a
fourth state machine (`DeadlineQueue`, deadlines.py) behind one loop timer per session, armed
for the earliest pending deadline, instead of a timer armed and cancelled for every call.
`dispose` fails every queued and running call at once, kills every worker, cancels
`_run` and waits for it, so no task and no process outlives it.

Limits (all from the policy's `proc` section):
- deadline: `Policy.effective_timeout_ms(manifest)` end to end, queueing and worker start
  included. A call that expires while queued fails with `timeout` and kills nothing; one that
  expires on a worker fails with `timeout` and that worker is killed and replaced.
- input: params larger than maxInputBytes fail with `input_too_large` before queueing.
- output: a frame header larger than maxOutputBytes + envelope is refused before its body is
  read: that worker's call fails with `output_too_large` and the worker is killed; the worker
  runtime itself refuses a larger result with `output_too_large` and keeps running.
- concurrency: at most maxConcurrency worker processes (so calls running at once), and at most
  maxConcurrency + maxQueue calls accepted and not yet answered; beyond that `unavailable` at
  once, before anything is queued.
- memory/CPU: rlimits in each worker; running out surfaces as `resource_limit`.

Crash policy (per extension, whichever worker crashed): every worker end the host did not
ask for (exit, signal, kill after a deadline, protocol violation, a failed start) counts as a
crash. The first replacement in a window starts immediately, so the next call finds a warm
worker; further starts within the window back off exponentially. After maxCrashes within
crashWindowSeconds the session answers `unavailable` (queued calls too) until the oldest of
those crashes leaves the window or the extension is re-enabled (`reset`).

Spare workers (policy `spareWorkers`): once the extension is in use the pool keeps that many
workers started — forked, confined and past their hello — beside the warm one, so a crashed
or killed worker's successor is already there and the next call pays no start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumix.core.errors import (
    BadRequest,
    CallTimeout,
    CapabilityNotDeclared,
    CircuitOpen,
    ConfinementUnavailable,
    Crashed,
    Disabled,
    KumixError,
    OutputTooLarge,
    PolicyDenied,
    ProtocolError,
    ResourceLimit,
    Unavailable,
    error_from_code,
)
from kumix.extensions.manifest import Manifest
from kumix.extensions.policy import Policy
from kumix.extensions.proc.circuit import CrashCircuit
from kumix.extensions.proc.deadlines import DeadlineQueue
from kumix.extensions.proc.early_exit import zombie_status
from kumix.extensions.proc.exit_codes import EXIT_RESOURCE_LIMIT
from kumix.extensions.proc.pool import WorkerPool
from kumix.extensions.proc.preload import entry_preloads
from kumix.extensions.proc.protocol import (
    Failure,
    FrameTooLarge,
    Hello,
    HelloFailed,
    HostChannel,
    RawParams,
    Reply,
    encode_params,
)
from kumix.extensions.proc.results import check_result
from kumix.extensions.proc.spawner import ForkServer, SpawnedWorker
from kumix.extensions.proc.spin_wait import HOST_SPIN_NS, AdaptiveSpin
from kumix.extensions.proc.stats import CallStats
from kumix.extensions.proc.worker_spec import WorkerSpec

log = logging.getLogger("kumix.proc")

STARTUP_TIMEOUT_S = 10.0
"""From fork to hello. A fork-server child is ready in a few ms; importing a heavy entry
file on a loaded machine can take seconds. Beyond this the worker counts as crashed."""
EXIT_STATUS_WAIT_S = 2.0
"""After a kill, how long to wait for the fork server's exit report (normally well under a
millisecond) before releasing the worker's resources anyway."""
CHANNEL_CLOSED_GRACE_S = 0.2
"""An exiting worker is reported by the fork server within microseconds of closing its
channel; one still running this long after is hiding and gets killed."""
IDLE_RETIRE_S = 60.0
"""A worker beyond the kept ones (the warm one and the policy's spares) that stayed idle
this long is stopped: a burst may need maxConcurrency processes, each up to maxMemoryMb, but
a quiet extension keeps few."""
SPARE_RESTART_DELAY_S = 0.025
"""After a crash, the spare that replaces the crashed worker starts this much later: its fork
and confinement (tens of ms of CPU) would otherwise compete with the calls right after the crash,
which the spare already running serves. Measured on 2 cores: starting it at once added about
2 ms to the first call after a crash (docs/proc-extensions.md)."""
PING_METHOD = "ping"
_PING_PARAMS: dict[str, Any] = {}
"""Never mutated: encode_params answers an empty dict with a constant."""


def fresh(error: KumixError) -> Callable[[], KumixError]:
    """A factory of copies: each failed future gets its own exception instance."""
    cls = type(error)
    return lambda: cls(error.message)


def worker_error(code: str, message: str) -> KumixError:
    return error_from_code(code, message)


@dataclass(eq=False, slots=True)
class _Call:
    """One accepted call: queued, then running on exactly one worker (the pool knows which)."""

    method: str
    params: RawParams
    deadline: float
    future: asyncio.Future[Any] = field(repr=False)


class _ChannelReader(asyncio.Protocol):
    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def data_received(self, data: bytes) -> None:
        self.worker.on_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.on_channel_closed()


class _Worker:
    """One worker process as the host sees it: channel, the call it runs, exit status."""

    def __init__(self, session: ProcSession, spawned: SpawnedWorker, channel: HostChannel) -> None:
        self.session = session
        self.pid = spawned.pid
        self.exited = spawned.exited
        self.channel = channel
        self.loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        # A worker can fail before anyone awaits its hello (killed during start-up).
        self.hello.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.kill_reason: str | None = None
        self.stopped_by_host = False
        """Ended by the host's own choice (dispose, idle retirement): not a crash."""
        self.crash_counted = False
        """Its end was counted with the crash circuit (from its zombie or its exit report)."""
        self.ready = False
        """Past its hello and handed to the pool (`ProcSession._on_ready`)."""
        self._grace: asyncio.TimerHandle | None = None
        self.reply_fd: int | None = None
        self.read_transport: asyncio.ReadTransport | None = None
        self.write_transport: asyncio.WriteTransport | None = None
        self.spin = AdaptiveSpin(HOST_SPIN_NS, peer_pid=spawned.pid)
        """Learns whether waiting for this worker's replies by spinning pays."""
        self._watching_exit = False
        try:
            self.pidfd: int | None = os.pidfd_open(spawned.pid)
        except ProcessLookupError:
            self.pidfd = None

    async def connect(self, read_fd: int, write_fd: int) -> None:
        loop = self.loop
        reader = os.fdopen(read_fd, "rb", buffering=0)
        writer = os.fdopen(write_fd, "wb", buffering=0)
        self.reply_fd = read_fd
        self.read_transport, _ = await loop.connect_read_pipe(lambda: _ChannelReader(self), reader)
        self.write_transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, writer)

    def send(self, call: _Call, now: float) -> None:
        """Write `call` to this worker, which the pool just gave it (its only call until answered)."""
        transport = self.write_transport
        assert transport is not None
        remaining_ms = max(1, int((call.deadline - now) * 1000))
        _, frame = self.channel.send_request(call.method, call.params, remaining_ms)
        transport.write(frame)
        if self.reply_fd is not None and transport.get_write_buffer_size() == 0:
            # Keep this vCPU awake for a fast answer instead of sleeping in the event loop
            # and paying a wake-up, while that pays (spin_wait.py); the transport still
            # reads the reply.
            self.spin.wait(self.reply_fd)

    def on_data(self, data: bytes) -> None:
        if self.kill_reason is not None:
            return
        violation: ProtocolError | None = None
        try:
            events = self.channel.receive_data(data)
        except ProtocolError as exc:
            # Unusable first, so an answer that came before the violation does not make it idle.
            violation = exc
            self.kill(f"protocol violation: {exc.message}")
            events = self.channel.before_error
        for event in events:
            if type(event) is Reply:
                # The channel accepts only the pending id, and a worker has one call at a time.
                self.session.on_answer(self, event.result, None)
            elif type(event) is Failure:
                self.session.on_answer(self, None, worker_error(event.code, event.message))
            elif isinstance(event, Hello):
                if not self.hello.done():
                    self.hello.set_result(event.info)
            elif isinstance(event, HelloFailed) and not self.hello.done():
                self.hello.set_exception(worker_error(event.code, event.message))
        if violation is not None:
            self.session.on_protocol_violation(self, violation)

    def on_channel_closed(self) -> None:
        self.channel.receive_eof()
        if not self.hello.done():
            self.hello.set_exception(Crashed("worker exited before it was ready"))
        # A worker that closed its end of the channel but kept running is of no use. One that
        # is merely exiting closes it too, a moment before it ends; the grace keeps its own
        # exit status (an exit code, a signal) as the reason the caller sees.
        self.session.on_unusable(self)
        if not self.exited.done():
            self._grace = self.loop.call_later(CHANNEL_CLOSED_GRACE_S, self._kill_silent)
            self._watch_exit()

    def _watch_exit(self) -> None:
        """Learn the worker's status from its zombie as soon as it is one (early_exit.py),
        ahead of the fork server's report, for the call it was running."""
        if self.pidfd is not None and not self._watching_exit:
            self._watching_exit = True
            self.loop.add_reader(self.pidfd, self._on_exit_readable)

    def _stop_watching_exit(self) -> None:
        if self._watching_exit and self.pidfd is not None:
            self._watching_exit = False
            self.loop.remove_reader(self.pidfd)

    def _on_exit_readable(self) -> None:
        self._stop_watching_exit()  # readable for good once the process has ended
        if self.pidfd is None or self.exited.done():
            return
        status = zombie_status(self.pid, self.pidfd, self.session.limits.max_cpu_seconds)
        if status is not None:
            self.session.on_zombie(self, status)

    def _kill_silent(self) -> None:
        if not self.exited.done():
            self.kill("it closed its channel but kept running")

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        self.session.on_unusable(self)
        if self.pidfd is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        self.spin.close()
        self._stop_watching_exit()
        if self._grace is not None:
            self._grace.cancel()
        for transport in (self.read_transport, self.write_transport):
            if transport is not None:
                transport.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if not self.hello.done():
            self.hello.cancel()


class ProcSession:
    """The only path to one extension's workers."""

    def __init__(
        self,
        *,
        extension_id: str,
        extension_dir: Path,
        manifest: Manifest,
        policy: Policy,
        forkserver: ForkServer,
        logs_dir: Path,
        scratch_dir: Path | None = None,
    ) -> None:
        self.extension_id = extension_id
        self.extension_dir = extension_dir
        self.manifest = manifest
        self.policy = policy
        self.limits = policy.proc
        self.timeout_ms = policy.effective_timeout_ms(manifest)
        self._timeout_s = self.timeout_ms / 1000
        self.stats = CallStats(gauges=self._gauges)
        self._forkserver = forkserver
        self._log_path = logs_dir / f"{extension_id}.log"
        self._logs_dir = logs_dir
        self._scratch_dir = scratch_dir
        self._entry_preloads: tuple[str, ...] | None = None
        """What the fork server should import before forking this extension's workers (read
        from the entry file once, at the first spawn)."""
        self._owner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first call: every future, timer and transport of the session lives
        on it. Kept rather than asked for per call: `asyncio.get_running_loop()` makes a
        getpid(2) system call each time on Python 3.11 (its fork check), three per round trip."""
        self._tasks: asyncio.TaskGroup | None = None
        self._pool: WorkerPool[_Worker, _Call] = WorkerPool(
            max_workers=self.limits.max_concurrency,
            max_queue=self.limits.max_queue,
            spare=self.limits.spare_workers,
            idle_retire_s=IDLE_RETIRE_S,
        )
        self._circuit = CrashCircuit(
            max_crashes=self.limits.max_crashes, window_s=self.limits.crash_window_seconds
        )
        self._retire_timer: asyncio.TimerHandle | None = None
        self._spare_timer: asyncio.TimerHandle | None = None
        self._deadlines: DeadlineQueue[_Call] = DeadlineQueue()
        self._deadline_timer: asyncio.TimerHandle | None = None
        """The one loop timer behind `_deadlines`, armed for its earliest deadline (or earlier:
        a call answered before its deadline leaves the timer where it is)."""
        self._warmers: list[asyncio.Future[None]] = []
        self._unreplaced = 0
        """Crashes whose replacement has not said hello yet (each hello counts a restart)."""
        self._disposed: KumixError | None = None
        self.worker_pids: list[int] = []
        """Every worker pid this session started, oldest first (tests check none survives)."""

    # ------------------------------------------------------------ public API

    @property
    def idle_retire_s(self) -> float:
        return self._pool.idle_retire_s

    @idle_retire_s.setter
    def idle_retire_s(self, seconds: float) -> None:
        self._pool.idle_retire_s = seconds

    @property
    def current_pid(self) -> int | None:
        """The pid of the oldest usable worker (the warm one), if any."""
        return next((w.pid for w in self._pool.usable_workers()), None)

    @property
    def serving_pid(self) -> int | None:
        """The pid of the worker the next call goes to: the most recently used idle one, which
        with spares is not always the oldest (`current_pid`); else the oldest usable one."""
        worker = self._pool.next_idle()
        return worker.pid if worker is not None else self.current_pid

    @property
    def live_pids(self) -> list[int]:
        """Pids of every worker not yet reaped."""
        return [w.pid for w in self._pool.workers]

    @property
    def queue_depth(self) -> int:
        return self._pool.queued

    @property
    def busy_workers(self) -> int:
        return self._pool.busy

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call `method` in a worker; governance first, then limits, then the call."""
        loop = self._loop or self._bind_loop()
        started = loop.time()
        self.stats.calls += 1
        try:
            capability = self.manifest.capability_for(method)
            if capability is None:
                raise CapabilityNotDeclared(f"{self.extension_id} does not declare method {method!r}")
            if not self.policy.allows(capability):
                raise PolicyDenied(f"policy {self.policy.name!r} does not allow capability {capability!r}")
            if not isinstance(params, dict):
                raise BadRequest("params must be a JSON object")
            call = self._submit(method, params, started)
            try:
                answer = await call.future
            finally:
                if not call.future.done():
                    self._abandon(call)
            result = check_result(method, answer)
        except KumixError as exc:
            self.stats.record_error(exc.code)
            raise
        self.stats.record_ok(loop.time() - started)
        return result

    async def ping(self) -> float:
        """Round trip of the runtime's built-in `ping` on an idle worker, in seconds."""
        loop = self._loop or self._bind_loop()
        started = loop.time()
        call = self._submit(PING_METHOD, _PING_PARAMS, started)
        try:
            await call.future
        finally:
            if not call.future.done():
                self._abandon(call)
        return loop.time() - started

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    async def warm(self) -> None:
        """Start a worker now (and the policy's spares), so the first call does not wait for it."""
        self._check_open()
        self._pool.keep_warm = True
        if self._pool.has_usable():
            self._dispatch()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._warmers.append(waiter)
        self._dispatch()
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._warmers.remove(waiter)

    async def reset(self) -> None:
        """Re-enabled: forget the crash history, so the circuit closes."""
        self._circuit.reset()

    async def dispose(self, error: KumixError | None = None) -> None:
        """Stop every worker; running and queued calls fail with `error` (default `disabled`)."""
        if self._disposed is None:
            self._disposed = error or Disabled(f"extension {self.extension_id!r} was disabled")
            make = fresh(self._disposed)
            self._pool.keep_warm = False
            if self._retire_timer is not None:
                self._retire_timer.cancel()
            if self._spare_timer is not None:
                self._spare_timer.cancel()
                self._spare_timer = None
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
                self._deadline_timer = None
            for call in self._pool.drain_queue():
                self._finish(call, None, make())
            for worker in self._pool.workers:
                worker.stopped_by_host = True
                running = self._pool.take_call(worker)
                if running is not None:
                    self._finish(running, None, make())
                worker.kill("the session was disposed")
            self._fail_warmers(self._disposed)
            if self._owner is not None:
                self._owner.cancel()
        owner = self._owner
        if owner is not None:
            # Not `await owner`: that would swallow a cancellation aimed at our own caller.
            await asyncio.wait({owner})
            if not owner.cancelled() and owner.exception() is not None:
                log.error("proc %s: session task failed", self.extension_id, exc_info=owner.exception())

    # ------------------------------------------------------------ calls

    def _check_open(self, now: float | None = None) -> None:
        if self._disposed is not None:
            raise fresh(self._disposed)()
        if now is None:
            now = (self._loop or self._bind_loop()).time()
        if self._circuit.is_open(now):
            raise CircuitOpen(
                f"{self.extension_id} crashed {self._circuit.crashes_in_window(now)} times in "
                f"{self.limits.crash_window_seconds} s; retry in {self._circuit.open_for(now):.1f} s or re-enable it",
                details={"retry_after_ms": int(self._circuit.open_for(now) * 1000)},
            )

    def _submit(self, method: str, params: dict[str, Any], started: float) -> _Call:
        """Accept a call (or raise why not) and hand it to a worker or the queue; the caller
        awaits `call.future` (not a coroutine of its own: one frame less per round trip) and
        calls `_abandon` if it stops waiting before the answer."""
        if self._disposed is not None or self._circuit.is_open(started):
            self._check_open(started)  # raises the reason
        raw = encode_params(params, self.limits.max_input_bytes)
        pool = self._pool
        loop = self._loop or self._bind_loop()
        call = _Call(method, raw, started + self._timeout_s, loop.create_future())
        # The common case (an idle warm worker, nothing queued, nothing to start) skips the
        # pool's full plan; `run_now` decides exactly as `submit` + `plan` would. It places a
        # call only on an idle usable worker with nothing queued, which the concurrency and
        # queue bounds always admit (busy < maxConcurrency, queued = 0), so the `admits`
        # check is needed only for a call that is to be queued.
        worker = pool.run_now(call)
        if worker is None and not pool.admits():
            limits = self.limits
            raise Unavailable(
                f"{self.extension_id} is busy: {pool.busy} calls running and {pool.queued} queued "
                f"(maxConcurrency {limits.max_concurrency}, maxQueue {limits.max_queue})"
            )
        if self._deadlines.add(call, call.deadline):
            self._arm_deadlines()
        if worker is not None:
            worker.send(call, started)
        else:
            pool.submit(call)
            self._dispatch()
        return call

    def _abandon(self, call: _Call) -> None:
        """The caller went away. A queued call just leaves; a running one keeps its deadline,
        which still ends a worker that never answers."""
        call.future.cancel()
        if self._pool.withdraw(call):
            self._deadlines.remove(call)

    def _finish(self, call: _Call, result: Any, error: KumixError | None) -> None:
        self._deadlines.remove(call)
        future = call.future
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _arm_deadlines(self) -> None:
        """(Re-)arm the session's one deadline timer for the earliest pending deadline."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        at = self._deadlines.wake_at()
        if at is not None and self._disposed is None:
            self._deadline_timer = asyncio.get_running_loop().call_at(at, self._on_deadlines)

    def _on_deadlines(self) -> None:
        self._deadline_timer = None
        for call in self._deadlines.due(asyncio.get_running_loop().time()):
            self._on_deadline(call)
        self._arm_deadlines()

    def _on_deadline(self, call: _Call) -> None:
        if self._pool.withdraw(call):
            self._finish(
                call, None,
                CallTimeout(f"{self.extension_id}: no worker was free for {call.method} within {self.timeout_ms} ms"),
            )
            return
        worker = self._pool.worker_of(call)
        if worker is None:
            return  # answered meanwhile
        self._pool.take_call(worker)
        self._finish(
            call, None, CallTimeout(f"{self.extension_id}: {call.method} did not answer within {self.timeout_ms} ms")
        )
        worker.kill(f"a call to {call.method} exceeded its deadline")

    def on_answer(self, worker: _Worker, result: Any, error: KumixError | None) -> None:
        pool = self._pool
        call = pool.answered(worker, worker.loop.time())
        if call is not None:
            self._finish(call, result, error)
        if not pool.settled:
            self._dispatch()  # a queued call for the now idle worker, or a start to make
        elif pool.surplus:
            self._schedule_retirement()

    def on_protocol_violation(self, worker: _Worker, exc: ProtocolError) -> None:
        worker.kill(f"protocol violation: {exc.message}")
        log.warning("proc %s pid %d broke the protocol: %s", self.extension_id, worker.pid, exc.message)
        call = self._pool.take_call(worker)
        if call is None:
            return
        if isinstance(exc, FrameTooLarge):
            # A worker runs one call at a time: the oversized reply can only be its answer.
            error: KumixError = OutputTooLarge(
                f"{self.extension_id}: reply of {exc.declared} bytes exceeds maxOutputBytes "
                f"({self.limits.max_output_bytes}); the worker was stopped"
            )
        else:
            error = Crashed(f"{self.extension_id}: worker broke the protocol ({exc.message})")
        self._finish(call, None, error)

    def on_unusable(self, worker: _Worker) -> None:
        """A worker is on its way out: no call is sent to it from now on."""
        self._pool.unusable(worker)

    def on_zombie(self, worker: _Worker, status: int) -> None:
        """A worker has ended with `status` (read from its zombie, early_exit.py): its call
        fails now, with the reason the exit report would give, and the crash counts now too, so
        a caller that sees the error sees the circuit that error may have opened; the report
        still reaps the worker (`_on_worker_end`, which does not count it again)."""
        call = self._pool.take_call(worker)
        if call is not None:
            self._finish(call, None, self._exit_error(worker, status))
        self._count_crash_of(worker)

    def _count_crash_of(self, worker: _Worker) -> None:
        # A worker that never became ready is a failed start, counted by `_start_failed`.
        if worker.ready and not worker.stopped_by_host and not worker.crash_counted:
            worker.crash_counted = True
            self._pool.defer_spares(asyncio.get_running_loop().time() + SPARE_RESTART_DELAY_S)
            self._record_crash()

    # ------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        """Carry out the pool's plan: hand queued calls to idle workers, start workers."""
        if self._disposed is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        tasks = self._tasks
        plan = self._pool.plan(
            now, may_start=tasks is not None and not self._circuit.is_open(now), warm_wanted=bool(self._warmers)
        )
        for worker, call in plan.sends:
            worker.send(call, now)
        if tasks is None:
            if self._owner is None:
                self._owner = loop.create_task(self._run(), name=f"kumix-proc-{self.extension_id}")
            # _run dispatches again once its task group is open
        else:
            for _ in range(plan.starts):
                tasks.create_task(self._slot(), name=f"kumix-proc-{self.extension_id}-worker")
        self._schedule_retirement()
        self._schedule_spares(now)

    def _schedule_spares(self, now: float) -> None:
        at = self._pool.spares_deferred_until(now)
        timer = self._spare_timer
        if timer is not None and (at is None or timer.when() != at):
            timer.cancel()
            self._spare_timer = timer = None
        if at is not None and timer is None and self._disposed is None:
            self._spare_timer = asyncio.get_running_loop().call_at(at, self._spares_due)

    def _spares_due(self) -> None:
        self._spare_timer = None
        self._dispatch()

    def _schedule_retirement(self) -> None:
        at = self._pool.next_retire_at()
        timer = self._retire_timer
        if timer is not None and at is not None and timer.when() == at:
            return  # asked on every dispatch: keep the timer that is already right
        if timer is not None:
            timer.cancel()
            self._retire_timer = None
        if at is not None and self._disposed is None:
            self._retire_timer = asyncio.get_running_loop().call_at(at, self._retire)

    def _retire(self) -> None:
        self._retire_timer = None
        for worker in self._pool.retire_due(asyncio.get_running_loop().time()):
            worker.stopped_by_host = True
            worker.kill("idle beyond the kept workers")
        self._schedule_retirement()

    async def _run(self) -> None:
        """The session's one task: owns every worker task until dispose cancels it."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._dispatch()
                await asyncio.get_running_loop().create_future()  # until dispose
        finally:
            self._tasks = None

    async def _slot(self) -> None:
        """One worker from start to reap (a start the pool reserved). Never raises: a bug is
        logged and fails its calls."""
        worker: _Worker | None = None
        starting = True
        loop = asyncio.get_running_loop()
        try:
            delay = self._circuit.start_delay(loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
            if self._disposed is not None or self._circuit.is_open(loop.time()):
                return
            try:
                worker = await self._start_worker()
            except ConfinementUnavailable as exc:
                # Deterministic: retrying cannot help until the machine or policy changes.
                self._start_failed(exc, crash=False)
                return
            except KumixError as exc:
                self._start_failed(exc, crash=True)
                return
            self._on_ready(worker)
            starting = False
            # Shielded: cancelling this task must not cancel the fork server's exit report,
            # which _stop still waits for.
            status = await asyncio.shield(worker.exited)
            self._on_worker_end(worker, status)
        except Exception as exc:  # a bug here must not take the other workers down
            log.exception("proc %s: worker task failed", self.extension_id)
            self._start_failed(Crashed(f"{self.extension_id}: host error {type(exc).__name__}"), crash=True)
        finally:
            if worker is not None:
                await self._stop(worker)
            if worker is not None and worker in self._pool.workers:
                self._pool.gone(worker)
            elif starting:
                self._pool.start_failed()
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                # Cancelled means the task group is closing: it takes no new worker task.
                self._dispatch()

    def _on_ready(self, worker: _Worker) -> None:
        worker.ready = True
        if self._unreplaced:
            self._unreplaced -= 1
            self.stats.restarts += 1
        self._pool.ready(worker, asyncio.get_running_loop().time())
        for waiter in self._warmers:
            if not waiter.done():
                waiter.set_result(None)
        self._dispatch()

    def _on_worker_end(self, worker: _Worker, status: int | None) -> None:
        self._pool.unusable(worker)
        call = self._pool.take_call(worker)
        if call is not None:
            self._finish(call, None, self._exit_error(worker, status))
        self._count_crash_of(worker)

    def _start_failed(self, error: KumixError, *, crash: bool) -> None:
        """A worker could not start. With no other worker to wait for, waiting calls get the reason."""
        self._pool.keep_warm = False
        if not self._pool.has_usable():
            make = fresh(error)
            for call in self._pool.drain_queue():
                self._finish(call, None, make())
            self._fail_warmers(error)
        if crash:
            self._record_crash()

    def _fail_warmers(self, error: KumixError) -> None:
        make = fresh(error)
        for waiter in self._warmers:
            if not waiter.done():
                waiter.set_exception(make())

    def _record_crash(self) -> None:
        """Count a crash with the circuit; when it opens, fail everything waiting."""
        now = asyncio.get_running_loop().time()
        self.stats.crashes += 1
        self._unreplaced += 1
        verdict = self._circuit.crash(now)
        if verdict.opened:
            window = self.limits.crash_window_seconds
            log.warning(
                "proc %s crashed %d times within %d s; answering unavailable for %.1f s",
                self.extension_id, verdict.crashes_in_window, window, verdict.start_at - now,
            )
            self._pool.keep_warm = False
            unavailable = CircuitOpen(f"{self.extension_id} is crashing repeatedly; retry later or re-enable it")
            for call in self._pool.drain_queue():
                self._finish(call, None, fresh(unavailable)())
            self._fail_warmers(unavailable)
    def _exit_error(self, worker: _Worker, status: int | None) -> KumixError:
        name = self.extension_id
        if status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_RESOURCE_LIMIT:
            return ResourceLimit(f"{name}: worker ran out of memory (maxMemoryMb {self.limits.max_memory_mb})")
        if status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
            return ResourceLimit(f"{name}: worker used up its CPU time (maxCpuSeconds {self.limits.max_cpu_seconds})")
        if worker.kill_reason is not None:
            return Crashed(f"{name}: worker was stopped: {worker.kill_reason}")
        if status is None:
            return Crashed(f"{name}: worker vanished with the fork server")
        if os.WIFSIGNALED(status):
            return Crashed(f"{name}: worker was killed by {signal.Signals(os.WTERMSIG(status)).name}")
        return Crashed(f"{name}: worker exited with status {os.WEXITSTATUS(status)}")

    # ------------------------------------------------------------ workers

    async def _stop(self, worker: _Worker) -> None:
        """Kill (if still alive), wait for the exit report, release every resource."""
        self.on_unusable(worker)
        if not worker.exited.done():
            worker.kill(worker.kill_reason or "stopped by the host")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_STATUS_WAIT_S)
        call = self._pool.take_call(worker)
        if call is not None:
            self._finish(call, None, fresh(self._disposed or Crashed(f"{self.extension_id}: worker stopped"))())
        worker.close()

    def _gauges(self) -> dict[str, int]:
        pool = self._pool
        return {"workers": len(pool.usable_workers()), "busy": pool.busy, "queued": pool.queued}

    def _open_log(self) -> int:
        """The extension's log, rotated once it passed half its cap: the workers may write up
        to maxLogBytes into it (RLIMIT_FSIZE), so at most twice that stays on disk."""
        self._logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if self._log_path.stat().st_size >= self.limits.max_log_bytes // 2:
                os.replace(self._log_path, self._log_path.with_suffix(".log.1"))
        return os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _spec(self) -> WorkerSpec:
        limits = self.limits
        if self._entry_preloads is None:
            self._entry_preloads = entry_preloads(self.extension_dir / self.manifest.entry)
        return WorkerSpec(
            extension_id=self.extension_id,
            extension_dir=str(self.extension_dir),
            entry=self.manifest.entry,
            manifest=self.manifest.to_json(),
            max_memory_mb=limits.max_memory_mb,
            max_cpu_seconds=limits.max_cpu_seconds,
            max_log_bytes=limits.max_log_bytes,
            max_input_bytes=limits.max_input_bytes,
            max_output_bytes=limits.max_output_bytes,
            require_confinement=limits.require_confinement,
            max_tasks=limits.max_tasks_per_worker,
            allow_without_namespaces=limits.allow_without_namespaces,
            scratch_dir=str(self._scratch_dir) if self._scratch_dir is not None else None,
            preload=self._entry_preloads,
        )

    async def _start_worker(self) -> _Worker:
        request_read, request_write = os.pipe2(os.O_CLOEXEC)
        reply_read, reply_write = os.pipe2(os.O_CLOEXEC)
        host_fds = [request_write, reply_read]
        try:
            log_fd = self._open_log()
            try:
                spawned = await self._forkserver.spawn(self._spec(), (request_read, reply_write, log_fd))
            finally:
                os.close(log_fd)
        except BaseException:
            for fd in host_fds:
                os.close(fd)
            raise
        finally:
            os.close(request_read)
            os.close(reply_write)
        self.worker_pids.append(spawned.pid)
        worker = _Worker(
            self,
            spawned,
            HostChannel(max_input_bytes=self.limits.max_input_bytes, max_output_bytes=self.limits.max_output_bytes),
        )
        try:
            await worker.connect(reply_read, request_write)
            try:
                async with asyncio.timeout(STARTUP_TIMEOUT_S):
                    info = await worker.hello
            except TimeoutError:
                worker.kill(f"no hello within {STARTUP_TIMEOUT_S} s")
                raise Crashed(
                    f"{self.extension_id}: worker did not become ready within {STARTUP_TIMEOUT_S} s"
                ) from None
        except BaseException:
            await self._stop(worker)
            raise
        if not info.get("confined") and self.limits.require_confinement:
            # The worker confines itself before it says hello, so this should never happen;
            # if it does (a broken layer, a forged hello), a required confinement wins.
            await self._stop(worker)
            raise ConfinementUnavailable(
                f"{self.extension_id}: worker reported that it is not fully confined, "
                f"which policy {self.policy.name!r} requires"
            )
        if not info.get("confined"):
            log.warning(
                "proc %s pid %d runs without full confinement (policy %r does not require it): %s",
                self.extension_id, worker.pid, self.policy.name, str(info.get("warning"))[:500],
            )
        return worker
