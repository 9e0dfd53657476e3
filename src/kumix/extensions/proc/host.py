"""The proc extension host: one fork server, one session per proc extension in use.

`ProcHost` is an async context manager; leaving it disposes every session (their workers
are killed and reaped) and stops the fork server. It is the only path to a worker: the
governance checks that depend on the manifest and the policy (`capability_not_declared`,
`policy_denied`) run in `ProcSession.call`, before anything reaches a worker. Whether an
extension is enabled, granted and valid is the caller's question (see
`kumix.app.extension_calls`), because it lives in the user's state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

from kumix.core.errors import BadRequest, ReloadRequired, Unavailable
from kumix.extensions.manifest import Manifest
from kumix.extensions.policy import Policy
from kumix.extensions.proc.launch import LaunchedServer
from kumix.extensions.proc.session import ProcSession
from kumix.extensions.proc.spawner import ForkServer

SCRATCH_CAPABILITY = "fs.scratch"
"""Extensions declaring it get a private writable directory (and HOME/TMPDIR there)."""


class ProcHost:
    def __init__(
        self,
        policy: Policy,
        *,
        logs_dir: Path,
        scratch_root: Path | None = None,
        launched: LaunchedServer | None = None,
    ) -> None:
        """`launched`: a fork server the caller started before the host (launch.py); the
        host adopts and owns it."""
        self.policy = policy
        self._logs_dir = logs_dir
        self._scratch_root = scratch_root
        self._forkserver = ForkServer(logs_dir, launched=launched)
        self._sessions: dict[str, ProcSession] = {}
        self._closed = False

    async def __aenter__(self) -> ProcHost:
        # The fork server boots (Python start, imports) while the caller's own start-up
        # goes on, instead of after its first call asks for a worker.
        self._forkserver.start_soon()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def forkserver_pid(self) -> int | None:
        return self._forkserver.pid

    @property
    def forkserver(self) -> ForkServer:
        return self._forkserver

    def session(self, extension_id: str, extension_dir: Path, manifest: Manifest) -> ProcSession:
        """The session of a proc extension, created on first use (its worker starts lazily)."""
        if self._closed:
            raise Unavailable("the proc host is shut down")
        session = self._sessions.get(extension_id)
        if session is not None and session.manifest == manifest and session.extension_dir == extension_dir:
            return session
        if manifest.kind != "proc":
            raise BadRequest(f"{extension_id} is a {manifest.kind} extension, not a proc extension")
        if session is not None:
            raise ReloadRequired(f"{extension_id} changed on disk while running; it reloads when re-enabled")
        scratch = None
        if SCRATCH_CAPABILITY in manifest.capabilities and self._scratch_root is not None:
            scratch = self._scratch_root / extension_id
            scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        session = ProcSession(
            extension_id=extension_id,
            extension_dir=extension_dir,
            manifest=manifest,
            policy=self.policy,
            forkserver=self._forkserver,
            logs_dir=self._logs_dir,
            scratch_dir=scratch,
        )
        self._sessions[extension_id] = session
        return session

    def existing(self, extension_id: str) -> ProcSession | None:
        return self._sessions.get(extension_id)

    def stats(self, extension_id: str) -> dict[str, Any]:
        session = self._sessions.get(extension_id)
        if session is None:
            return {}
        return session.stats.snapshot()

    def stats_delta(self, extension_id: str) -> dict[str, Any] | None:
        """Figures recorded since the previous delta, for saving; None without a session."""
        session = self._sessions.get(extension_id)
        return None if session is None else session.stats.take_delta()

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    async def dispose(self, extension_id: str) -> None:
        """Stop an extension's worker (disabled or reloaded); the next session starts fresh."""
        session = self._sessions.pop(extension_id, None)
        if session is not None:
            await session.dispose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.dispose(Unavailable("the proc host is shutting down")) for session in sessions))
        await self._forkserver.aclose()
