"""Spin-then-block: the bounded poll that keeps a vCPU awake for a fast answer."""

from __future__ import annotations

import os

from kumix.extensions.proc.spin_wait import spin_until_readable


def test_readable_pipe_is_seen_without_consuming_data() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"reply")
        assert spin_until_readable(read_fd, 1_000_000) is True
        assert os.read(read_fd, 16) == b"reply"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_silent_pipe_gives_up_after_the_budget() -> None:
    read_fd, write_fd = os.pipe()
    try:
        assert spin_until_readable(read_fd, 200_000) is False
        assert spin_until_readable(read_fd, 0) is False
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_closed_writer_counts_as_readable_so_the_reader_sees_eof() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    try:
        assert spin_until_readable(read_fd, 1_000_000) is True
        assert os.read(read_fd, 16) == b""
    finally:
        os.close(read_fd)
