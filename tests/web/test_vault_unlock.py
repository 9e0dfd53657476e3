"""A server restarted with a vault sealed by the page's passphrase and no passphrase file:
it starts locked, refuses everything but the page's few routes with `vault_locked`, refuses a
wrong passphrase without touching the vault, and with the right one starts the session and
serves the rooms. The passphrase appears in no answer, no log line and no argv."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from kumix.app.matrix_session import MatrixService
from kumix.store.database import Database
from tests.synapse_harness import SynapseHarness
from tests.web.test_serve_command import LINE, start_serve
from tests.web.web_harness import MatrixUser, WebServer

pytestmark = pytest.mark.synapse

PASSPHRASE = "the page's vault passphrase, typed once and never seen again"
ROOM_NAME = "kept behind the vault"


def wait_until(done: Callable[[], bool], what: str, rounds: int = 600) -> None:
    for _ in range(rounds):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def sealed_dir(synapse: SynapseHarness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory logged in as the page does it on a server with no key source: the
    vault sealed with argon2id of a passphrase nothing on disk holds."""
    user = synapse.user("webunlock")
    MatrixUser(synapse.url, user.user_id, user.password).create_room(name=ROOM_NAME)
    data_dir = tmp_path_factory.mktemp("sealed") / "data"
    data_dir.mkdir(mode=0o700)
    db = Database(data_dir / "state.db")
    service = MatrixService(data_dir, db, env={}, interactive=False)
    assert service.vault.needs_passphrase(), "this machine must offer no keyring for the test to mean anything"
    asyncio.run(service.login_password(synapse.url, user.user_id, user.password, vault_passphrase=PASSPHRASE))
    db.close()
    return data_dir


def copy_of(src: Path, dst: Path) -> Path:
    """Each test gets its own copy: unlocking takes the device and syncs into the state."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_a_locked_server_refuses_all_but_the_unlock_and_a_wrong_passphrase_changes_nothing(
        sealed_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = copy_of(sealed_dir, tmp_path / "data")
    vault = data_dir / "vault.json"
    sealed = vault.read_bytes()
    server = WebServer(data_dir, {}).start()  # no passphrase file, no terminal: locked
    try:
        with server.client() as c:
            assert c.get("/").status_code == 200
            who = c.get("/api/whoami").json()
            assert who["logged_in"] is True
            assert who["vault_locked"] is True
            for method, path in [("GET", "/api/rooms"), ("GET", "/api/settings"), ("GET", "/api/extensions"),
                                 ("GET", "/api/encryption"), ("POST", "/api/logout"), ("GET", "/api/search?q=x")]:
                r = c.request(method, path)
                assert r.status_code == 423, (path, r.text)
                assert r.json()["error"]["code"] == "vault_locked", path
            with pytest.raises(InvalidStatus):
                server.websocket(c).close()

            # Wrong: refused by name, the file byte for byte as it was, still locked.
            for wrong in ("not it", PASSPHRASE + " "):
                r = c.post("/api/vault/unlock", json={"passphrase": wrong})
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "wrong_passphrase"
            assert c.post("/api/vault/unlock", json={"passphrase": ""}).json()["error"]["code"] == "bad_request"
            assert vault.read_bytes() == sealed
            assert c.get("/api/whoami").json()["vault_locked"] is True
            assert c.get("/api/rooms").status_code == 423

            # Right: the session starts and the rooms are served.
            r = c.post("/api/vault/unlock", json={"passphrase": PASSPHRASE})
            assert r.status_code == 200, r.text
            assert r.json()["vault_locked"] is False
            assert r.json()["logged_in"] is True

            def room_served() -> bool:
                rooms = c.get("/api/rooms")
                assert rooms.status_code == 200, rooms.text
                return ROOM_NAME in [room["name"] for room in rooms.json()["rooms"]]

            wait_until(room_served, "the room after the unlock")
            with server.websocket(c) as ws:
                assert server.recv_json(ws)["type"] in {"hello", "heartbeat", "rooms", "event", "resync"}
            again = c.post("/api/vault/unlock", json={"passphrase": PASSPHRASE})
            assert again.status_code == 400
            assert again.json()["error"]["details"]["reason"] == "not_locked"
            assert vault.read_bytes() == sealed, "unlocking reads the vault, never rewrites it"
    finally:
        server.stop()
    assert PASSPHRASE.encode() not in server.capture.blob()
    assert "not it" not in caplog.text
    assert PASSPHRASE not in caplog.text


def test_kumix_serve_starts_locked_and_unlocks_in_the_page(sealed_dir: Path, tmp_path: Path) -> None:
    data_dir = copy_of(sealed_dir, tmp_path / "data")
    proc = start_serve(data_dir)  # the environment holds no KUMIX_* variable: no passphrase file
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = LINE.fullmatch(line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        assert PASSPHRASE not in " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0"))
        origin = f"http://127.0.0.1:{m.group(1)}"
        with httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60) as c:
            c.get("/", params={"token": m.group(2)})
            assert c.get("/api/whoami").json()["vault_locked"] is True
            assert c.post("/api/vault/unlock", json={"passphrase": "guess 7f3e"}).json()["error"]["code"] == \
                "wrong_passphrase"
            r = c.post("/api/vault/unlock", json={"passphrase": PASSPHRASE})
            assert r.status_code == 200, r.text
            wait_until(lambda: ROOM_NAME in [room["name"] for room in c.get("/api/rooms").json()["rooms"]],
                       "the room after the unlock")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "vault is locked" in err
    assert PASSPHRASE not in out + err
    assert "guess 7f3e" not in out + err
    assert os.stat(data_dir / "vault.json").st_mode & 0o077 == 0
