"""A real Synapse for the tests: one per session, on 127.0.0.1, SQLite, generated config.

The start/config/registration code is Kumix's own (`kumix.matrix.homeserver`, which
`kumix demo` uses too); this module only adds what tests need: unique users.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from pathlib import Path

from kumix.matrix.homeserver import Homeserver, HomeserverConfig, free_port

_counter = itertools.count()


@dataclass(frozen=True)
class TestUser:
    __test__ = False
    localpart: str
    user_id: str
    password: str


class SynapseHarness:
    def __init__(self, directory: Path) -> None:
        self.server = Homeserver(HomeserverConfig(directory, free_port()))

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def user(self, prefix: str = "user") -> TestUser:
        """A fresh account, registered through the shared-secret admin API."""
        localpart = f"{prefix}{next(_counter)}x{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        user_id = self.server.register(localpart, password)
        return TestUser(localpart, user_id, password)
