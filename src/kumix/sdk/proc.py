"""The SDK for proc extension authors, and the loop that serves their handlers.

An extension's entry file registers handlers at import time:

    from kumix.sdk import proc

    @proc.handler("render.markdown")
    def render(params: dict[str, Any]) -> dict[str, Any]:
        return {"html": ...}

Handlers may be `async def`. A handler receives the request's params (a JSON object) and
returns a JSON-encodable value. Raising `kumix.core.errors.BadRequest` (or another Kumix
error a worker may send) answers with that code; any other exception answers `internal`
with the exception's type and message, and its traceback goes to the extension's log.
`kumix.sdk.runtime_context.call_deadline` holds the current call's deadline.

`serve` is the worker's request loop; the worker bootstrap (`kumix.extensions.proc.worker`)
calls it after the entry file is imported. Authors never call it themselves.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kumix.core.errors import KumixError, ProtocolError
from kumix.extensions.manifest import RESERVED_METHODS
from kumix.extensions.proc.eventloop import new_event_loop
from kumix.extensions.proc.protocol import Request, WorkerChannel
from kumix.sdk.runtime_context import call_deadline

Handler = Callable[[dict[str, Any]], Any]
HandlerT = TypeVar("HandlerT", bound=Handler)

EXIT_OK = 0
EXIT_RESOURCE_LIMIT = 3
"""The worker ran out of memory under its RLIMIT_AS; the host reports `resource_limit`."""
EXIT_PROTOCOL = 5
"""The host sent bytes the worker could not parse; should never happen."""

READ_CHUNK_BYTES = 262_144
"""One read takes whatever the pipe holds (64 KiB by default on Linux) in one system call."""

_handlers: dict[str, Handler] = {}


def handler(method: str) -> Callable[[HandlerT], HandlerT]:
    """Register `fn` as the handler of `method` (sync or async)."""
    if method in RESERVED_METHODS:
        raise ValueError(f"method {method!r} is answered by the runtime itself")

    def register(fn: HandlerT) -> HandlerT:
        if method in _handlers:
            raise ValueError(f"method {method!r} already has a handler")
        _handlers[method] = fn
        return fn

    return register


def registered_methods() -> list[str]:
    return sorted(_handlers)


class _Runtime:
    """Reads requests from the channel, runs handlers, writes replies."""

    def __init__(self, channel: WorkerChannel, read_fd: int, write_fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.loop = loop
        self.tasks: set[asyncio.Task[None]] = set()
        self.exit_code = EXIT_OK
        self.stopped = loop.create_future()

    def write(self, frame: bytes) -> None:
        # The write end is blocking: a frame goes out whole, and a host that stops reading
        # stalls only this worker, which its call deadline then ends.
        view = memoryview(frame)
        while view:
            written = os.write(self.write_fd, view)
            view = view[written:]

    def stop(self, code: int) -> None:
        self.exit_code = code
        if not self.stopped.done():
            self.stopped.set_result(None)

    def on_readable(self) -> None:
        try:
            data = os.read(self.read_fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        if not data:
            self.stop(EXIT_OK)
            return
        try:
            requests = self.channel.receive_data(data)
        except ProtocolError as exc:
            sys.stderr.write(f"kumix worker: host sent a bad frame: {exc}\n")
            self.stop(EXIT_PROTOCOL)
            return
        for request in requests:
            self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        if request.method == "ping":
            self.write(self.channel.reply(request.id, {"pong": True}))
            return
        fn = _handlers.get(request.method)
        if fn is None:
            self.write(self.channel.fail(request.id, "not_found", f"no handler for method {request.method!r}"))
            return
        deadline = None if request.timeout_ms is None else time.monotonic() + request.timeout_ms / 1000
        context = contextvars.copy_context()
        context.run(call_deadline.set, deadline)
        try:
            result = context.run(fn, request.params)
        except BaseException as exc:
            self.write_failure(request.id, exc)
            return
        if inspect.isawaitable(result):
            task = self.loop.create_task(self.finish(request.id, result), context=context)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        self.write(self.channel.reply(request.id, result))

    async def finish(self, request_id: int, pending: Awaitable[Any]) -> None:
        try:
            result = await pending
        except BaseException as exc:
            self.write_failure(request_id, exc)
            return
        self.write(self.channel.reply(request_id, result))

    def write_failure(self, request_id: int, exc: BaseException) -> None:
        if isinstance(exc, MemoryError):
            # Memory the handler still holds may keep failing every later call; a fresh
            # worker from the fork server is cheap, so answer and leave.
            self.write(self.channel.fail(request_id, "resource_limit", "worker ran out of memory (maxMemoryMb)"))
            self.stop(EXIT_RESOURCE_LIMIT)
            return
        if isinstance(exc, KumixError):
            self.write(self.channel.fail_error(request_id, exc))
            return
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            self.write(self.channel.fail(request_id, "internal", f"handler stopped: {type(exc).__name__}"))
            if not isinstance(exc, asyncio.CancelledError):
                self.stop(EXIT_OK)
            return
        traceback.print_exception(exc, file=sys.stderr)
        self.write(self.channel.fail(request_id, "internal", f"{type(exc).__name__}: {exc}"))


def serve(channel: WorkerChannel, *, read_fd: int, write_fd: int, hello: dict[str, Any]) -> int:
    """Answer requests until the host closes the channel; returns the worker's exit code."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    runtime = _Runtime(channel, read_fd, write_fd, loop)
    os.set_blocking(read_fd, False)
    try:
        runtime.write(channel.hello({**hello, "methods": registered_methods()}))
        loop.add_reader(read_fd, runtime.on_readable)
        loop.run_until_complete(runtime.stopped)
        loop.remove_reader(read_fd)
        for task in list(runtime.tasks):
            task.cancel()
        if runtime.tasks:
            loop.run_until_complete(asyncio.gather(*runtime.tasks, return_exceptions=True))
    except MemoryError:
        return EXIT_RESOURCE_LIMIT
    except BrokenPipeError:
        # The host is gone; nothing left to answer.
        return EXIT_OK
    finally:
        loop.close()
    return runtime.exit_code
