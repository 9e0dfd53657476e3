"""The UI frames of one event WebSocket: which frames it mounted, and the bridge frames it
carries between the page and `kumix.app.ui_frames`.

Frames belong to the connection whose page mounted them: a bridge message for a frame is
taken only from that connection, replies and pushed events go only to it, and the frames
are unloaded when it closes. Plain Python (no Starlette): the WebSocket handler feeds it
parsed frames and gives it `offer` to queue frames for the page.

Page → server frames (JSON text):
  {"type": "bridge", "widget_id", "message": "<the JSON text the frame posted>"}
  {"type": "bridge_start", "widget_id"}       the frame loaded: start the negotiation
  {"type": "bridge_answer", "widget_id", "request_id", "approved", "always"}
  {"type": "bridge_unload", "widget_id"}      the user closed it
Server → page frames:
  {"type": "bridge", "widget_id", "message": {...}}   post to that frame's window
  {"type": "bridge_ask", "widget_id", "extension_id", "request_id", "event_type", "content"}
  {"type": "bridge_unload", "widget_id", "reason"}    remove that frame
  {"type": "navigate", "uri"}                          a frame asked for a matrix.to room link
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from kumix.app.kumix import Kumix
from kumix.app.ui_bridge import AccountBridgeActions, matrix_event, vote_summary
from kumix.app.ui_frames import AskUser, Effect, MountedFrame, Reply, Unload
from kumix.core.errors import BadRequest, KumixError, NotFound
from kumix.core.models import Event

log = logging.getLogger(__name__)

MAX_FRAMES_PER_CONNECTION = 16
"""One page shows a handful of extensions next to a room; each frame holds a srcdoc."""
MAX_CONCURRENT = 16
"""Bridge requests of one connection carried out at once; the reader waits beyond that."""
MAX_FIELD_CHARS = 128

Offer = Callable[[dict[str, Any]], bool]


class BridgeLink:
    def __init__(self, k: Kumix, offer: Offer, session_id: str | None) -> None:
        self.k = k
        self.offer = offer
        self.connection_id = secrets.token_urlsafe(16)
        self._session_id = session_id or ""
        self.frames: dict[str, MountedFrame] = {}
        self._started: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.actions = AccountBridgeActions(k, self._navigate)
        self._mounting = 0
        self.closed = False

    def owned_by(self, session_id: str | None) -> bool:
        return bool(self._session_id) and hmac.compare_digest(self._session_id, session_id or "")

    async def _navigate(self, uri: str) -> None:
        self.offer({"type": "navigate", "uri": uri})

    # -- mounting (from the HTTP route) ---------------------------------------------------

    async def mount(self, extension_id: str, *, room_id: str, host_origin: str, nonce: str,
                    theme: dict[str, str], language: str) -> MountedFrame:
        if len(self.frames) + self._mounting >= MAX_FRAMES_PER_CONNECTION:
            raise BadRequest(f"{MAX_FRAMES_PER_CONNECTION} frames are mounted on this page already; unload one first")
        self._mounting += 1
        try:
            frame = await self.k.ui_frames.mount_async(extension_id, room_id=room_id, host_origin=host_origin,
                                                       script_nonce=nonce, theme=theme, language=language)
        finally:
            self._mounting -= 1
        if self.closed:
            # The page went away while the document was built: the frame goes with it.
            self.k.ui_frames.unload(frame.widget_id)
            raise NotFound("the event connection closed while the frame was built")
        self.frames[frame.widget_id] = frame
        return frame

    def close(self) -> None:
        """The connection ended: its frames go with it (their tokens are never reused)."""
        self.closed = True
        for widget_id in list(self.frames):
            self.k.ui_frames.unload(widget_id)
        self.frames.clear()

    # -- frames from the page -------------------------------------------------------------

    async def receive(self, doc: dict[str, Any], tg: asyncio.TaskGroup) -> None:
        """One parsed page frame whose type starts with `bridge`. Unknown widget ids (not
        this connection's, or unloaded) are dropped without an answer."""
        now = time.monotonic()
        kind = doc.get("type")
        widget_id = doc.get("widget_id")
        if not isinstance(widget_id, str) or widget_id not in self.frames:
            return
        frame = self.frames[widget_id]
        if kind == "bridge":
            raw = doc.get("message")
            if not isinstance(raw, str):
                return
            await self._slots.acquire()
            tg.create_task(self._run(widget_id, self.k.ui_frames.handle(widget_id, raw, now, self.actions)))
        elif kind == "bridge_start":
            if widget_id not in self._started:
                self._started.add(widget_id)
                self._deliver(widget_id, frame.session.start())
        elif kind == "bridge_answer":
            request_id = doc.get("request_id")
            approved, always = doc.get("approved"), doc.get("always", False)
            if not (isinstance(request_id, str) and len(request_id) <= MAX_FIELD_CHARS
                    and isinstance(approved, bool) and isinstance(always, bool)):
                return
            await self._slots.acquire()
            tg.create_task(self._run(widget_id, self.k.ui_frames.answer(
                widget_id, request_id, approved=approved, always=always and approved, actions=self.actions)))
        elif kind == "bridge_unload":
            self._unload(widget_id)

    async def _run(self, widget_id: str, work: Any) -> None:
        try:
            effects: list[Effect] = await work
        except NotFound:
            return  # unloaded meanwhile
        except KumixError as exc:
            log.info("bridge request failed: %s", exc.code)
            return
        except Exception:
            # A bug must not end the page's event stream (the TaskGroup would cancel it).
            log.exception("bridge request of frame failed")
            return
        finally:
            self._slots.release()
        self._deliver(widget_id, effects)

    def _unload(self, widget_id: str) -> None:
        self.frames.pop(widget_id, None)
        self._started.discard(widget_id)
        self.k.ui_frames.unload(widget_id)

    def _deliver(self, widget_id: str, effects: list[Effect]) -> None:
        frame = self.frames.get(widget_id)
        for effect in effects:
            if isinstance(effect, Reply):
                self.offer({"type": "bridge", "widget_id": widget_id, "message": effect.message})
            elif isinstance(effect, AskUser) and frame is not None:
                ask: dict[str, Any] = {
                    "type": "bridge_ask", "widget_id": widget_id, "extension_id": frame.extension_id,
                    "request_id": effect.request_id, "event_type": effect.event_type, "content": dict(effect.content)}
                if effect.event_type != "m.room.message":
                    ask["poll"] = vote_summary(self.k, effect.content)
                self.offer(ask)
            elif isinstance(effect, Unload):
                self._unload(widget_id)
                self.offer({"type": "bridge_unload", "widget_id": widget_id, "reason": effect.reason})

    def push_theme(self, name: str, tokens: dict[str, str]) -> None:
        """The person chose another theme: toWidget theme_change to this connection's frames."""
        for widget_id, frame in list(self.frames.items()):
            self._deliver(widget_id, frame.session.push_theme(name, tokens))

    # -- pushed events ----------------------------------------------------------------------

    def push(self, event: Event) -> None:
        """A new event: pushed (toWidget send_event) to this connection's frames of its
        room that negotiated receiving it."""
        if not self.frames:
            return
        shown = matrix_event(event)
        if shown is None:
            return
        for widget_id, frame in list(self.frames.items()):
            if frame.room_id == event.room_id:
                self._deliver(widget_id, frame.session.push_event(shown))
