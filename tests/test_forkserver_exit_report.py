"""The fork server tells the host a worker has exited as soon as the worker's PID-namespace
supervisor reports its status, not only once the supervisor itself is gone: the supervisor's
own exit tears down the worker's mount, IPC and network namespaces, which a crashed call would
otherwise wait out. Driven with a real child standing in for a supervisor that reported and
has not exited yet."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from kumix.extensions.proc import forkserver
from kumix.extensions.proc.pid_namespace import RECORD, REPORT_PID, REPORT_STATUS

WORKER_PID = 4242
WORKER_STATUS = int(signal.SIGSEGV)


def _server(sent: list[dict[str, Any]]) -> Any:
    class Poller:
        def register(self, fd: int, events: int) -> None:
            pass

        def unregister(self, fd: int) -> None:
            pass

    class Control:
        def send(self, data: bytes) -> None:
            sent.append(json.loads(data))

    server: Any = object.__new__(forkserver._Server)
    server.poller, server.control = Poller(), Control()
    server.children, server.reports = {}, {}
    return server


def _stalled_supervisor() -> tuple[int, int]:
    """A child that reports a worker's pid and status, then stays alive (its exit still to
    come); returns its pid and the report pipe's read end."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(report_r)
        os.write(report_w, RECORD.pack(REPORT_PID, WORKER_PID))
        os.write(report_w, RECORD.pack(REPORT_STATUS, WORKER_STATUS))
        time.sleep(60)
        os._exit(0)
    os.close(report_w)
    os.set_blocking(report_r, False)
    return pid, report_r


def test_exited_is_sent_on_the_status_record_and_only_once() -> None:
    sent: list[dict[str, Any]] = []
    server = _server(sent)
    pid, report_r = _stalled_supervisor()
    try:
        child = forkserver._Child(7, pid, report_r)
        server.children[pid] = child
        server.reports[report_r] = child
        deadline = time.monotonic() + 10
        while child.worker_status is None and time.monotonic() < deadline:
            server._read_report(child)
            time.sleep(0.005)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the supervisor is still there"
        assert sent == [
            {"op": "spawned", "token": 7, "pid": WORKER_PID},
            {"op": "exited", "pid": WORKER_PID, "status": WORKER_STATUS},
        ]
    finally:
        os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: for `_reap`
    server._reap()
    assert pid not in server.children, "reaped"
    assert [m["op"] for m in sent] == ["spawned", "exited"], "its supervisor's end sends nothing more"
