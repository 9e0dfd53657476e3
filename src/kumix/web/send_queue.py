"""The bounded send queue of one WebSocket connection, as a sans-I/O state machine.

The event hub offers frames; the connection's writer takes them as fast as the peer reads.
A peer that stops reading must never grow the server's memory: once the queue holds more
than `max_frames` frames or `max_bytes` bytes, it is *overflowed* — it drops everything it
held, accepts nothing more, and tells the writer to close with `CLOSE_TOO_SLOW`. Other
connections have their own queues and are not affected.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

CLOSE_TOO_SLOW = 4008
"""WebSocket close code: the client did not read its events fast enough (docs/web.md)."""
CLOSE_SERVER_STOPPING = 1001
"""Going away: the server is stopping."""

State = Literal["open", "overflowed", "closed"]


@dataclass
class SendQueue:
    max_frames: int = 256
    max_bytes: int = 4 * 1024 * 1024
    state: State = "open"
    _frames: deque[bytes] = field(default_factory=deque)
    _bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_bytes < 1:
            raise ValueError("a send queue needs room for at least one frame")

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False when the queue is not open (the frame is dropped)."""
        if self.state != "open":
            return False
        if len(self._frames) + 1 > self.max_frames or self._bytes + len(frame) > self.max_bytes:
            self.state = "overflowed"
            self._frames.clear()
            self._bytes = 0
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        return True

    def take(self) -> bytes | None:
        """The next frame to write, or None (empty, overflowed or closed)."""
        if self.state != "open" or not self._frames:
            return None
        frame = self._frames.popleft()
        self._bytes -= len(frame)
        return frame

    def close(self) -> None:
        self.state = "closed"
        self._frames.clear()
        self._bytes = 0

    @property
    def close_code(self) -> int | None:
        """What the writer must close with now, or None while the queue is open."""
        return {"open": None, "overflowed": CLOSE_TOO_SLOW, "closed": CLOSE_SERVER_STOPPING}[self.state]

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        return self._bytes
