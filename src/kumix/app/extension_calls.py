"""Calling proc extensions: the use case every front end (CLI, Matrix client, web) shares.

`ExtensionCaller` owns a `ProcHost` for its lifetime. Each call first asks the extension
service whether the extension may run now (`disabled`, `policy_denied`, `not_granted`,
`invalid_manifest`, `not_found`), so a change made by another Kumix process takes effect on
the next call; then the session checks the method against the manifest and the policy.

Figures (`stats`) are those of this process's host. When an extension's session ends
(disable, shutdown) the figures recorded since the last save are added to the data
directory's saved figures (`ExtensionService.stats_store`), which `kumix ext info` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from kumix.app.extensions import ExtensionService, ExtensionStatus
from kumix.app.settings import Settings
from kumix.core.errors import BadRequest, Disabled, NotGranted, PolicyDenied
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.launch import LaunchedServer
from kumix.extensions.proc.session import ProcSession

FiguresListener = Callable[[str, dict[str, Any]], None]
"""Told an extension's id and this process's figures for it after each call or ping."""


class ExtensionCaller:
    def __init__(self, extensions: ExtensionService, settings: Settings, *,
                 on_figures: FiguresListener | None = None, launched: LaunchedServer | None = None) -> None:
        """`launched`: the fork server `kumix.app.early_start` started for this process, if any."""
        self._extensions = extensions
        self._on_figures = on_figures
        self._host = ProcHost(extensions.policy, logs_dir=settings.logs_dir, scratch_root=settings.scratch_dir,
                              launched=launched)

    async def __aenter__(self) -> ExtensionCaller:
        await self._host.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for extension_id in self._host.session_ids():
                self._save_stats(extension_id)
        finally:
            await self._host.aclose()

    def _save_stats(self, extension_id: str) -> None:
        store = self._extensions.stats_store
        delta = self._host.stats_delta(extension_id)
        if store is not None and delta is not None:
            store.add(extension_id, delta)

    @property
    def host(self) -> ProcHost:
        return self._host

    async def session(self, extension_id: str) -> ProcSession:
        """The session of a runnable proc extension, or the typed reason it may not run."""
        try:
            status = self._extensions.require_runnable(extension_id)
        except (Disabled, PolicyDenied, NotGranted):
            self._save_stats(extension_id)
            await self._host.dispose(extension_id)
            raise
        return self._session_for(status)

    def _session_for(self, status: ExtensionStatus) -> ProcSession:
        manifest = status.manifest
        if manifest.kind != "proc":
            raise BadRequest(f"{status.id} is a {manifest.kind} extension; only proc extensions can be called")
        return self._host.session(status.id, status.record.path, manifest)

    async def call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any:
        session = await self.session(extension_id)
        try:
            return await session.call(method, params)
        finally:
            self._figures_changed(extension_id)

    async def ping(self, extension_id: str) -> float:
        session = await self.session(extension_id)
        try:
            return await session.ping()
        finally:
            self._figures_changed(extension_id)

    def _figures_changed(self, extension_id: str) -> None:
        # A call that failed counts too (errors, timeouts, crashes are figures).
        if self._on_figures is not None:
            self._on_figures(extension_id, self.stats(extension_id))

    async def warm(self, extension_id: str) -> None:
        """Start the worker ahead of the first call."""
        session = await self.session(extension_id)
        await session.warm()

    def stats(self, extension_id: str) -> dict[str, Any]:
        return self._host.stats(extension_id)

    async def enable(self, extension_id: str) -> ExtensionStatus:
        """Enable (or re-enable) an extension; a crash-open circuit closes again."""
        status = self._extensions.enable(extension_id)
        session = self._host.existing(extension_id)
        if session is not None:
            await session.reset()
        return status

    async def disable(self, extension_id: str) -> ExtensionStatus:
        status = self._extensions.disable(extension_id)
        self._save_stats(extension_id)
        await self._host.dispose(extension_id)
        return status
