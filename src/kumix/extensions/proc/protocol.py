"""The host⇄worker wire protocol, sans-I/O: bytes in, events out, no pipes or processes.

A frame is a 4-byte big-endian body length followed by a msgspec JSON body. The host sends
requests `{"id", "method", "params", "timeoutMs"}`; the worker answers each with
`{"id", "result"}` or `{"id", "error": {"code", "message"}}`. Before any request the worker
sends a hello under id 0: `{"id": 0, "result": {"ready": true, "confined": bool}}`, or an
error if it cannot start (for example `confinement_unavailable`).

`HostChannel` is the host's view of one worker: it numbers requests, remembers which are
pending and turns incoming bytes into `Hello`/`Reply`/`Failure` events. The host never trusts
a frame: a malformed body, an unknown or already answered id, an error code a worker may not
send, or a length above the limit raises `ProtocolError` and moves the channel to `ERROR`,
which refuses every further use. The declared length is checked as soon as the 4 header
bytes arrive, so an oversized frame is refused without buffering its body.

`WorkerChannel` is the worker's side: it decodes requests and encodes replies, refusing a
result larger than the output limit with an `output_too_large` error instead of sending it.
This module is the only one that imports msgspec.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from kumix.core.errors import BadRequest, InputTooLarge, KumixError, ProtocolError

RawParams = msgspec.Raw
"""Request parameters already encoded (and size-checked) by `encode_params`."""

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack

COPY_BELOW_BYTES = 8_192
"""A whole frame's body up to this size is copied out of the read buffer rather than viewed."""

HELLO_ID = 0
"""The worker's start-up message; request ids start at 1."""

MAX_REQUEST_ID = 2**53 - 1
"""Ids stay exact in every JSON implementation (IEEE double integer range)."""

ENVELOPE_BYTES = 4_096
"""Room around a payload for the id, keys, method name and an error message. The policy
limits (maxInputBytes, maxOutputBytes) count the payload; a frame may exceed them by this
much and no more, so a frame limit is always payload limit + envelope."""

MAX_ERROR_MESSAGE_CHARS = 1_000
"""An error message ends up in a terminal, a log line or a UI toast; a page is plenty.
Longer messages are cut by the worker runtime; the host refuses longer ones outright."""

MAX_METHOD_CHARS = 128
"""Method names are short dotted identifiers (`render.markdown`); 128 leaves ample room."""

WORKER_ERROR_CODES = frozenset(
    {
        "bad_request",
        "not_found",
        "input_too_large",
        "output_too_large",
        "resource_limit",
        "timeout",
        "wasm_rejected",
        "wasm_trap",
        "confinement_unavailable",
        "extension_error",
    }
)
"""Codes a worker may answer with. Anything else (a worker claiming `policy_denied`, say)
would let an extension impersonate a host decision, so it is a protocol violation."""


MAX_HELLO_TEXT_CHARS = 2_000
"""The hello's `warning` names each missing confinement layer and why; a few lines at most."""

MAX_HELLO_METHODS = 1_024
"""Far more handlers than any extension registers; the list only feeds diagnostics."""

_NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""Worker-supplied text that the host repeats in its own log (which may be a terminal) must
not carry C0/C1 control characters: an ESC there would drive the user's terminal."""

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_Text = Annotated[str, msgspec.Meta(max_length=MAX_METHOD_CHARS, pattern=_NO_CONTROLS)]


class _HelloInfo(msgspec.Struct, forbid_unknown_fields=True):
    """The shape of a ready hello. The host logs `warning` and keeps `layers`/`methods` as
    diagnostics, so every string is bounded and free of control characters (a hostile entry
    file can write its own hello to fd 4 before the runtime does)."""

    ready: bool
    confined: bool = False
    layers: dict[_Text, bool] = msgspec.field(default_factory=dict)
    warning: Annotated[str, msgspec.Meta(max_length=MAX_HELLO_TEXT_CHARS, pattern=_NO_CONTROLS)] | None = None
    methods: Annotated[list[_Text], msgspec.Meta(max_length=MAX_HELLO_METHODS)] = msgspec.field(default_factory=list)


def _quoted(text: str) -> str:
    """Worker-influenced text (a decoder's message can quote a hostile key) made safe for a
    log line: control characters become visible escapes."""
    return _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
