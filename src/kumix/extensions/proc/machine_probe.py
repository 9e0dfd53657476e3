"""`kumix doctor`'s probe, the side that stays unconfined: fork the probe child, read its report.

The child confines itself exactly as a worker would (`confinement.probe_child`) and tries a
few forbidden things. It is forked before the confinement machinery is imported, and imports
it itself: this process never loads pyprctl, Landlock or the seccomp compiler, and whatever
it does between `start_probe` and `RunningProbe.result` (the doctor loads the policy) runs
beside the child's imports and confinement, on another CPU when one is free.
"""

from __future__ import annotations

import json
import os
import select
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kumix.extensions.proc.layers import LAYERS, ConfinementReport

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

PROBE_TIMEOUT_SECONDS = 20.0
"""A probe confines one forked child and checks a few refusals; it takes milliseconds, but the
child builds the runtime read set from /proc and sysconfig, so allow for a slow, loaded machine."""


@dataclass(frozen=True)
class ProbeResult:
    report: ConfinementReport
    checks: dict[str, str]
    """What the confined child saw when it tried something it must not do (errno names)."""
    kernel: str
    landlock_abi: int
    seccomp_api: int
    host_uid: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "host_uid": self.host_uid,
            "landlock_abi": self.landlock_abi,
            "seccomp_api": self.seccomp_api,
            **self.report.to_json(),
            "checks": dict(self.checks),
        }


class RunningProbe:
    """A probe child at work; `result()` waits for its report. Use it as a context manager:
    leaving the block reaps the child and removes its directory, whether or not `result()` ran."""

    def __init__(self, simulate_unavailable: Iterable[str] = ()) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kumix-probe-")
        ext_dir = Path(self._tmp.name)
        # mkdtemp makes it 0700; the unprivileged probe child must be able to list it.
        os.chmod(ext_dir, 0o755)  # noqa: S103
        simulated = frozenset(simulate_unavailable)
        self._read_end, write_end = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(self._read_end)
                from kumix.extensions.proc.confinement import probe_child

                answer = probe_child(ext_dir, simulated)
                code = 0
            except BaseException as exc:
                answer = {"crash": f"{type(exc).__name__}: {exc}"}
            finally:
                try:
                    os.write(write_end, json.dumps(answer).encode())
                finally:
                    os._exit(code)
        os.close(write_end)
        self._open = True

    def __enter__(self) -> RunningProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            os.close(self._read_end)
            _reap(self._pid)
            self._tmp.cleanup()

    def result(self) -> ProbeResult:
        try:
            data = _read_all(self._read_end, PROBE_TIMEOUT_SECONDS)
        finally:
            self.close()
        doc: dict[str, Any] = json.loads(data) if data else {"crash": "the probe child exited without a report"}
        if "crash" in doc:
            report = ConfinementReport(
                dict.fromkeys(LAYERS, False), dict.fromkeys(LAYERS, f"probe failed: {doc['crash']}")
            )
            checks: dict[str, str] = {}
            # Only when the probe failed does this process load the bindings to ask itself.
            from kumix.extensions.proc import landlock_rules, seccomp_filter

            landlock_abi, seccomp_api = landlock_rules.abi_version(), seccomp_filter.api_level()
        else:
            body = doc["report"]
            report = ConfinementReport(body["layers"], body["problems"], body["details"])
            checks = doc["checks"]
            landlock_abi, seccomp_api = doc["landlock_abi"], doc["seccomp_api"]
        return ProbeResult(report=report, checks=checks, kernel=os.uname().release, landlock_abi=landlock_abi,
                           seccomp_api=seccomp_api, host_uid=os.geteuid())


def start_probe(simulate_unavailable: Iterable[str] = ()) -> RunningProbe:
    """Fork the probe child now; its report is read by `result()`."""
    return RunningProbe(simulate_unavailable)


def probe_machine(simulate_unavailable: Iterable[str] = ()) -> ProbeResult:
    """Confine a throwaway forked child with an empty extension directory and report what held.

    The calling process is never confined; the child exits right after writing its report."""
    with start_probe(simulate_unavailable) as probe:
        return probe.result()


def _read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass
