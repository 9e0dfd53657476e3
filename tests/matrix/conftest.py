"""Fixtures of the Matrix tests: the session's Synapse, users, vault keys, Kumix services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.keyring_session import KeyringSession
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.matrix_session import MatrixService
from kumix.store.database import Database


@pytest.fixture(scope="module")
def keyring_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyringSession]:
    """A real Secret Service (gnome-keyring-daemon) on a private D-Bus session bus."""
    session = KeyringSession(tmp_path_factory.mktemp("keyring-session"))
    session.start()
    try:
        yield session
    finally:
        session.stop()  # asserts that no process of the session is left


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"correct horse battery staple\n")
    os.close(fd)
    return path


@pytest.fixture
def vault_env(passphrase_file: Path) -> dict[str, str]:
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(passphrase_file)}


def make_service(data_dir: Path, env: dict[str, str], **kwargs: object) -> MatrixService:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(data_dir / "state.db")
    return MatrixService(data_dir, db, env=env, interactive=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def alice_user(synapse: SynapseHarness) -> TestUser:
    return synapse.user("alice")


@pytest.fixture
async def alice(
    synapse: SynapseHarness, alice_user: TestUser, data_dir: Path, vault_env: dict[str, str]
) -> AsyncIterator[MatrixService]:
    """A logged-in Kumix account with its own data directory."""
    user = alice_user
    service = make_service(data_dir, vault_env)
    await service.login_password(synapse.url, user.user_id, user.password)
    try:
        yield service
    finally:
        service.db.close()


@pytest.fixture
def bob(synapse: SynapseHarness) -> TestUser:
    return synapse.user("bob")