"""Everything msgspec raises for bytes that are not a valid frame body. Invalid UTF-8 inside a
string is a plain UnicodeDecodeError, not a DecodeError; it must poison the channel like any
other malformed frame instead of escaping into the event loop (where it left the frame in
the reader's buffer, so every later read failed the same way and the worker's real replies
never arrived before the deadline)."""


class _ErrorBody(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(max_length=64)]
    message: Annotated[str, msgspec.Meta(max_length=MAX_ERROR_MESSAGE_CHARS)]


class _ReplyFrame(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[int, msgspec.Meta(ge=0, le=MAX_REQUEST_ID)]
    result: Any = msgspec.UNSET
    error: _ErrorBody | msgspec.UnsetType = msgspec.UNSET


class _RequestOut(msgspec.Struct):
    id: int
    method: str
    params: msgspec.Raw
    timeout_ms: int = msgspec.field(name="timeoutMs")


class _ReplyOut(msgspec.Struct):
    id: int
    result: msgspec.Raw


class _ReplyAny(msgspec.Struct):
    id: int
    result: Any


_REPLY_ENVELOPE = b'{"id":,"result":}'
"""What `_ReplyAny` adds around the id's digits and the result."""


class _FailureOut(msgspec.Struct):
    id: int
    error: _ErrorBody




# ---------------------------------------------------------------- events
# msgspec Structs rather than frozen dataclasses: one of these is built for every request and
# every reply, and a frozen dataclass's __init__ (object.__setattr__ per field) cost ~0.8 µs
# against ~0.2 µs for a Struct (Python 3.11) — a measurable part of a warm round trip.


class Hello(msgspec.Struct, frozen=True):
    """The worker imported its extension and is ready for requests."""

    info: dict[str, Any]


class HelloFailed(msgspec.Struct, frozen=True):
    """The worker could not start; `code` says why (e.g. confinement_unavailable)."""

    code: str
    message: str


class Reply(msgspec.Struct, frozen=True):
    id: int
    result: Any


class Failure(msgspec.Struct, frozen=True):
    id: int
    code: str
    message: str


HostEvent = Hello | HelloFailed | Reply | Failure


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request as the worker decodes it: the frame body is decoded straight into this
    (bounds checked by msgspec), no intermediate object."""

    id: Annotated[int, msgspec.Meta(ge=1, le=MAX_REQUEST_ID)]
    method: Annotated[str, msgspec.Meta(max_length=MAX_METHOD_CHARS)]
    params: dict[str, Any]
    timeout_ms: int | None = msgspec.field(default=None, name="timeoutMs")


_reply_decoder = msgspec.json.Decoder(_ReplyFrame)
_request_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()
_encode = _encoder.encode


class FrameTooLarge(ProtocolError):
    """A frame header declared more bytes than the receiver accepts."""

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(
            f"frame of {declared} bytes exceeds the limit of {limit} bytes",
            details={"declared_bytes": declared, "limit_bytes": limit},
        )
        self.declared = declared
        self.limit = limit


# ---------------------------------------------------------------- framing


def encode_frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frame bodies, holding at most one partial frame.

    The header is checked before any body byte is kept, so a hostile length costs nothing.
    """

    __slots__ = ("_buffer", "max_body")

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def whole(self, data: bytes) -> memoryview | bytes | None:
        """The body of `data` when it is exactly one whole frame and nothing is buffered (the
        common case); None otherwise (then `feed` it). A length over the limit raises here too.
        A small body is sliced out (a copy of a few bytes: ~85 ns), a large one viewed in
        place (no copy, but a view and its slice cost ~400 ns)."""
        if self._buffer or len(data) < HEADER_BYTES:
            return None
        (length,) = _unpack_header(data, 0)
        if length > self.max_body or length == 0:
            self._check_length(length)
        if len(data) != HEADER_BYTES + length:
            return None
        if length <= COPY_BELOW_BYTES:
            return data[HEADER_BYTES:]
        return memoryview(data)[HEADER_BYTES:]

    def feed(self, data: bytes) -> Iterator[memoryview | bytes]:
        buffer = self._buffer
        if not buffer and len(data) >= HEADER_BYTES:
            # Fast path: a whole frame in one read is decoded in place, without copying.
            (length,) = HEADER.unpack_from(data, 0)
            self._check_length(length)
            if len(data) == HEADER_BYTES + length:
                yield memoryview(data)[HEADER_BYTES:]
                return
        buffer += data
        pos = 0
        size = len(buffer)
        try:
            while size - pos >= HEADER_BYTES:
                (length,) = HEADER.unpack_from(buffer, pos)
                self._check_length(length)
                end = pos + HEADER_BYTES + length
                if end > size:
                    break
                yield bytes(buffer[pos + HEADER_BYTES : end])
                pos = end
        finally:
            if pos:
                del buffer[:pos]

    def _check_length(self, length: int) -> None:
        if length > self.max_body:
            raise FrameTooLarge(length, self.max_body)
        if length == 0:
            raise ProtocolError("empty frame")


# ---------------------------------------------------------------- host side


NO_PARAMS = msgspec.Raw(b"{}")
"""`{}` encoded: the params of `ping` and of any parameterless call."""


def encode_params(params: Any, max_input_bytes: int) -> msgspec.Raw:
    """Encode params once and check the input limit before anything is queued or sent."""
    if type(params) is dict and not params and max_input_bytes >= 2:
        return NO_PARAMS  # `ping` and parameterless methods: nothing to encode
    try:
        raw = _encoder.encode(params)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"params are not JSON-encodable: {exc}") from None
    if len(raw) > max_input_bytes:
        raise InputTooLarge(
            f"params are {len(raw)} bytes; the policy allows {max_input_bytes}",
            details={"bytes": len(raw), "limit": max_input_bytes},
        )
    return msgspec.Raw(raw)


