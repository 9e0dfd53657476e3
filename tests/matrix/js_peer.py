"""Drive tests/js_peer/peer.mjs: matrix-js-sdk with its Rust crypto, in Node, as the
independent implementation Kumix's E2EE is checked against.

The peer's packages are installed from npm with the pinned versions and lockfile
(`npm ci`) the first time, and again whenever the lockfile changes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.synapse_harness import TestUser

PEER_DIR = Path(__file__).resolve().parents[1] / "js_peer"
STAMP = PEER_DIR / "node_modules" / ".kumix-lock"


def ensure_installed() -> None:
    """`npm ci` unless node_modules already matches package-lock.json."""
    lock = (PEER_DIR / "package-lock.json").read_bytes()
    if STAMP.exists() and STAMP.read_bytes() == lock:
        return
    npm = shutil.which("npm")
    assert npm is not None, "the interop tests need Node 20+ and npm"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER_DIR, check=True,
                   stdout=subprocess.DEVNULL)
    STAMP.write_bytes(lock)


class JsPeer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.device_id = ""
        self.user_id = ""

    @classmethod
    async def start(cls, homeserver: str, user: TestUser) -> JsPeer:
        ensure_installed()
        node = shutil.which("node")
        assert node is not None
        proc = await asyncio.create_subprocess_exec(
            node, str(PEER_DIR / "peer.mjs"), homeserver, user.user_id, user.password,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=PEER_DIR,
        )
        peer = cls(proc)
        hello = await peer._read()
        assert hello.get("ready"), hello
        peer.device_id, peer.user_id = hello["device_id"], hello["user_id"]
        return peer

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
            assert line, "js peer exited"
            if line.startswith(b"@@"):
                doc: dict[str, Any] = json.loads(line[2:])
                return doc

    async def do(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        result = await self._read()
        assert "error" not in result, result["error"]
        return result

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.do("stop"), 30)
                await asyncio.wait_for(self.proc.wait(), 30)
            except (AssertionError, TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
