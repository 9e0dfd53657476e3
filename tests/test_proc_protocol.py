"""The sans-I/O wire protocol, driven with hostile bytes: no pipes, no processes."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kumix.core.errors import BadRequest, InputTooLarge, ProtocolError
from kumix.extensions.proc.protocol import (
    COPY_BELOW_BYTES,
    ENVELOPE_BYTES,
    MAX_REQUEST_ID,
    ChannelState,
    Failure,
    FrameReader,
    FrameTooLarge,
    Hello,
    HelloFailed,
    HostChannel,
    Reply,
    WorkerChannel,
    encode_frame,
    encode_params,
)

MAX_OUT = 1024


def frame(doc: object) -> bytes:
    return encode_frame(json.dumps(doc).encode())


def ready_channel() -> HostChannel:
    channel = HostChannel(max_input_bytes=1024, max_output_bytes=MAX_OUT)
    events = channel.receive_data(frame({"id": 0, "result": {"ready": True, "confined": False}}))
    assert events == [Hello({"ready": True, "confined": False})]
    assert channel.state is ChannelState.READY
    return channel


def sent(channel: HostChannel, method: str = "m") -> int:
    request_id, _ = channel.send_request(method, encode_params({}, 1024), 1000)
    return request_id


def test_request_reply_round_trip_through_both_sides() -> None:
    host = ready_channel()
    worker = WorkerChannel(max_input_bytes=1024, max_output_bytes=MAX_OUT)
    request_id, data = host.send_request("render.markdown", encode_params({"source": "x"}, 1024), 250)
    [request] = worker.receive_data(data)
    assert (request.id, request.method, request.params, request.timeout_ms) == (
        request_id, "render.markdown", {"source": "x"}, 250
    )
    events = host.receive_data(worker.reply(request.id, {"html": "<p>x</p>"}))
    assert events == [Reply(request_id, {"html": "<p>x</p>"})]
    assert host.pending == set()


def test_frames_split_at_every_byte_boundary_reassemble() -> None:
    host = ready_channel()
    ids = [sent(host) for _ in range(3)]
    stream = b"".join(frame({"id": i, "result": i}) for i in ids)
    events = []
    for byte in range(len(stream)):
        events += host.receive_data(stream[byte : byte + 1])
    assert events == [Reply(i, i) for i in ids]


def test_worker_error_reply_becomes_failure_event() -> None:
    host = ready_channel()
    request_id = sent(host)
    events = host.receive_data(frame({"id": request_id, "error": {"code": "bad_request", "message": "no"}}))
    assert events == [Failure(request_id, "bad_request", "no")]


def test_hello_failure_carries_confinement_code() -> None:
    host = HostChannel(max_input_bytes=1, max_output_bytes=MAX_OUT)
    worker = WorkerChannel(max_input_bytes=1, max_output_bytes=MAX_OUT)
    events = host.receive_data(worker.hello_failed("confinement_unavailable", "no seccomp"))
    assert events == [HelloFailed("confinement_unavailable", "no seccomp")]
    with pytest.raises(ProtocolError):
        host.send_request("m", encode_params({}, 10), 1)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"id": 99, "result": 1}, "unknown id 99"),
        ({"id": 1, "result": 1, "error": {"code": "bad_request", "message": ""}}, "exactly one"),
        ({"id": 1}, "exactly one"),
        ({"id": 1, "result": 1, "extra": True}, "malformed"),
        ({"id": -1, "result": 1}, "malformed"),
        ({"id": "1", "result": 1}, "malformed"),
        ({"id": 1, "error": {"code": "policy_denied", "message": "trust me"}}, "may not answer"),
        ({"id": 1, "error": {"code": "bad_request", "message": "x" * 5000}}, "malformed"),
        ({"id": 0, "result": {"ready": True}}, "duplicate hello"),
        ([1, 2, 3], "malformed"),
    ],
)
def test_hostile_reply_poisons_the_channel(doc: object, reason: str) -> None:
    host = ready_channel()
    sent(host)
    with pytest.raises(ProtocolError, match=reason):
        host.receive_data(frame(doc))
    assert host.state is ChannelState.ERROR
    with pytest.raises(ProtocolError):
        host.receive_data(frame({"id": 1, "result": 1}))
    with pytest.raises(ProtocolError):
        sent(host)


def test_duplicate_reply_is_a_violation() -> None:
    host = ready_channel()
    request_id = sent(host)
    host.receive_data(frame({"id": request_id, "result": 1}))
    with pytest.raises(ProtocolError, match="duplicate reply"):
        host.receive_data(frame({"id": request_id, "result": 2}))


def test_reply_before_hello_is_a_violation() -> None:
    host = HostChannel(max_input_bytes=10, max_output_bytes=MAX_OUT)
    with pytest.raises(ProtocolError, match="before hello"):
        host.receive_data(frame({"id": 1, "result": 1}))


def test_oversized_header_is_refused_before_the_body_arrives() -> None:
    host = ready_channel()
    sent(host)
    declared = MAX_OUT + ENVELOPE_BYTES + 1
    with pytest.raises(FrameTooLarge) as info:
        host.receive_data(struct.pack(">I", declared))  # header only, not one body byte
    assert info.value.declared == declared
    assert host.buffered == 0
    assert host.state is ChannelState.ERROR


def test_reader_never_holds_more_than_one_frame() -> None:
    reader = FrameReader(max_body=100)
    chunk = struct.pack(">I", 100) + b"x" * 60
    assert list(reader.feed(chunk)) == []
    assert reader.buffered == len(chunk)
    with pytest.raises(FrameTooLarge):
        list(reader.feed(b"x" * 40 + struct.pack(">I", 101)))


def test_empty_frame_is_a_violation() -> None:
    host = ready_channel()
    with pytest.raises(ProtocolError, match="empty frame"):
        host.receive_data(struct.pack(">I", 0))


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    host = ready_channel()
    request_id = sent(host)
    body = b'{"id": %d, "result": ' % request_id + b"[" * 100_000 + b"]" * 100_000 + b"}"
    big = HostChannel(max_input_bytes=10, max_output_bytes=len(body))
    big.receive_data(frame({"id": 0, "result": {"ready": True}}))
    big.send_request("m", encode_params({}, 10), 1)
    with pytest.raises(ProtocolError):
        big.receive_data(encode_frame(body))


def test_input_limit_is_checked_when_encoding() -> None:
    with pytest.raises(InputTooLarge):
        encode_params({"x": "y" * 100}, 50)
    with pytest.raises(BadRequest):
        encode_params({"x": object()}, 50)


def test_worker_refuses_a_result_above_the_output_limit() -> None:
    worker = WorkerChannel(max_input_bytes=10, max_output_bytes=100)
    host = HostChannel(max_input_bytes=10, max_output_bytes=100)
    host.receive_data(worker.hello({}))
    request_id, _ = host.send_request("m", encode_params({}, 10), 1)
    [event] = host.receive_data(worker.reply(request_id, "x" * 200))
    assert isinstance(event, Failure)
    assert event.code == "output_too_large"


def test_a_result_exactly_at_the_output_limit_passes_and_one_byte_more_does_not() -> None:
    # The worker encodes a reply once and derives the result's size from the body: the
    # arithmetic must be exact for every id width.
    limit = 100
    worker = WorkerChannel(max_input_bytes=10, max_output_bytes=limit)
    for request_id in (1, 98_765, MAX_REQUEST_ID):
        at_limit = json.loads(worker.reply(request_id, "x" * (limit - 2))[4:])  # JSON quotes count
        assert at_limit == {"id": request_id, "result": "x" * (limit - 2)}
        over = json.loads(worker.reply(request_id, "x" * (limit - 1))[4:])
        assert over["id"] == request_id
        assert over["error"]["code"] == "output_too_large"
        assert f"result is {limit + 1} bytes" in over["error"]["message"]


def test_small_and_large_whole_frames_decode_alike() -> None:
    # A small body is copied out of the read, a large one viewed in place.
    big = COPY_BELOW_BYTES * 4
    host = HostChannel(max_input_bytes=big, max_output_bytes=big)
    host.receive_data(frame({"id": 0, "result": {"ready": True}}))
    worker = WorkerChannel(max_input_bytes=1024, max_output_bytes=big)
    for size in (1, COPY_BELOW_BYTES - 30, COPY_BELOW_BYTES, COPY_BELOW_BYTES + 1, big - 30):
        request_id = sent(host)
        assert host.receive_data(worker.reply(request_id, "y" * size)) == [Reply(request_id, "y" * size)]
    request_id, data = host.send_request("m", encode_params({"s": "z" * (COPY_BELOW_BYTES * 2)}, big), 5)
    [request] = WorkerChannel(max_input_bytes=big, max_output_bytes=big).receive_data(data)
    assert request.params == {"s": "z" * (COPY_BELOW_BYTES * 2)}


def test_worker_refuses_oversized_and_malformed_requests() -> None:
    worker = WorkerChannel(max_input_bytes=10, max_output_bytes=100)
    with pytest.raises(FrameTooLarge):
        worker.receive_data(struct.pack(">I", 10 + ENVELOPE_BYTES + 1))
    worker = WorkerChannel(max_input_bytes=10, max_output_bytes=100)
    with pytest.raises(ProtocolError):
        worker.receive_data(frame({"id": 0, "method": "m", "params": {}}))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_arbitrary_bytes_either_parse_or_raise_protocol_error(chunks: list[bytes]) -> None:
    host = ready_channel()
    for _ in range(3):
        sent(host)
    try:
        for chunk in chunks:
            for event in host.receive_data(chunk):
                assert isinstance(event, Reply | Failure)
    except ProtocolError:
        assert host.state is ChannelState.ERROR
    assert host.buffered <= MAX_OUT + ENVELOPE_BYTES + 4 + 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(1, 7))
def test_any_json_result_survives_any_chunking(value: object, step: int) -> None:
    host = ready_channel()
    worker = WorkerChannel(max_input_bytes=1024, max_output_bytes=MAX_OUT)
    request_id = sent(host)
    data = worker.reply(request_id, value)
    events = []
    for start in range(0, len(data), step):
        events += host.receive_data(data[start : start + step])
    if len(json.dumps(value)) > MAX_OUT * 2:
        return
    [event] = events
    assert event == Reply(request_id, value) or (isinstance(event, Failure) and event.code == "output_too_large")