class ChannelState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    READY = "ready"
    ERROR = "error"
    CLOSED = "closed"


_READY, _ERROR, _CLOSED = ChannelState.READY, ChannelState.ERROR, ChannelState.CLOSED
"""For the checks of every request and reply: on Python 3.11 reading an enum member off its
class costs ~120 ns (a descriptor), a module global ~30 ns."""
_UNSET = msgspec.UNSET


class HostChannel:
    """The host's protocol state for one worker."""

    def __init__(self, *, max_input_bytes: int, max_output_bytes: int) -> None:
        self.max_input_bytes = max_input_bytes
        self.max_output_bytes = max_output_bytes
        self.state = ChannelState.AWAITING_HELLO
        self.pending: set[int] = set()
        self._last_id = HELLO_ID
        self._reader = FrameReader(max_output_bytes + ENVELOPE_BYTES)
        self.error: ProtocolError | None = None
        self.before_error: list[HostEvent] = []
        """Events of well-formed frames that arrived, in the same data, before the violation:
        a reply a worker sent before it broke the protocol still answers its call."""

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def send_request(self, method: str, params: msgspec.Raw, timeout_ms: int) -> tuple[int, bytes]:
        """Number a request and frame it; the id is pending until its reply arrives."""
        if self.state is not _READY:
            raise ProtocolError(f"channel is {self.state.value}; cannot send")
        if len(params) > self.max_input_bytes:
            raise InputTooLarge(f"params are {len(params)} bytes; the policy allows {self.max_input_bytes}")
        request_id = self._last_id = self._last_id + 1
        body = _encode(_RequestOut(request_id, method, params, timeout_ms))
        self.pending.add(request_id)
        return request_id, _pack_header(len(body)) + body

    def forget(self, request_id: int) -> None:
        """Stop expecting a reply (the worker is being killed anyway)."""
        self.pending.discard(request_id)

    def receive_data(self, data: bytes) -> list[HostEvent]:
        """Events for every complete frame in `data`; a violation raises and poisons the channel."""
        state = self.state
        if state is _ERROR or state is _CLOSED:
            raise ProtocolError(f"channel is {state.value}")
        events: list[HostEvent] = []
        try:
            whole = self._reader.whole(data)
            if whole is not None:
                # One whole frame in one read, nothing buffered: the usual reply.
                return [self._event(whole)]
            for body in self._reader.feed(data):
                events.append(self._event(body))
        except ProtocolError as exc:
            self.state = ChannelState.ERROR
            self.error = exc
            self.before_error = events
            raise
        return events

    def receive_eof(self) -> None:
        if self.state is not ChannelState.ERROR:
            self.state = ChannelState.CLOSED

    def _event(self, body: memoryview | bytes) -> HostEvent:
        try:
            frame = _reply_decoder.decode(body)
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed frame: {_quoted(str(exc)[:200])}") from None
        result = frame.result
        if (
            frame.error is _UNSET
            and result is not _UNSET
            and self.state is _READY
            and frame.id in self.pending
        ):
            # The usual frame, a result for the pending request: the same checks as below in
            # the order that decides it soonest.
            self.pending.discard(frame.id)
            return Reply(frame.id, result)
        has_result = result is not msgspec.UNSET
        error = frame.error
        if has_result == (not isinstance(error, msgspec.UnsetType)):
            raise ProtocolError("a reply carries exactly one of 'result' and 'error'")
        if not isinstance(error, msgspec.UnsetType) and error.code not in WORKER_ERROR_CODES:
            raise ProtocolError(f"worker may not answer with error code {error.code!r}")
        if frame.id == HELLO_ID:
            if self.state is not ChannelState.AWAITING_HELLO:
                raise ProtocolError("duplicate hello")
            if not isinstance(error, msgspec.UnsetType):
                self.state = ChannelState.ERROR
                return HelloFailed(error.code, error.message)
            if not isinstance(frame.result, dict) or frame.result.get("ready") is not True:
                raise ProtocolError("hello must be {'ready': true, ...}")
            try:
                msgspec.convert(frame.result, _HelloInfo)
            except msgspec.ValidationError as exc:
                raise ProtocolError(f"malformed hello: {_quoted(str(exc)[:200])}") from None
            self.state = ChannelState.READY
            return Hello(frame.result)
        if self.state is not ChannelState.READY:
            raise ProtocolError("reply before hello")
        if frame.id not in self.pending:
            if frame.id <= self._last_id:
                raise ProtocolError(f"duplicate reply for id {frame.id}")
            raise ProtocolError(f"reply for unknown id {frame.id}")
        self.pending.discard(frame.id)
        if isinstance(error, msgspec.UnsetType):
            return Reply(frame.id, frame.result)
        return Failure(frame.id, error.code, error.message)


