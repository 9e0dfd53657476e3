"""One process at a time uses an account's device; `kumix send` hands text to that process.

Two processes with one device would each keep their own Olm account and sessions and save
them over the other's (lost one-time keys, room keys one of them never learns): the session
lock refuses the second with `state_busy` naming the first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import run_kumix
from tests.matrix.conftest import make_service
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.matrix_session import MatrixService
from kumix.core.errors import StateBusy


async def test_a_second_user_of_the_device_is_refused_naming_the_first(
    alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    other = make_service(data_dir, vault_env, command="kumix other")
    try:
        async with alice.session():
            with pytest.raises(StateBusy) as busy:
                async with other.session():
                    pass
            assert busy.value.details["holder"] == {"pid": os.getpid(), "command": "kumix"}
            with pytest.raises(StateBusy):
                await other.logout()
            assert alice.timeline.account() is not None, "the refused logout forgot nothing"
        # Released when the holder's session ends.
        async with other.session() as s:
            assert s.account.user_id == alice.account().user_id
    finally:
        other.db.close()


def test_send_while_tail_holds_the_device_is_delivered_by_the_tail_process(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    env = {**vault_env, "KUMIX_DATA_DIR": str(data)}
    r = run_kumix("login", "--homeserver", synapse.url, "--user", alice_user.localpart, "--password-stdin",
                  env=env, input=alice_user.password + "\n")
    assert r.returncode == 0, r.stderr
    room = json.loads(run_kumix("create-room", "--name", "Lock", "--json", env=env).stdout)["room_id"]

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | env
    tail = subprocess.Popen([sys.executable, "-m", "kumix", "tail", room, "--json"], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(tail.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        lock = data / "matrix" / "session.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and f'"pid": {tail.pid}' in lock.read_text()):
            assert tail.poll() is None, tail.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "tail never took the device"
            time.sleep(0.1)

        sent = run_kumix("send", room, "handed **over**", "--json", env=env)
        assert sent.returncode == 0, sent.stderr
        doc = json.loads(sent.stdout)
        assert doc["state"] == "sent"
        assert doc["handed_to"]["pid"] == tail.pid
        assert "kumix tail" in sent.stderr

        # The holder encrypted it with its own keys, so it reads it back as plain text.
        deadline = time.monotonic() + 30
        while not any(json.loads(line).get("event_id") == doc["event_id"] for line in list(lines)):
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)
        shown = next(json.loads(line) for line in list(lines) if json.loads(line).get("event_id") == doc["event_id"])
        assert shown["body"] == "handed **over**"
        assert shown["kind"] == "text"
        assert shown["html"] == "<p>handed <strong>over</strong></p>"

        # What needs the device's keys is refused, naming the holder; reads use local state.
        export = run_kumix("keys", "export", str(tmp_path / "keys.txt"), "--passphrase-stdin", "--json",
                           env=env, input="pass phrase\n")
        assert export.returncode == 1
        error = json.loads(export.stdout)["error"]
        assert error["code"] == "state_busy"
        assert "kumix tail" in error["message"]
        assert not (tmp_path / "keys.txt").exists()
        rooms = run_kumix("rooms", "--json", env=env)
        assert rooms.returncode == 0
        assert room in [r["room_id"] for r in json.loads(rooms.stdout)]
        assert json.loads(run_kumix("whoami", "--json", env=env).stdout)["user_id"] == alice_user.user_id
    finally:
        # SIGKILL: the kernel drops the lock with its holder, so none is left stale.
        tail.send_signal(signal.SIGKILL)
        tail.wait(timeout=30)
        reader.join(timeout=10)

    direct = run_kumix("send", room, "after the holder died", "--json", env=env)
    assert direct.returncode == 0, direct.stderr
    doc = json.loads(direct.stdout)
    assert doc["state"] == "sent"
    assert "handed_to" not in doc
