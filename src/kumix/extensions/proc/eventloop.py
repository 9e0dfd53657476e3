"""The event loop Kumix runs on: uvloop where installed, the standard loop otherwise.

uvloop roughly halves the per-message overhead of the pipe transports the proc host lives
on; this module is the only one that imports it.
"""

from __future__ import annotations

import asyncio

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]


def new_event_loop() -> asyncio.AbstractEventLoop:
    if uvloop is not None:
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
