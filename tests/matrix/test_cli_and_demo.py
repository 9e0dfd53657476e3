"""The command line as a user runs it: login/whoami/rooms/send/search/logout, and `kumix demo`."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from tests.conftest import run_kumix
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.core.models import Event
from kumix.matrix.homeserver import free_port
from kumix.store.database import Database
from kumix.store.timeline import TimelineStore


def test_cli_session_from_login_to_logout(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "data")}
    r = run_kumix("login", "--homeserver", synapse.url, "--user", alice_user.localpart, "--password-stdin",
                  "--json", env=env, input=alice_user.password + "\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["user_id"] == alice_user.user_id
    assert alice_user.password not in r.stdout + r.stderr
    for f in (tmp_path / "data").rglob("*"):
        if f.is_file():
            assert f.stat().st_mode & 0o077 == 0, f

    assert json.loads(run_kumix("whoami", "--json", env=env).stdout)["user_id"] == alice_user.user_id
    room = json.loads(run_kumix("create-room", "--name", "CLI room", "--alias", "cli" + alice_user.localpart,
                                "--json", env=env).stdout)["room_id"]
    sent = run_kumix("send", f"#cli{alice_user.localpart}:localhost", "needle in **markdown**", "--json", env=env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["state"] == "sent"
    # The formatted body came from the bundled markdown-renderer, run confined under the
    # strict policy by the governed host, and sanitized on its way out.
    history = json.loads(run_kumix("history", room, "--json", env=env).stdout)
    mine = [e for e in history if e.get("body") == "needle in **markdown**"]
    assert len(mine) == 1
    assert mine[0]["html"] == "<p>needle in <strong>markdown</strong></p>"
    rooms = json.loads(run_kumix("rooms", "--json", env=env).stdout)
    assert {"room_id": room, "name": "CLI room", "encrypted": True} in [
        {k: r[k] for k in ("room_id", "name", "encrypted")} for r in rooms]
    hits = json.loads(run_kumix("search", "needle", "--json", env=env).stdout)
    assert [h["room_id"] for h in hits] == [room]

    assert run_kumix("send", room, env=env).returncode == 2  # usage: neither TEXT nor --file
    bad = run_kumix("join", "#nope:localhost", "--json", env=env)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "not_found"

    assert run_kumix("logout", env=env).returncode == 0
    gone = run_kumix("whoami", "--json", env=env)
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["error"]["code"] == "unauthorized"


def test_cli_refuses_to_run_without_a_vault_key(synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path) -> None:
    env = {"KUMIX_DATA_DIR": str(tmp_path / "data")}
    devices_before = _devices(synapse, alice_user)
    r = run_kumix("login", "--homeserver", synapse.url, "--user", alice_user.user_id, "--password-stdin", "--json",
                  env=env, input=alice_user.password + "\n")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["code"] == "unauthorized"
    assert "KUMIX_VAULT_PASSPHRASE_FILE" in r.stdout
    # The refused login left no device (with its live token and E2EE keys) on the server.
    assert _devices(synapse, alice_user) == devices_before


def _devices(synapse: SynapseHarness, user: TestUser) -> int:
    """How many devices the account has, not counting the one this call logs in with."""
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.localpart},
                       "password": user.password}).encode()
    login = urllib.request.Request(f"{synapse.url}/_matrix/client/v3/login", data=body, method="POST",
                                   headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(login, timeout=30) as resp:
        token = json.loads(resp.read())["access_token"]
    devices = urllib.request.Request(f"{synapse.url}/_matrix/client/v3/devices",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(devices, timeout=30) as resp:
        count = len(json.loads(resp.read())["devices"])
    logout = urllib.request.Request(f"{synapse.url}/_matrix/client/v3/logout", data=b"{}", method="POST",
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(logout, timeout=30).close()
    return count - 1


def test_cli_second_login_in_one_data_dir_is_a_bad_request_not_an_internal_error(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "data")}
    login = ("login", "--homeserver", synapse.url, "--user", alice_user.localpart, "--password-stdin", "--json")
    assert run_kumix(*login, env=env, input=alice_user.password + "\n").returncode == 0
    again = run_kumix(*login, env=env, input=alice_user.password + "\n")
    assert again.returncode == 1
    error = json.loads(again.stdout)["error"]
    assert error["code"] == "bad_request"
    assert "kumix logout" in error["message"]


def test_cli_without_a_terminal_names_the_stdin_option_instead_of_prompting(tmp_path: Path) -> None:
    """A script that forgot --password-stdin gets a bad_request naming it, not getpass's
    echo warning and an internal EOFError."""
    env = {"KUMIX_DATA_DIR": str(tmp_path / "data")}
    cases = [
        (("login", "--homeserver", "http://127.0.0.1:9", "--user", "alice"), "--password-stdin"),
        (("keys", "export", str(tmp_path / "keys.txt")), "--passphrase-stdin"),
        (("keys", "import", str(tmp_path / "keys.txt")), "--passphrase-stdin"),
    ]
    for args, option in cases:
        r = run_kumix(*args, "--json", env=env, input="")
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        error = json.loads(r.stdout)["error"]
        assert error["code"] == "bad_request", (args, error)
        assert option in error["message"]
        assert "Warning" not in r.stderr
        assert "Traceback" not in r.stderr


def test_cli_send_usage_error_is_json_on_stdout_with_json(tmp_path: Path) -> None:
    """Like every usage error: exit 2, argparse-style text on stderr and, with --json, a
    bad_request document on stdout."""
    env = {"KUMIX_DATA_DIR": str(tmp_path / "data")}
    for extra in ((), ("some text", "--file", str(tmp_path / "f"))):
        r = run_kumix("send", "!room:localhost", *extra, "--json", env=env, input="")
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert json.loads(r.stdout)["error"]["code"] == "bad_request"
        assert "kumix send: error: give either TEXT or --file PATH" in r.stderr


def test_cli_file_arguments_that_are_missing_or_directories_get_typed_errors(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    """send --file, keys export and keys import name the path and what is wrong with it
    (not_found / bad_request), never an internal FileNotFoundError or IsADirectoryError."""
    env = {**vault_env, "KUMIX_DATA_DIR": str(tmp_path / "data")}
    r = run_kumix("login", "--homeserver", synapse.url, "--user", alice_user.localpart, "--password-stdin",
                  env=env, input=alice_user.password + "\n")
    assert r.returncode == 0, r.stderr
    room = json.loads(run_kumix("create-room", "--unencrypted", "--json", env=env).stdout)["room_id"]
    missing, directory = tmp_path / "missing", tmp_path / "a-directory"
    directory.mkdir()
    cases = [
        (("send", room, "--file", str(missing)), "not_found"),
        (("send", room, "--file", str(directory)), "bad_request"),
        (("keys", "export", str(directory), "--passphrase-stdin"), "bad_request"),
        (("keys", "export", str(missing / "keys.txt"), "--passphrase-stdin"), "not_found"),
        (("keys", "import", str(missing), "--passphrase-stdin"), "not_found"),
        (("keys", "import", str(directory), "--passphrase-stdin"), "bad_request"),
    ]
    for args, code in cases:
        r = run_kumix(*args, "--json", env=env, input="key file passphrase\n")
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        error = json.loads(r.stdout)["error"]
        assert error["code"] == code, (args, error)
        assert str(tmp_path) in error["message"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["a-directory", "vault-passphrase"]


def test_demo_refuses_bad_arguments_and_unusable_data_before_starting_synapse(tmp_path: Path) -> None:
    """A port out of range is a usage error; a data dir that is a file, or demo state that
    is not JSON, is a typed error naming the path: never an internal error, never a
    Synapse traceback quoted back."""
    for port in ("99999", "-5", "http"):
        r = run_kumix("--data-dir", str(tmp_path / "d1"), "demo", "--port", port, "--json", input="")
        assert r.returncode == 2, (port, r.stderr)
        assert json.loads(r.stdout)["error"]["code"] == "bad_request"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    r = run_kumix("--data-dir", str(a_file), "demo", "--json", input="")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["code"] == "bad_request"
    seed = tmp_path / "d2" / "demo" / "seed.json"
    seed.parent.mkdir(parents=True)
    seed.write_text("{not json")
    r = run_kumix("--data-dir", str(tmp_path / "d2"), "demo", "--json", input="")
    assert r.returncode == 1
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "state_corrupt"
    assert str(seed) in error["message"]
    assert not (tmp_path / "d2" / "demo" / "homeserver").exists()


def test_cli_login_to_a_server_that_is_not_matrix_says_to_check_the_url(tmp_path: Path) -> None:
    """A web server without a Matrix API (a wrong port or path) answers with no Matrix error
    body: the message says so instead of nio's "unknown error"."""

    class NotMatrix(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMatrix)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        r = run_kumix("login", "--homeserver", url, "--user", "alice", "--password-stdin", "--json",
                      env={"KUMIX_DATA_DIR": str(tmp_path / "data")}, input="password\n")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert r.returncode == 1
    message = json.loads(r.stdout)["error"]["message"]
    assert "HTTP 404" in message
    assert "homeserver URL" in message


