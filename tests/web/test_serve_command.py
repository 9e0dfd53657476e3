"""`kumix serve` as a user runs it: the one printed line, the 0600 URL file, `--open`
without the token in any argv, a port in use, the device lock, and a clean stop on SIGINT
and SIGTERM with no process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kumix.app.matrix_session import MatrixService
from kumix.store.database import Database
from tests.conftest import run_kumix
from tests.synapse_harness import SynapseHarness

LINE = re.compile(r"Kumix is at http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{43})\n")


def start_serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "kumix", "--data-dir", str(data_dir), "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                            start_new_session=True)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc: children of children too)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def serving(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    proc = start_serve(data_dir)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = LINE.fullmatch(line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield proc, int(m.group(1)), m.group(2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_one_line_writes_the_url_file_and_stops_cleanly(
        serving: tuple[subprocess.Popen[str], int, str], data_dir: Path, sig: signal.Signals) -> None:
    proc, port, token = serving
    url_file = data_dir / "serve-url.html"
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert f"http://127.0.0.1:{port}/?token={token}" in url_file.read_text()
    assert token not in " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert c.get("/").status_code == 401
        assert c.get("/", params={"token": token}).status_code == 303
        assert c.get("/api/whoami").json()["logged_in"] is False
    below = descendants(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the one line
    assert "Traceback" not in err
    assert not url_file.exists()
    assert [p for p in below if alive(p)] == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_each_launch_has_a_new_token(serving: tuple[subprocess.Popen[str], int, str], data_dir: Path,
                                     tmp_path: Path) -> None:
    _, _, first = serving
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    proc = start_serve(other)
    try:
        assert proc.stdout is not None
        m = LINE.fullmatch(proc.stdout.readline())
        assert m
        assert m.group(2) != first
    finally:
        proc.terminate()
        proc.wait(60)


def test_port_in_use_is_a_clear_bad_request(serving: tuple[subprocess.Popen[str], int, str], tmp_path: Path) -> None:
    _, port, _ = serving
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    r = run_kumix("--data-dir", str(other), "serve", "--port", str(port), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["error"]["code"] == "bad_request"
    assert f"port {port}" in doc["error"]["message"]
    assert "Kumix is at" not in r.stdout


def test_open_hands_the_browser_a_file_not_the_token(data_dir: Path, tmp_path: Path) -> None:
    argv_log = tmp_path / "browser-argv"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_log}\n')
    browser.chmod(0o755)
    proc = start_serve(data_dir, "--open", env={"BROWSER": str(browser)})
    try:
        assert proc.stdout is not None
        m = LINE.fullmatch(proc.stdout.readline())
        assert m
        for _ in range(200):
            if argv_log.exists() and argv_log.read_text():
                break
            time.sleep(0.05)
        argv = argv_log.read_text()
        assert argv.strip() == (data_dir / "serve-url.html").as_uri()
        assert m.group(2) not in argv
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.synapse
def test_serve_holds_the_device(synapse: SynapseHarness, data_dir: Path, tmp_path: Path) -> None:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("serve test passphrase\n")
    passphrase_file.chmod(0o600)
    env = {"KUMIX_VAULT_PASSPHRASE_FILE": str(passphrase_file)}
    user = synapse.user("serve")
    db = Database(data_dir / "state.db")
    asyncio.run(MatrixService(data_dir, db, env=env, interactive=False).login_password(
        synapse.url, user.user_id, user.password))
    db.close()
    proc = start_serve(data_dir, env=env)
    try:
        assert proc.stdout is not None
        m = LINE.fullmatch(proc.stdout.readline())
        assert m
        second = run_kumix("--data-dir", str(data_dir), "serve", "--json", env=env)
        assert second.returncode == 1
        assert json.loads(second.stdout)["error"]["code"] == "state_busy"
        assert "kumix serve" in second.stdout
        # A markdown message starts the markdown extension's worker: it too must end with the server.
        origin = f"http://127.0.0.1:{m.group(1)}"
        with httpx.Client(base_url=origin, headers={"origin": origin}, timeout=60) as c:
            c.get("/", params={"token": m.group(2)})
            room_id = c.post("/api/rooms", json={"name": "md", "encrypted": False}).json()["room_id"]
            sent = c.post(f"/api/rooms/{room_id}/messages", json={"text": "some *markdown*"})
            assert sent.json()["state"] == "sent", sent.text
        below = descendants(proc.pid)
        assert below, "the markdown worker process"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert [p for p in below if alive(p)] == []
