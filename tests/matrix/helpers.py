"""Small waits shared by the Matrix tests (bounded, never a timing assertion)."""

from __future__ import annotations

from collections.abc import Callable

from kumix.app.matrix_session import Session

MAX_SYNCS = 60


async def sync_until(session: Session, done: Callable[[], bool], *, what: str) -> None:
    """Sync (long-poll 1 s) until `done()`; fails after MAX_SYNCS rounds with `what`."""
    for _ in range(MAX_SYNCS):
        if done():
            return
        await session.sync(timeout_ms=1000)
    assert done(), f"never happened: {what}"
