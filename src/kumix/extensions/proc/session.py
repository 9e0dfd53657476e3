"""One proc extension's session: its worker process, pending calls, limits and crash policy.

A session is the thin asyncio layer around the sans-I/O `HostChannel`. It owns exactly one
task, the supervisor, which starts a worker, waits for it to end, fails whatever was still
pending, and restarts it after a backoff — or stops when the crash budget is spent. Calls
never create tasks: a call is a future resolved by the channel's reader callback, with a
timer for its deadline.

Limits (all from the policy's `proc` section):
- deadline: `Policy.effective_timeout_ms(manifest)` end to end, queueing included. A call
  that expires after it was sent fails with `timeout`; its worker is killed and replaced,
  and the other calls in flight on that worker fail with `crashed`.
- input: params larger than maxInputBytes fail with `input_too_large` before queueing.
- output: a frame header larger than maxOutputBytes + envelope is refused before its body
  is read; the worker runtime itself refuses a larger result with `output_too_large`.
- concurrency: at most maxConcurrency calls in flight per extension, at most maxQueue
  waiting; beyond that `unavailable` at once.
- memory/CPU: rlimits in the worker; running out surfaces as `resource_limit`.

Crash policy: every worker end the host did not ask for (exit, signal, kill after a timeout,
protocol violation) counts as a crash. The first restart is immediate so the next call finds
a warm worker; further restarts within the window back off exponentially. After maxCrashes
within crashWindowSeconds the session answers `unavailable` until the oldest of those crashes
leaves the window or the extension is re-enabled (`reset`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kumix.core.errors import (
    BadRequest,
    CallTimeout,
    CapabilityNotDeclared,
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
from kumix.extensions.proc.protocol import (
    ChannelState,
    Failure,
    FrameTooLarge,
    Hello,
    HelloFailed,
    HostChannel,
    Reply,
    encode_params,
)
from kumix.extensions.proc.results import check_result
from kumix.extensions.proc.spawner import ForkServer, SpawnedWorker
from kumix.extensions.proc.stats import CallStats
from kumix.extensions.proc.worker import WorkerSpec
from kumix.sdk.proc import EXIT_RESOURCE_LIMIT

log = logging.getLogger("kumix.proc")

STARTUP_TIMEOUT_S = 10.0
"""From fork to hello. A fork-server child is ready in a few ms; importing a heavy entry
file on a loaded machine can take seconds. Beyond this the worker counts as crashed."""
EXIT_STATUS_WAIT_S = 2.0
"""After the channel closes, how long to wait for the fork server's exit report (normally
well under a millisecond) before treating the worker as crashed for an unknown reason."""
RESTART_BACKOFF_BASE_S = 0.05
"""The second crash in a window waits 50 ms, the third 100 ms, then 200 ms …"""
RESTART_BACKOFF_MAX_S = 5.0
"""… up to 5 s, so a crash-looping extension costs at most one fork every few seconds."""
CHANNEL_CLOSED_GRACE_S = 0.2
"""An exiting worker is reported by the fork server within microseconds of closing its
channel; one still running this long after is hiding and gets killed."""
PING_METHOD = "ping"


def fresh(error: KumixError) -> Callable[[], KumixError]:
    """A factory of copies: each failed future gets its own exception instance."""
    cls = type(error)
    return lambda: cls(error.message)


def worker_error(code: str, message: str) -> KumixError:
    return error_from_code(code, message)


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
    """One worker process as the host sees it: channel, pending futures, exit status."""

    def __init__(self, session: ProcSession, spawned: SpawnedWorker, channel: HostChannel) -> None:
        self.session = session
        self.pid = spawned.pid
        self.exited = spawned.exited
        self.channel = channel
        self.calls: dict[int, asyncio.Future[Any]] = {}
        self.hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.kill_reason: str | None = None
        self._grace: asyncio.TimerHandle | None = None
        self.read_transport: asyncio.ReadTransport | None = None
        self.write_transport: asyncio.WriteTransport | None = None
        try:
            self.pidfd: int | None = os.pidfd_open(spawned.pid)
        except ProcessLookupError:
            self.pidfd = None

    @property
    def usable(self) -> bool:
        return self.kill_reason is None and self.channel.state is ChannelState.READY

    async def connect(self, read_fd: int, write_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = os.fdopen(read_fd, "rb", buffering=0)
        writer = os.fdopen(write_fd, "wb", buffering=0)
        self.read_transport, _ = await loop.connect_read_pipe(lambda: _ChannelReader(self), reader)
        self.write_transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, writer)

    def send(self, method: str, params: Any, timeout_ms: int) -> tuple[int, asyncio.Future[Any]]:
        request_id, frame = self.channel.send_request(method, params, timeout_ms)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls[request_id] = future
        assert self.write_transport is not None
        self.write_transport.write(frame)
        return request_id, future

    def on_data(self, data: bytes) -> None:
        if self.kill_reason is not None:
            return
        try:
            events = self.channel.receive_data(data)
        except ProtocolError as exc:
            self.session.on_protocol_violation(self, exc)
            return
        for event in events:
            if isinstance(event, Reply):
                future = self.calls.pop(event.id, None)
                if future is not None and not future.done():
                    future.set_result(event.result)
            elif isinstance(event, Failure):
                future = self.calls.pop(event.id, None)
                if future is not None and not future.done():
                    future.set_exception(worker_error(event.code, event.message))
            elif isinstance(event, Hello):
                if not self.hello.done():
                    self.hello.set_result(event.info)
            elif isinstance(event, HelloFailed) and not self.hello.done():
                self.hello.set_exception(worker_error(event.code, event.message))

    def on_channel_closed(self) -> None:
        self.channel.receive_eof()
        if not self.hello.done():
            self.hello.set_exception(Crashed("worker exited before it was ready"))
        # A worker that closed its end of the channel but kept running is of no use. One that
        # is merely exiting closes it too, a moment before it ends; the grace keeps its own
        # exit status (an exit code, a signal) as the reason the caller sees.
        self.session.forget(self)
        if not self.exited.done():
            self._grace = asyncio.get_running_loop().call_later(CHANNEL_CLOSED_GRACE_S, self._kill_silent)

    def _kill_silent(self) -> None:
        if not self.exited.done():
            self.kill("it closed its channel but kept running")

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        self.session.forget(self)
        self._signal_kill()

    def _signal_kill(self) -> None:
        if self.pidfd is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def fail_pending(self, error: Callable[[], KumixError]) -> None:
        calls, self.calls = self.calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error())

    def close(self) -> None:
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
    """The only path to one extension's worker."""

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
        self.stats = CallStats()
        self._forkserver = forkserver
        self._log_path = logs_dir / f"{extension_id}.log"
        self._logs_dir = logs_dir
        self._scratch_dir = scratch_dir
        self._worker: _Worker | None = None
        self._ready: asyncio.Future[_Worker] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._crashes: deque[float] = deque()
        self._open_until = 0.0
        self._disposed: KumixError | None = None
        self._started_before = False
        self.worker_pids: list[int] = []
        """Every worker pid this session started, newest last (tests check none survives)."""

    # ------------------------------------------------------------ public API

    @property
    def current_pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None and worker.usable else None

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call `method` in the worker; governance first, then limits, then the call."""
        loop = asyncio.get_running_loop()
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
            result = check_result(method, await self._round_trip(method, params, started))
        except KumixError as exc:
            self.stats.record_error(exc.code)
            raise
        self.stats.record_ok(loop.time() - started)
        return result

    async def ping(self) -> float:
        """Round trip of the runtime's built-in `ping`, in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._round_trip(PING_METHOD, {}, started)
        return loop.time() - started

    async def warm(self) -> None:
        """Start the worker now, so the first call does not wait for it."""
        self._check_open()
        self._ensure_supervisor()
        assert self._ready is not None
        await asyncio.shield(self._ready)

    async def reset(self) -> None:
        """Re-enabled: forget the crash history, so the circuit closes."""
        self._crashes.clear()
        self._open_until = 0.0

    async def dispose(self, error: KumixError | None = None) -> None:
        """Stop the worker; pending and queued calls fail with `error` (default `disabled`)."""
        if self._disposed is not None:
            return
        self._disposed = error or Disabled(f"extension {self.extension_id!r} was disabled")
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._disposed)
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._fail_ready(self._disposed)

    # ------------------------------------------------------------ calls

    def _check_open(self) -> None:
        if self._disposed is not None:
            raise fresh(self._disposed)()
        loop = asyncio.get_running_loop()
        if self._open_until > loop.time():
            raise Unavailable(
                f"{self.extension_id} crashed {len(self._crashes)} times in {self.limits.crash_window_seconds} s; "
                f"retry in {self._open_until - loop.time():.1f} s or re-enable it"
            )

    async def _round_trip(self, method: str, params: dict[str, Any], started: float) -> Any:
        self._check_open()
        raw = encode_params(params, self.limits.max_input_bytes)
        deadline = started + self.timeout_ms / 1000
        await self._acquire_slot(deadline)
        try:
            worker = self._worker
            if worker is None or not worker.usable:
                worker = await self._wait_ready(deadline)
            loop = asyncio.get_running_loop()
            remaining_ms = max(1, int((deadline - loop.time()) * 1000))
            request_id, future = worker.send(method, raw, remaining_ms)
            timer = loop.call_at(deadline, self._on_deadline, worker, request_id, method)
            try:
                return await future
            finally:
                timer.cancel()
                if not future.done():
                    # The caller went away; the reply, if any, is dropped when it arrives.
                    future.cancel()
                    worker.calls.pop(request_id, None)
        finally:
            self._release_slot()

    async def _acquire_slot(self, deadline: float) -> None:
        if self._inflight < self.limits.max_concurrency and not self._waiters:
            self._inflight += 1
            return
        if len(self._waiters) >= self.limits.max_queue:
            raise Unavailable(
                f"{self.extension_id} is busy: {self._inflight} calls in flight and "
                f"{len(self._waiters)} queued (maxConcurrency {self.limits.max_concurrency}, "
                f"maxQueue {self.limits.max_queue})"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The slot was handed over just as we gave up: pass it on.
                self._release_slot()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise CallTimeout(f"no free slot for {self.extension_id} before the deadline") from None
            raise

    def _release_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; _inflight is unchanged
                return
        self._inflight -= 1

    def forget(self, worker: _Worker) -> None:
        """A worker is on its way out: new calls wait for its successor from now on."""
        if self._worker is worker:
            self._worker = None
            self._new_ready()

    async def _wait_ready(self, deadline: float) -> _Worker:
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    self._check_open()
                    self._ensure_supervisor()
                    ready = self._ready
                    assert ready is not None
                    worker = await asyncio.shield(ready)
                    if worker.usable:
                        return worker
                    self.forget(worker)
        except TimeoutError:
            raise CallTimeout(f"{self.extension_id} did not become ready before the call's deadline") from None

    def _on_deadline(self, worker: _Worker, request_id: int, method: str) -> None:
        future = worker.calls.pop(request_id, None)
        if future is None or future.done():
            return
        future.set_exception(CallTimeout(f"{self.extension_id}: {method} did not answer within {self.timeout_ms} ms"))
        worker.kill(f"a call to {method} exceeded its deadline")
        worker.fail_pending(lambda: Crashed(f"{self.extension_id}: worker was killed after another call timed out"))

    def on_protocol_violation(self, worker: _Worker, exc: ProtocolError) -> None:
        worker.kill(f"protocol violation: {exc.message}")
        log.warning("proc %s pid %d broke the protocol: %s", self.extension_id, worker.pid, exc.message)
        if isinstance(exc, FrameTooLarge) and len(worker.calls) == 1:
            # With one call in flight the oversized reply can only be its answer.
            worker.fail_pending(
                lambda: OutputTooLarge(
                    f"{self.extension_id}: reply of {exc.declared} bytes exceeds maxOutputBytes "
                    f"({self.limits.max_output_bytes}); the worker was stopped"
                )
            )
        worker.fail_pending(lambda: Crashed(f"{self.extension_id}: worker broke the protocol ({exc.message})"))

    # ------------------------------------------------------------ supervision

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._new_ready()
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"kumix-proc-{self.extension_id}"
            )

    def _new_ready(self) -> None:
        if self._ready is None or self._ready.done():
            self._ready = asyncio.get_running_loop().create_future()
            # Nobody may be waiting; an unretrieved exception is not worth a warning.
            self._ready.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _fail_ready(self, error: KumixError) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)

    async def _supervise(self) -> None:
        while self._disposed is None:
            self._new_ready()
            try:
                worker = await self._start_worker()
            except ConfinementUnavailable as exc:
                # Deterministic: retrying cannot help until the machine or policy changes.
                self._fail_ready(exc)
                return
            except KumixError as exc:
                self._fail_ready(exc)
                if not await self._after_crash():
                    return
                continue
            try:
                if self._started_before:
                    self.stats.restarts += 1
                self._started_before = True
                self._worker = worker
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(worker)
                status = await worker.exited
                self._worker = None
                self._new_ready()
                worker.fail_pending(fresh(self._exit_error(worker, status)))
            finally:
                if self._worker is worker:
                    self._worker = None
                await self._stop(worker)
            if self._disposed is None and not await self._after_crash():
                return

    async def _after_crash(self) -> bool:
        """Count a crash; sleep the backoff and return True, or open the circuit and return False."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.stats.crashes += 1
        self._crashes.append(now)
        window = self.limits.crash_window_seconds
        while self._crashes and self._crashes[0] < now - window:
            self._crashes.popleft()
        if len(self._crashes) >= self.limits.max_crashes:
            self._open_until = self._crashes[0] + window
            log.warning(
                "proc %s crashed %d times within %d s; answering unavailable for %.1f s",
                self.extension_id, len(self._crashes), window, self._open_until - now,
            )
            self._fail_ready(Unavailable(f"{self.extension_id} is crashing repeatedly; retry later or re-enable it"))
            return False
        crashes = len(self._crashes)
        delay = 0.0 if crashes <= 1 else min(RESTART_BACKOFF_BASE_S * 2 ** (crashes - 2), RESTART_BACKOFF_MAX_S)
        if delay:
            await asyncio.sleep(delay)
        return True

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

    async def _stop(self, worker: _Worker) -> None:
        """Kill (if still alive), wait for the exit report, release every resource."""
        if not worker.exited.done():
            worker.kill(worker.kill_reason or "stopped by the host")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_STATUS_WAIT_S)
        worker.fail_pending(fresh(self._disposed or Crashed(f"{self.extension_id}: worker stopped")))
        worker.close()

    def _open_log(self) -> int:
        """The extension's log, rotated once it passed half its cap: the worker may write up
        to maxLogBytes into it (RLIMIT_FSIZE), so at most twice that stays on disk."""
        self._logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if self._log_path.stat().st_size >= self.limits.max_log_bytes // 2:
                os.replace(self._log_path, self._log_path.with_suffix(".log.1"))
        return os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _spec(self) -> WorkerSpec:
        limits = self.limits
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
            scratch_dir=str(self._scratch_dir) if self._scratch_dir is not None else None,
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
        if not info.get("confined"):
            log.warning(
                "proc %s pid %d runs without full confinement (policy %r does not require it): %s",
                self.extension_id, worker.pid, self.policy.name, str(info.get("warning"))[:500],
            )
        return worker

