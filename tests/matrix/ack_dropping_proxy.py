"""A real TCP proxy in front of Synapse that can swallow the answer to a send.

With `drop_send_acks` on, a `PUT …/send/…` request is forwarded to the homeserver (which
creates the event) but its response never reaches the client: exactly the window where a
client that dies has sent a message without knowing it. Nothing is simulated: the client
talks HTTP to a socket, Synapse processes the request for real.
"""

from __future__ import annotations

import asyncio
import contextlib

from kumix.matrix.homeserver import free_port


class AckDroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.drop_send_acks = False
        self.ack_dropped = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> AckDroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        state = {"swallow": False}

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if self.drop_send_acks and b"PUT " in data and b"/send/" in data:
                    state["swallow"] = True
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if state["swallow"]:
                    self.ack_dropped.set()  # the server answered; the client never hears it
                    continue
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
        for t in tasks:
            self._tasks.add(t)  # type: ignore[arg-type]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                self._tasks.discard(t)  # type: ignore[arg-type]
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
