"""The pure rules of the web server: header set, error statuses, media answers, and the
bounded send queue driven by hostile sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kumix.core.errors import ALL_ERRORS
from kumix.web.errors import STATUS_OF_CODE
from kumix.web.headers import COMMON, PAGE_CSP, PERMISSIONS_POLICY, security_headers
from kumix.web.media_rules import media_answer
from kumix.web.send_queue import CLOSE_SERVER_STOPPING, CLOSE_TOO_SLOW, SendQueue


def test_page_csp_has_the_required_directives_and_no_unsafe_source() -> None:
    assert "'unsafe-inline'" not in PAGE_CSP
    assert "'unsafe-eval'" not in PAGE_CSP
    for directive in ("require-trusted-types-for 'script'", "object-src 'none'", "base-uri 'none'",
                      "frame-ancestors 'none'", "form-action 'self'", "connect-src 'self'", "default-src 'none'"):
        assert directive in PAGE_CSP.split("; ")
    for feature in ("camera", "microphone", "geolocation", "usb", "serial", "hid", "payment"):
        assert f"{feature}=()" in PERMISSIONS_POLICY


def test_route_headers_cannot_weaken_the_set() -> None:
    out = dict(security_headers([(b"x-content-type-options", b"sniff-away"), (b"cache-control", b"max-age=9999"),
                                 (b"referrer-policy", b"unsafe-url")]))
    assert out[b"x-content-type-options"] == b"nosniff"
    assert out[b"cache-control"] == b"no-store"
    assert out[b"referrer-policy"] == b"no-referrer"
    for name, value in COMMON:
        assert out[name.encode()] == value.encode()


def test_every_error_code_has_a_documented_status() -> None:
    assert {c.code for c in ALL_ERRORS} <= set(STATUS_OF_CODE)


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@pytest.mark.parametrize(("mimetype", "data", "inline"), [
    ("image/png", PNG, True),
    ("image/jpeg", b"\xff\xd8\xff\xe0rest", True),
    ("image/gif", b"GIF89a...", True),
    ("image/webp", b"RIFF\0\0\0\0WEBPVP8 ", True),
    ("IMAGE/PNG; charset=x", PNG, True),
    ("text/html", b"<script>alert(1)</script>", False),
    ("image/svg+xml", b"<svg onload=alert(1)>", False),
    ("application/pdf", b"%PDF", False),
    (None, PNG, False),
    # A declared image whose bytes are HTML is not shown inline.
    ("image/png", b"<html><script>alert(1)</script>", False),
    ("image/webp", b"RIFF\0\0\0\0AVI ", False),
])
def test_media_answer(mimetype: str | None, data: bytes, inline: bool) -> None:
    answer = media_answer(mimetype, "f", data)
    headers = dict(answer.headers)
    assert answer.inline is inline
    assert headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"].startswith("inline" if inline else "attachment")
    if not inline:
        assert answer.content_type == "application/octet-stream"


@given(st.text(max_size=80))
def test_media_file_names_cannot_add_header_parameters(name: str) -> None:
    disposition = dict(media_answer("text/html", name, b"x").headers)["content-disposition"]
    assert disposition.count(";") == 2
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert disposition.count('"') == 2


ops = st.lists(st.one_of(
    st.tuples(st.just("offer"), st.binary(max_size=300)),
    st.tuples(st.just("take"), st.none()),
    st.tuples(st.just("close"), st.none()),
), max_size=200)


@given(ops, st.integers(1, 8), st.integers(1, 1000))
def test_send_queue_never_exceeds_its_bounds_and_stays_fifo(seq: list[tuple[str, bytes | None]], max_frames: int,
                                                            max_bytes: int) -> None:
    q = SendQueue(max_frames, max_bytes)
    model: list[bytes] = []
    for op, arg in seq:
        if op == "offer":
            assert arg is not None
            was_open = q.state == "open"
            accepted = q.offer(arg)
            if accepted:
                model.append(arg)
            elif was_open:
                assert q.state == "overflowed"
                model.clear()
        elif op == "take":
            got = q.take()
            assert got == (model.pop(0) if model and q.state == "open" else None)
        else:
            q.close()
            model.clear()
        assert len(q) <= max_frames
        assert q.queued_bytes <= max_bytes
        assert q.queued_bytes == sum(len(f) for f in model)
        if q.state != "open":
            assert len(q) == 0
            assert q.take() is None


def test_send_queue_overflow_is_final_and_names_its_close_code() -> None:
    q = SendQueue(max_frames=2, max_bytes=100)
    assert q.offer(b"a")
    assert q.offer(b"b")
    assert q.close_code is None
    assert not q.offer(b"c")  # a reader that fell behind
    assert q.close_code == CLOSE_TOO_SLOW
    assert not q.offer(b"d")
    assert q.take() is None
    q2 = SendQueue(max_frames=10, max_bytes=3)
    assert not q2.offer(b"four")  # one oversized frame overflows too
    assert q2.close_code == CLOSE_TOO_SLOW
    q3 = SendQueue()
    q3.close()
    assert q3.close_code == CLOSE_SERVER_STOPPING
