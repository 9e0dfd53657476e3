"""The outbox's life cycle, sans-I/O: which state an outgoing event moves to, and why.

    pending --attempt--> sending --acked--> sent
       ^                    |
       +----transient-------+   (homeserver unreachable, 5xx, 429: retry later)
                            +--permanent--> failed   (forbidden, bad request)
    sending --recover--> pending   (found at start-up: the last run died mid-send)

Every attempt reuses the entry's transaction id, and the homeserver answers a repeated
transaction id with the event it already created. That is what makes "retry whenever in
doubt" safe: a send that reached the server before a crash is never posted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kumix.core.errors import KumixError, error_from_code


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxSignal(StrEnum):
    ATTEMPT = "attempt"
    ACKED = "acked"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RECOVER = "recover"


class IllegalTransition(KumixError):
    """An outbox entry was asked to move in a way its life cycle forbids (a bug, not input)."""


_TRANSITIONS: dict[tuple[OutboxState, OutboxSignal], OutboxState] = {
    (OutboxState.PENDING, OutboxSignal.ATTEMPT): OutboxState.SENDING,
    (OutboxState.SENDING, OutboxSignal.ACKED): OutboxState.SENT,
    (OutboxState.SENDING, OutboxSignal.TRANSIENT): OutboxState.PENDING,
    (OutboxState.SENDING, OutboxSignal.PERMANENT): OutboxState.FAILED,
    (OutboxState.SENDING, OutboxSignal.RECOVER): OutboxState.PENDING,
    (OutboxState.PENDING, OutboxSignal.RECOVER): OutboxState.PENDING,
    # A duplicate acknowledgement (a retry answered with the same event) changes nothing.
    (OutboxState.SENT, OutboxSignal.ACKED): OutboxState.SENT,
}


def transition(state: OutboxState | str, signal: OutboxSignal | str) -> OutboxState:
    try:
        key = (OutboxState(state), OutboxSignal(signal))
    except ValueError:
        raise IllegalTransition(f"unknown outbox state or signal: {state!r}, {signal!r}") from None
    try:
        return _TRANSITIONS[key]
    except KeyError:
        raise IllegalTransition(f"outbox entry cannot go from {key[0]} on {key[1]}") from None


@dataclass(frozen=True)
class OutboxEntry:
    """One outgoing event as the outbox holds it. A failed attempt keeps the error's code,
    message and details as separate fields (never a string to parse back): `error()`
    rebuilds the typed error."""

    seq: int
    txn_id: str
    room_id: str
    event_type: str
    content: dict[str, Any]
    state: OutboxState
    attempts: int
    event_id: str | None
    error_code: str | None = None
    error_message: str | None = None
    error_details: dict[str, Any] | None = None

    def error(self) -> KumixError | None:
        if self.error_code is None:
            return None
        return error_from_code(self.error_code, self.error_message or self.error_code, self.error_details)

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] | None = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message or ""}
            if self.error_details:
                error["details"] = self.error_details
        return {"txn_id": self.txn_id, "room_id": self.room_id, "type": self.event_type, "state": str(self.state),
                "attempts": self.attempts, "event_id": self.event_id, "error": error}
