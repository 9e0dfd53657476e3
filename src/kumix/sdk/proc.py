"""The SDK for proc extension authors, and the loop that serves their handlers.

An extension's entry file registers handlers at import time:

    from kumix.sdk import proc

    @proc.handler("render.markdown")
    def render(params: dict[str, Any]) -> dict[str, Any]:
        return {"html": ...}

Handlers may be `async def`. A handler receives the request's params (a JSON object) and
returns a JSON-encodable value. Raising `kumix.core.errors.BadRequest` (or another Kumix
error a worker may send) answers with that code; any other exception answers `extension_error`
with the exception's type and message, and its traceback goes to the extension's log.
`kumix.sdk.runtime_context.call_deadline` holds the current call's deadline.

`serve` is the worker's request loop; the worker bootstrap (`kumix.extensions.proc.worker`)
calls it after the entry file is imported. Authors never call it themselves.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kumix.core.errors import KumixError, ProtocolError
from kumix.extensions.manifest import RESERVED_METHODS
from kumix.extensions.proc.exit_codes import EXIT_OK, EXIT_PROTOCOL, EXIT_RESOURCE_LIMIT
from kumix.extensions.proc.protocol import Request, WorkerChannel
from kumix.extensions.proc.spin_wait import WORKER_SPIN_NS, AdaptiveSpin
from kumix.sdk.runtime_context import call_deadline

if TYPE_CHECKING:
    import asyncio

Handler = Callable[[dict[str, Any]], Any]
HandlerT = TypeVar("HandlerT", bound=Handler)

__all__ = ["EXIT_OK", "EXIT_PROTOCOL", "EXIT_RESOURCE_LIMIT", "handler", "registered_methods", "serve"]


READ_CHUNK_BYTES = 65_536
"""One read takes whatever the pipe holds (64 KiB, the Linux default, which Kumix keeps) in one
system call. No larger: `os.read` allocates its whole size up front, and a 256 KiB buffer per
read (an mmap, page faults, a shrink) cost ~40 µs per request, more than the rest of a ping."""

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
    """Reads requests from the channel, runs handlers one at a time, writes replies.

    The loop blocks in read(2) rather than waiting in epoll: a pipe wake-up straight into a
    blocked reader is several times faster than an event loop's, and a worker has nothing
    else to do. Async handlers run to completion on the worker's own event loop.
    """

    def __init__(self, channel: WorkerChannel, read_fd: int, write_fd: int) -> None:
        self.channel = channel
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.loop: asyncio.AbstractEventLoop | None = None
        self.exit_code: int | None = None
        self.spin = AdaptiveSpin(WORKER_SPIN_NS)

    def write(self, frame: bytes) -> None:
        # Blocking: a frame goes out whole, and a host that stops reading stalls only this
        # worker, which the call's deadline then ends. A reply that fits the pipe (every small
        # one) goes out in the first write, without a view to slice.
        written = os.write(self.write_fd, frame)
        if written == len(frame):
            return
        view = memoryview(frame)[written:]
        while view:
            view = view[os.write(self.write_fd, view) :]

    def run(self) -> int:
        read, read_fd, receive, spin = os.read, self.read_fd, self.channel.receive_data, self.spin.wait
        while self.exit_code is None:
            # Stay awake briefly for a caller's next request before blocking, while that pays
            # (spin_wait.py).
            spin(read_fd)
            data = read(read_fd, READ_CHUNK_BYTES)
            if not data:
                return EXIT_OK
            try:
                requests = receive(data)
            except ProtocolError as exc:
                sys.stderr.write(f"kumix worker: host sent a bad frame: {exc}\n")
                return EXIT_PROTOCOL
            for request in requests:
                self.dispatch(request)
        return self.exit_code

    def dispatch(self, request: Request) -> None:
        if request.method == "ping":
            self.write(self.channel.reply(request.id, _PONG))
            return
        fn = _handlers.get(request.method)
        if fn is None:
            self.write(self.channel.fail(request.id, "not_found", f"no handler for method {request.method!r}"))
            return
        deadline = None if request.timeout_ms is None else time.monotonic() + request.timeout_ms / 1000
        token = call_deadline.set(deadline)
        try:
            result = fn(request.params)
            if inspect.isawaitable(result):
                result = self.event_loop().run_until_complete(_awaited(result))
        except BaseException as exc:
            self.write_failure(request.id, exc)
            return
        finally:
            call_deadline.reset(token)
        self.write(self.channel.reply(request.id, result))

    def event_loop(self) -> asyncio.AbstractEventLoop:
        # Imported on first use: a worker with only sync handlers never pays for asyncio, and
        # the fork server can say ready before it has imported it (forkserver.py).
        import asyncio

        from kumix.extensions.proc.eventloop import new_event_loop

        if self.loop is None:
            self.loop = new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    def write_failure(self, request_id: int, exc: BaseException) -> None:
        if isinstance(exc, MemoryError):
            # Memory the handler still holds may keep failing every later call; a fresh
            # worker from the fork server is cheap, so answer and leave.
            self.write(self.channel.fail(request_id, "resource_limit", "worker ran out of memory (maxMemoryMb)"))
            self.exit_code = EXIT_RESOURCE_LIMIT
            return
        if isinstance(exc, KumixError):
            self.write(self.channel.fail_error(request_id, exc))
            return
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            stopped = f"handler stopped the worker: {type(exc).__name__}"
            self.write(self.channel.fail(request_id, "extension_error", stopped))
            self.exit_code = EXIT_OK
            return
        traceback.print_exception(exc, file=sys.stderr)
        self.write(self.channel.fail(request_id, "extension_error", f"{type(exc).__name__}: {exc}"))


_PONG = {"pong": True}


async def _awaited(pending: Awaitable[Any]) -> Any:
    return await pending


def serve(channel: WorkerChannel, *, read_fd: int, write_fd: int, hello: dict[str, Any]) -> int:
    """Answer requests until the host closes the channel; returns the worker's exit code."""
    runtime = _Runtime(channel, read_fd, write_fd)
    try:
        runtime.write(channel.hello({**hello, "methods": registered_methods()}))
        return runtime.run()
    except MemoryError:
        return EXIT_RESOURCE_LIMIT
    except BrokenPipeError:
        # The host is gone; nothing left to answer.
        return EXIT_OK
    finally:
        if runtime.loop is not None:
            runtime.loop.close()