def _run_demo_until_the_bot_answers(data: Path, *, write_as_alice: str | None = None,
                                    port: int | None = None) -> tuple[str, str, int]:
    """Run `kumix demo` until the bot has answered (with `write_as_alice`: until it has
    answered that text, sent by `kumix send` from another process, as the demo tells users)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | {"KUMIX_DATA_DIR": str(data)}
    args = ["--port", str(port)] if port else []
    proc = subprocess.Popen([sys.executable, "-m", "kumix", "demo", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    handed_over = False
    # A demo that never answers must fail the test, not hang the suite: killed, its stdout
    # ends and the return code says so.
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "You said" not in line:
                continue
            if write_as_alice is None or (handed_over and write_as_alice in line):
                break
            if not handed_over:
                demo = data / "demo"
                room = json.loads((demo / "seed.json").read_text())["rooms"]["demo"]
                sent = run_kumix("send", room, write_as_alice, "--json", env={
                    "KUMIX_DATA_DIR": str(demo / "kumix-alice"),
                    "KUMIX_VAULT_PASSPHRASE_FILE": str(demo / "vault-passphrase")})
                assert sent.returncode == 0, sent.stderr
                assert json.loads(sent.stdout)["handed_to"]["pid"] == proc.pid
                handed_over = True
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(lines) + rest, err, proc.returncode


def _synapse_alive(data: Path) -> bool:
    pid_file = data / "demo" / "homeserver" / "homeserver.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def _alice_state(data: Path) -> tuple[str, list[Event]]:
    """Alice's device id and every event of the demo room her data directory holds."""
    demo = data / "demo"
    room = json.loads((demo / "seed.json").read_text())["rooms"]["demo"]
    with Database(demo / "kumix-alice" / "state.db") as db:
        timeline = TimelineStore(db)
        account = timeline.account()
        assert account is not None
        return account.device_id, timeline.events(room, limit=1000)


