"""Shared fixtures. Every test gets its own data directory; nothing touches the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.synapse_harness import SynapseHarness

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("KUMIX_DATA_DIR", "KUMIX_POLICY", "KUMIX_EXTENSIONS_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def run_kumix(*args: str, env: dict[str, str] | None = None, input: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kumix", *args],
        capture_output=True, text=True, env=full_env, input=input, timeout=timeout, check=False,
    )


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseHarness]:
    """The session's one real Synapse (shared by the Matrix and the web tests)."""
    from tests.synapse_harness import SynapseHarness

    harness = SynapseHarness(tmp_path_factory.mktemp("synapse"))
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()
