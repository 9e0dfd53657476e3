"""The host's handle on the fork server: start it, ask it for workers, learn how they ended.

The fork server is a child of the host started with a fresh, minimal environment (no host
secret ever reaches it or its workers). Its stderr goes to `forkserver.log` in the logs
directory. `start_soon` launches it without waiting (the host does so when it opens), so its
Python start and imports overlap the rest of the host process's start-up, on another CPU;
the first spawn then waits only for whatever is left of that. If it dies, every worker dies
with it (PDEATHSIG); pending spawns fail, every known worker is reported as ended, and the
next spawn starts a new server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumix.core.errors import Crashed, Unavailable
from kumix.extensions.proc.launch import LaunchedServer, ServerProcess, launch_server
from kumix.extensions.proc.worker_spec import WorkerSpec

SERVER_START_TIMEOUT_S = 30.0
"""Start-up imports take ~0.1 s; a loaded CI machine can be a hundred times slower."""
SERVER_STOP_TIMEOUT_S = 2.0
"""After closing the control socket the server kills its workers and exits within ms."""
MAX_CONTROL_MESSAGE_BYTES = 65_536


@dataclass(frozen=True)
class SpawnedWorker:
    pid: int
    exited: asyncio.Future[int | None]
    """Resolves with the raw wait status, or None if the fork server vanished first."""


class ForkServer:
    """One fork server process and its control socket, used from one event loop."""

    def __init__(self, logs_dir: Path, *, launched: LaunchedServer | None = None) -> None:
        self._logs_dir = logs_dir
        self._launched = launched
        """A server launched before the host opened (launch.py), adopted by the first launch."""
        self._process: ServerProcess | None = None
        self._control: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._spawns: dict[int, asyncio.Future[SpawnedWorker]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._has_spawned = False
        """Whether the running server was asked to spawn: then it may still hold children whose
        worker has exited (a PID namespace's supervisor outlives its `exited` report, which
        goes out when the supervisor has reaped the worker: forkserver.py)."""
        self._next_token = 0
        self._start_lock = asyncio.Lock()
        self._closed = False
        self.starts = 0
        self.launched_at: float | None = None
        self.ready_at: float | None = None
        self.preloaded_at: float | None = None
        """`time.monotonic()` of the latest launch, its hello and the end of its preload
        (forkserver.py), for the benchmarks' cold-start figures."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """How the latest server ended (negative: the signal that killed it); None while it
        runs or before the first launch."""
        return self._process.poll() if self._process is not None else None

    async def spawn(self, spec: WorkerSpec, fds: tuple[int, int, int]) -> SpawnedWorker:
        control = await self._running()
        loop = asyncio.get_running_loop()
        self._next_token += 1
        token = self._next_token
        message = json.dumps({"op": "spawn", "token": token, "spec": spec.to_json()}).encode()
        if len(message) > MAX_CONTROL_MESSAGE_BYTES:
            raise Crashed("spawn request too large for the fork server")
        future: asyncio.Future[SpawnedWorker] = loop.create_future()
        self._spawns[token] = future
        self._has_spawned = True
        try:
            socket.send_fds(control, [message], list(fds))
        except OSError as exc:
            self._spawns.pop(token, None)
            raise Crashed(f"fork server unreachable: {exc}") from None
        try:
            return await future
        finally:
            self._spawns.pop(token, None)

    async def wait_ready(self) -> None:
        """Start the server if needed and wait for its hello."""
        await self._running()

    def start_soon(self) -> None:
        """Launch the server now and return at once; the first spawn waits for its hello."""
        if not self._closed and self._control is None:
            self._launch()

    async def _running(self) -> socket.socket:
        if self._closed:
            raise Unavailable("the proc host is shutting down")
        async with self._start_lock:
            if self._control is None:
                self._launch()
            await self._until_ready()
            assert self._control is not None
            return self._control

    def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        launched, self._launched = self._launched, None
        if launched is None or launched.adopted or launched.process.poll() is not None:
            if launched is not None:
                launched.close()  # it died before the host needed it: start afresh
            launched = launch_server(self._logs_dir)
        launched.adopted = True
        self._process = launched.process
        self._has_spawned = False
        self.starts += 1
        self.launched_at, self.ready_at, self.preloaded_at = launched.launched_at, None, None
        # The launch made a bare `_socket` pair (launch.py); the host's end is a full socket.
        host_end = socket.socket(fileno=launched.control.detach())
        host_end.setblocking(False)
        self._control = host_end
        self._ready = loop.create_future()
        # A server launched early may have said ready already: the reader finds it waiting.
        loop.add_reader(host_end.fileno(), self._on_readable)

    async def _until_ready(self) -> None:
        assert self._ready is not None
        if self._ready.done():
            self._ready.result()  # raises if the server was lost before its hello
            return
        try:
            async with asyncio.timeout(SERVER_START_TIMEOUT_S):
                await asyncio.shield(self._ready)
        except TimeoutError:
            self._lost("fork server did not start in time")
            raise Crashed(f"fork server did not start within {SERVER_START_TIMEOUT_S} s") from None

    def _on_readable(self) -> None:
        control = self._control
        if control is None:
            return
        while True:
            try:
                data = control.recv(MAX_CONTROL_MESSAGE_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost("fork server exited")
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, doc: dict[str, Any]) -> None:
        op = doc.get("op")
        if op == "ready":
            if self._ready is not None and not self._ready.done():
                self.ready_at = time.monotonic()
                self._ready.set_result(int(doc["pid"]))
        elif op == "preloaded":
            self.preloaded_at = time.monotonic()
        elif op == "spawned":
            loop = asyncio.get_running_loop()
            pid = int(doc["pid"])
            exited: asyncio.Future[int | None] = loop.create_future()
            self._exits[pid] = exited
            future = self._spawns.get(int(doc["token"]))
            if future is not None and not future.done():
                future.set_result(SpawnedWorker(pid, exited))
        elif op == "spawn_failed":
            future = self._spawns.get(doc.get("token") or -1)
            if future is not None and not future.done():
                future.set_exception(Crashed(f"fork server could not start the worker: {doc.get('message')}"))
        elif op == "exited":
            exit_future = self._exits.pop(int(doc["pid"]), None)
            if exit_future is not None and not exit_future.done():
                exit_future.set_result(int(doc["status"]))

    def _lost(self, reason: str) -> None:
        """The server is gone (or being closed): nothing it owed us will ever arrive."""
        control = self._control
        if control is not None:
            asyncio.get_running_loop().remove_reader(control.fileno())
            control.close()
        self._control = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(Crashed(reason))
            self._ready.exception()
        for future in self._spawns.values():
            if not future.done():
                future.set_exception(Crashed(reason))
        for exit_future in self._exits.values():
            if not exit_future.done():
                exit_future.set_result(None)
        self._exits.clear()
        if self._process is not None:
            self._process.poll()  # reap it if it is already gone

    async def aclose(self) -> None:
        self._closed = True
        process = self._process
        # A server never asked to spawn has nothing to clean up: end it at once rather than
        # wait for it to notice (it may still be importing). One that spawned may still hold
        # supervisors of exited workers; when its control socket closes it kills and reaps
        # every child it has, so it is left to do that (killed, it would orphan them).
        idle = not self._has_spawned
        self._lost("the proc host is shutting down")
        if process is None:
            return
        if idle and process.poll() is None:
            process.kill()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SERVER_STOP_TIMEOUT_S
        while process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if process.poll() is None:
            process.kill()
            while process.poll() is None:
                await asyncio.sleep(0.005)
