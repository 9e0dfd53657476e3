"""uvicorn, behind this one module: bind 127.0.0.1, serve an ASGI app until told to stop.

The socket is bound here, before uvicorn starts, so the port is known for the printed URL
and the Host/Origin checks, and a port in use is a clear `bad_request` instead of a log
line. uvicorn's own signal handling is replaced by the caller's stop event: the process
owns Ctrl-C and SIGTERM, and stops the Matrix session after the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn

from kumix.core.errors import BadRequest
from kumix.web.security import ASGIApp

LOOPBACK = "127.0.0.1"
HEARTBEAT_SECONDS = 20.0
"""WebSocket protocol pings: a peer that does not answer one within this long is dead and
its connection is closed (this also frees a connection whose reader stopped)."""
MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024
"""The page sends UI frames' bridge messages on the socket: up to the policy's
ui.maxMessageBytes (1 MiB in dev), as a JSON string inside a JSON frame (escaping can double
it). The server's bridge session refuses anything over the policy's limit itself."""
GRACEFUL_SHUTDOWN_SECONDS = 5


def bind(port: int | None) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (never another interface); port 0/None is a free one."""
    if port is not None and not 0 <= port <= 65535:
        raise BadRequest(f"--port must be between 0 and 65535, not {port}")
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP; with Nagle on, a response written as headers then body waited for the
    # client's delayed ACK, 40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((LOOPBACK, port or 0))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BadRequest(f"port {port} on {LOOPBACK} is in use; choose another with --port, or omit it") from None
        raise BadRequest(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The caller handles signals (and re-raising them afterwards would kill the process
        # after a clean stop).
        yield


async def serve(app: ASGIApp, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; returns once every connection is closed."""
    config = uvicorn.Config(
        app, lifespan="off", ws="websockets-sansio", http="h11", loop="none",
        ws_ping_interval=HEARTBEAT_SECONDS, ws_ping_timeout=HEARTBEAT_SECONDS,
        ws_max_size=MAX_WS_MESSAGE_BYTES, ws_per_message_deflate=False,
        server_header=False, date_header=False, proxy_headers=False, access_log=False,
        log_level=logging.WARNING, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _Server(config)

    async def stop_when_told() -> None:
        await stop.wait()
        server.should_exit = True

    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(stop_when_told())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