GREETING = "Hello bot, are you there?"
SEEDED = ("Welcome to **Kumix**", "Markdown works", "Type in another client")


def test_demo_runs_answers_stops_cleanly_and_reuses_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out, err, code = _run_demo_until_the_bot_answers(data)
    assert code == 0, err
    assert "Welcome to **Kumix**" in out
    # The bot answers what was written after it started, and only that: its first answer
    # is to the greeting, whatever the seeded messages' timing was.
    first_answer = next(line for line in out.splitlines() if "You said" in line)
    assert f"You said: *{GREETING}*" in first_answer, out
    assert "creating demo data" in err
    assert not _synapse_alive(data)
    device, _ = _alice_state(data)

    # At once, and on another port: the same homeserver at a new address. The stored
    # device is kept (pointed at the new address), so every earlier message stays readable.
    out, err, code = _run_demo_until_the_bot_answers(data, write_as_alice="written from another terminal",
                                                     port=free_port())
    assert code == 0, err
    assert "You said: *written from another terminal*" in out
    assert "to write as alice from another terminal" in err
    assert "reusing demo data" in err
    assert "seeding" not in err
    assert out.count("Welcome to **Kumix**") <= 1  # the seed was not repeated
    assert "unable to decrypt" not in out
    assert not _synapse_alive(data)

    again, events = _alice_state(data)
    assert again == device, "the rerun replaced alice's device (and lost its keys)"
    assert [e for e in events if e.kind == "undecryptable"] == []
    texts = [e.body for e in events if e.kind == "text"]
    for seeded in SEEDED:
        assert any(t.startswith(seeded) for t in texts), (seeded, texts)
    answers = sorted(t for t in texts if t.startswith("🤖 You said: "))
    assert answers == sorted([f"🤖 You said: *{GREETING}*", f"🤖 You said: *{GREETING}*",
                              "🤖 You said: *written from another terminal*"]), answers
