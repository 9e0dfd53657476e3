"""Drive tests/matrix/nio_peer.py (a plain matrix-nio client in another process)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.synapse_harness import TestUser

REPO_ROOT = Path(__file__).resolve().parents[2]


class NioPeer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.device_id = ""

    @classmethod
    async def start(cls, homeserver: str, user: TestUser, store: Path) -> NioPeer:
        store.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.matrix.nio_peer", homeserver, user.user_id, user.password, str(store),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
        )
        peer = cls(proc)
        hello = await peer._read()
        assert hello.get("ready"), hello
        peer.device_id = hello["device_id"]
        return peer

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        assert line, "nio peer exited"
        doc: dict[str, Any] = json.loads(line)
        return doc

    async def do(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        result = await self._read()
        assert "error" not in result, result
        return result

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.do("stop"), 30)
                await asyncio.wait_for(self.proc.wait(), 30)
            except (AssertionError, TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