# ---------------------------------------------------------------- worker side


def _decode_request(body: memoryview | bytes) -> Request:
    try:
        return _request_decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed request: {_quoted(str(exc)[:200])}") from None


def _error_body(code: str, message: str) -> _ErrorBody:
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return _ErrorBody(code if code in WORKER_ERROR_CODES else "extension_error", message)


class WorkerChannel:
    """The worker's protocol state: decodes requests, encodes bounded replies."""

    def __init__(self, *, max_input_bytes: int, max_output_bytes: int) -> None:
        self.max_output_bytes = max_output_bytes
        self._reader = FrameReader(max_input_bytes + ENVELOPE_BYTES)

    def hello(self, info: dict[str, Any]) -> bytes:
        raw = _encoder.encode({**info, "ready": True})
        return encode_frame(_encoder.encode(_ReplyOut(HELLO_ID, msgspec.Raw(raw))))

    def hello_failed(self, code: str, message: str) -> bytes:
        return encode_frame(_encoder.encode(_FailureOut(HELLO_ID, _error_body(code, message))))

    def receive_data(self, data: bytes) -> list[Request]:
        whole = self._reader.whole(data)
        if whole is not None:
            return [_decode_request(whole)]  # one whole request in one read: the usual case
        return [_decode_request(body) for body in self._reader.feed(data)]

    def reply(self, request_id: int, result: Any) -> bytes:
        # One encode of the whole reply; the result's own size is the body's less the
        # envelope around it, which is exact: msgspec writes `{"id":N,"result":...}`
        # without whitespace (tests/test_proc_protocol.py checks the bound at its edge).
        try:
            body = _encode(_ReplyAny(request_id, result))
        except (TypeError, ValueError, OverflowError) as exc:
            return self.fail(request_id, "extension_error", f"handler returned a value that is not JSON: {exc}")
        if len(body) > self.max_output_bytes:
            size = len(body) - len(_REPLY_ENVELOPE) - len(str(request_id))
            if size > self.max_output_bytes:
                return self.fail(
                    request_id,
                    "output_too_large",
                    f"result is {size} bytes; the policy allows {self.max_output_bytes}",
                )
        return _pack_header(len(body)) + body

    def fail(self, request_id: int, code: str, message: str) -> bytes:
        return encode_frame(_encoder.encode(_FailureOut(request_id, _error_body(code, message))))

    def fail_error(self, request_id: int, error: KumixError) -> bytes:
        return self.fail(request_id, error.code, error.message)
