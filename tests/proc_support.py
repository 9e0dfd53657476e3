"""Helpers shared by the proc host tests: a test policy, fixture discovery, process checks."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from kumix.extensions.policy import Policy, load_policy
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.session import ProcSession
from kumix.extensions.registry import ExtensionRecord, discover

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "proc"

TEST_LIMITS: dict[str, Any] = {
    "defaultTimeoutMs": 5000,
    "maxTimeoutMs": 20000,
    "maxInputBytes": 65536,
    "maxOutputBytes": 262144,
    "maxMemoryMb": 256,
    "maxCpuSeconds": 30,
    "maxConcurrency": 4,
    "maxQueue": 8,
    "maxLogBytes": 65536,
    "maxCrashes": 50,
    "crashWindowSeconds": 60,
    "requireConfinement": False,
    # The pool tests count workers exactly; spares have tests of their own that ask for them.
    "spareWorkers": 0,
}


def write_policy(path: Path, **overrides: Any) -> Policy:
    doc = {
        "name": "proc-test",
        "capabilities": [
            "render.markdown", "render.mermaid", "theme.tokens", "test.hostile", "test.echo", "test.pool", "fs.scratch",
        ],
        "pluginOrigins": None,
        "proc": {**TEST_LIMITS, **overrides},
    }
    path.write_text(json.dumps(doc))
    return load_policy(str(path))


def records() -> dict[str, ExtensionRecord]:
    found = {r.id: r for r in discover([FIXTURES])}
    bad = [r.id for r in found.values() if r.manifest is None]
    assert not bad, f"fixture manifests invalid: {bad}"
    return found


def session(host: ProcHost, extension_id: str) -> ProcSession:
    record = records()[extension_id]
    assert record.manifest is not None
    return host.session(record.id, record.path, record.manifest)


def pid_of(session: ProcSession, answer: dict[str, Any]) -> int:
    """The host's pid of the worker that gave `answer`, found by the inode of the request channel
    the fixture names (`channel`): inside its own PID namespace a worker is pid 1 and cannot know
    the pid the host sees. Call it while that worker is still alive."""
    for pid in reversed(session.worker_pids):
        try:
            if os.stat(f"/proc/{pid}/fd/3").st_ino == answer["channel"]:
                return pid
        except OSError:
            continue
    raise AssertionError(f"no live worker of this session answers on channel {answer['channel']}")


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


async def wait_gone(pids: list[int], limit_s: float = 10.0) -> list[int]:
    """The pids still running after waiting up to `limit_s` (a safety net, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        alive = [pid for pid in pids if running(pid)]
        if not alive or loop.time() > deadline:
            return alive
        await asyncio.sleep(0.01)


def proc_pids_of(forkserver_pid: int) -> list[int]:
    """The fork server's descendants: its children (each a worker's supervisor, or the worker
    itself without a PID namespace) and their children (the workers, pid 1 of their own)."""
    found: list[int] = []
    pending = [forkserver_pid]
    while pending:
        pid = pending.pop()
        children = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            kids = [int(p) for p in children.read_text().split()]
        except OSError:
            kids = []
        found += kids
        pending += kids
    return found


__all__ = ["FIXTURES", "os"]
