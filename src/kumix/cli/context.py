"""What every command gets: resolved settings, and lazily opened state and services."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cached_property

from kumix.app.extensions import ExtensionService
from kumix.app.settings import Settings
from kumix.core.errors import KumixError
from kumix.extensions.policy import Policy, load_policy
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.extension_stats import ExtensionStatsStore


@dataclass
class CliContext:
    args: argparse.Namespace
    settings: Settings
    _closers: list[Database] = field(default_factory=list)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.policy)

    @cached_property
    def database(self) -> Database:
        self.settings.ensure_data_dir()
        db = Database(self.settings.state_db)
        self._closers.append(db)
        return db

    @cached_property
    def extensions(self) -> ExtensionService:
        return ExtensionService(
            self.policy,
            ExtensionStateStore(self.database),
            self.settings.extension_roots,
            stats_store=ExtensionStatsStore(self.database),
        )

    def extensions_if_loadable(self) -> ExtensionService | None:
        """The extension service, or None when the policy or state cannot be loaded; for
        commands whose main job (sending a message) must not fail because of extensions."""
        try:
            return self.extensions
        except KumixError:
            return None

    def close(self) -> None:
        for db in self._closers:
            db.close()
