"""SAS verifications as resources a front end drives by requests (the web API): each flow
runs as a task of `Kumix` (its task group owns it), waits for the user's decision between
steps, and ends by itself — done, cancelled, failed, or timed out after `FLOW_SECONDS`.

One pump task takes every verification event the session's syncs bring: a request that
belongs to no flow becomes an *incoming* flow (it waits, for at most `FLOW_SECONDS`, to be
accepted); every other event is handed to each running flow, whose state machine
(`kumix.matrix.sas`) keeps only its own transaction's. At most `MAX_FLOWS` run at once (a
further start is `state_busy`, a further incoming request is ignored); the last
`KEPT_FINISHED` finished ones stay readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Literal

from kumix.app.verification import Verifier, take_events
from kumix.core.errors import BadRequest, KumixError, NotFound, StateBusy, VerificationFailed
from kumix.matrix.sas import request_is_stale

if TYPE_CHECKING:
    from kumix.app.matrix_session import Session
    from kumix.matrix.sas import SasVerification

log = logging.getLogger(__name__)

MAX_FLOWS = 8
KEPT_FINISHED = 16
FLOW_SECONDS = 600.0
"""How long one verification may take in all, waiting for the user included."""
STEP_SECONDS = 5.0
"""How long a flow waits for an event before looking again (the verifier counts these)."""

Role = Literal["asker", "answerer"]
Decision = Literal["accept", "confirm", "mismatch", "cancel"]
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class Flow:
    def __init__(self, flows: VerificationFlows, *, role: Role, user_id: str, device_id: str | None,
                 room_id: str | None, request: dict[str, Any] | None = None) -> None:
        self.id = "v" + secrets.token_hex(8)
        self.role: Role = role
        self.user_id = user_id
        self.device_id = device_id
        self.room_id = room_id
        self._request = request
        self.sas: SasVerification | None = None
        self.phase = "incoming" if role == "answerer" else "requested"
        self.error: dict[str, Any] | None = None
        self._inbox: list[dict[str, Any]] = []
        self._wakeup = asyncio.Event()
        self._decisions: list[Decision] = []
        self.task: asyncio.Task[None] | None = None
        self.verifier = Verifier(flows.session, events=self._events)

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "cancelled", "failed")

    @property
    def state(self) -> str:
        if self.finished or self.sas is None:
            return self.phase
        # "done" only once the trust is recorded (signatures uploaded), not when the
        # state machine finished: a page that sees "done" then reads the devices as verified.
        return "confirmed" if self.sas.state == "done" else self.sas.state

    def to_json(self) -> dict[str, Any]:
        v = self.sas
        doc: dict[str, Any] = {"id": self.id, "role": self.role, "user_id": self.user_id,
                               "device_id": v.their_device if v is not None and v.their_device else self.device_id,
                               "room_id": self.room_id, "state": self.state, "error": self.error,
                               "emoji": None, "decimals": None, "verified": []}
        if v is not None and v.state in ("keys", "confirmed", "done"):
            doc["emoji"] = [{"emoji": e, "name": n} for e, n in v.emoji()]
            doc["decimals"] = list(v.decimals())
        if v is not None and self.phase == "done":
            doc["verified"] = sorted(v.verified)
        return doc

    # -- what the pump and the front end do --------------------------------------------------

    def deliver(self, event: dict[str, Any]) -> None:
        self._inbox.append(event)
        self._wakeup.set()

    def decide(self, decision: Decision) -> None:
        if self.finished:
            raise VerificationFailed(f"verification {self.id} is over ({self.phase})",
                                     details={"reason": "m.unexpected_message"})
        allowed = {"incoming": ("accept", "cancel"), "keys": ("confirm", "mismatch", "cancel")}.get(
            self.state, ("cancel",))
        if decision not in allowed:
            raise VerificationFailed(f"cannot {decision} a verification in state {self.state}",
                                     details={"reason": "m.unexpected_message"})
        self._decisions.append(decision)
        self._wakeup.set()

    async def _events(self) -> list[dict[str, Any]]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP_SECONDS):
                await self._wakeup.wait()
        self._wakeup.clear()
        if "cancel" in self._decisions:
            raise _Cancelled
        got, self._inbox = self._inbox, []
        return got

    async def _decision(self) -> Decision:
        """The user's next decision, while the other side's events keep being processed (a
        cancel from them ends the flow at once)."""
        v = self.sas
        while not self._decisions:
            if v is None:
                await self._events()
            else:
                await self.verifier.advance(v, lambda: bool(self._decisions))
        return self._decisions.pop(0)

    # -- the flow ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.timeout(FLOW_SECONDS):
                await self._steps()
            self.phase = "done"
        except _Cancelled:
            await self._send_cancel()
            self.phase = "cancelled"
            self.error = {"code": "verification_failed", "message": "cancelled here"}
        except TimeoutError:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STEP_SECONDS):
                    await self._send_cancel(timed_out=True)
            self.phase = "failed"
            self.error = {"code": "timeout", "message": f"not finished within {FLOW_SECONDS:.0f} s"}
        except KumixError as exc:
            self.phase = "cancelled" if isinstance(exc, VerificationFailed) else "failed"
            self.error = exc.to_dict()
        except Exception:  # a flow's bug ends that flow, never the account's task group
            log.exception("verification flow %s failed", self.id)
            self.phase = "failed"
            self.error = {"code": "internal", "message": "internal error; see the server's log"}

    async def _send_cancel(self, *, timed_out: bool = False) -> None:
        if self.sas is not None:
            with contextlib.suppress(KumixError):
                await (self.verifier.timeout(self.sas) if timed_out else self.verifier.cancel(self.sas))

    async def _steps(self) -> None:
        verifier = self.verifier
        if self.role == "answerer":
            assert self._request is not None
            if await self._decision() != "accept":
                raise _Cancelled
            self.sas = await verifier.answer(self._request)
        elif self.room_id is not None:
            self.sas = await verifier.request_in_room(self.user_id, self.room_id)
        else:
            self.sas = await verifier.request(self.user_id, self.device_id)
        await verifier.wait_for_sas(self.sas)
        decision = await self._decision()
        if decision == "confirm":
            await verifier.confirm(self.sas)
            return
        if decision == "mismatch":
            await verifier.mismatch(self.sas)
            raise VerificationFailed("the emoji did not match: verification cancelled; nothing was trusted",
                                     details={"reason": "m.mismatched_sas"})
        raise _Cancelled


class _Cancelled(Exception):
    """The user cancelled the flow here."""


class VerificationFlows:
    """The running and recent verifications of one session."""

    def __init__(self, session: Session, spawn: Spawn) -> None:
        self.session = session
        self._spawn = spawn
        self._flows: dict[str, Flow] = {}
        self._pump: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Flow], None]] = []

    @contextlib.contextmanager
    def on_incoming(self, listener: Callable[[Flow], None]) -> Iterator[None]:
        """Call `listener` (which must not block: a WebSocket's bounded queue) with each
        incoming request while the block runs."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def start(self) -> None:
        if self._pump is None:
            self._pump = self._spawn(self._pump_events(), "kumix-verification-events")

    def close(self) -> None:
        for flow in self._flows.values():
            if flow.task is not None:
                flow.task.cancel()
        if self._pump is not None:
            self._pump.cancel()

    def list(self) -> list[Flow]:
        return list(self._flows.values())

    def get(self, flow_id: str) -> Flow:
        flow = self._flows.get(flow_id)
        if flow is None:
            raise NotFound(f"no verification {flow_id[:64]}")
        return flow

    def ask(self, user_id: str, device_id: str | None = None, room_id: str | None = None) -> Flow:
        """Ask `user_id` (one device, all of them, or in a room) to verify."""
        if not user_id.startswith("@") or ":" not in user_id:
            raise BadRequest("user must be a Matrix user id (@name:server)")
        if device_id is not None and room_id is not None:
            raise BadRequest("give a device or a room, not both")
        return self._add(Flow(self, role="asker", user_id=user_id, device_id=device_id, room_id=room_id))

    def decide(self, flow_id: str, decision: Decision) -> Flow:
        flow = self.get(flow_id)
        flow.decide(decision)
        return flow

    def _running(self) -> int:
        return sum(not f.finished for f in self._flows.values())

    def _add(self, flow: Flow) -> Flow:
        if self._running() >= MAX_FLOWS:
            raise StateBusy(f"{MAX_FLOWS} verifications are already running; finish or cancel one first")
        finished = [f for f in self._flows.values() if f.finished]
        for old in finished[:max(0, len(finished) + 1 - KEPT_FINISHED)]:
            del self._flows[old.id]
        self._flows[flow.id] = flow
        flow.task = self._spawn(flow.run(), f"kumix-verification-{flow.id}")
        return flow

    async def _pump_events(self) -> None:
        me = self.session.account
        failures = 0
        while True:
            # While the sync loop runs, wait for its next batch; otherwise sync here. A
            # failed sync (homeserver away) is waited out: the pump must not end, nor end
            # the task group that owns it.
            try:
                await self.session.sync(timeout_ms=0 if self.session.looping else 1000)
                failures = 0
            except KumixError as exc:
                failures += 1
                log.warning("verification events: %s; retrying", exc.message[:200])
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            for ev in take_events(self.session):
                content, sender = ev.get("content"), ev.get("sender")
                if ev.get("type") != "m.key.verification.request":
                    for flow in self._flows.values():
                        if not flow.finished:
                            flow.deliver(ev)
                    continue
                if not isinstance(content, dict) or not isinstance(sender, str):
                    continue
                room_id = ev.get("room_id")
                if isinstance(room_id, str) and (sender == me.user_id or content.get("to") != me.user_id):
                    continue
                if room_id is None and (sender == me.user_id and content.get("from_device") == me.device_id):
                    continue
                if request_is_stale(ev, int(time.time() * 1000)):
                    continue
                device = content.get("from_device")
                flow = Flow(self, role="answerer", user_id=sender,
                            room_id=room_id if isinstance(room_id, str) else None,
                            device_id=device if isinstance(device, str) else None, request=ev)
                try:
                    self._add(flow)
                except StateBusy:
                    log.warning("verification request from %s ignored: too many running", sender[:255])
                    continue
                for listener in list(self._listeners):
                    listener(flow)
