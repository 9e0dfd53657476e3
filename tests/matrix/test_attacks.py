"""Attacks on the Matrix client core from outside: a hostile room member, a hostile or
non-Matrix homeserver, bad command-line input, a tampered vault, and a search for the
account's secrets everywhere an extension or a log could see them.

Hostile events are sent by a second user through Synapse's client-server API with plain
HTTP, exactly as any other client could send them."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import run_kumix
from tests.matrix.conftest import make_service
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.markdown import renderer_for
from kumix.app.matrix_session import MatrixService
from kumix.app.settings import Settings
from kumix.core.models import Event
from kumix.extensions.policy import load_policy
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.search import SearchIndex
from kumix.store.timeline import TimelineStore
from kumix.store.vault import Vault, VaultCorrupt

# -- a plain HTTP client for the hostile peer ---------------------------------------------------


def _http(url: str, method: str, path: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),  # noqa: S310
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        return {"http_status": exc.code, "error": exc.read().decode(errors="replace")}


class RawPeer:
    """Another user, speaking the client-server API directly: nothing checks what it sends."""

    def __init__(self, synapse: SynapseHarness, user: TestUser) -> None:
        self.url = synapse.url
        self.user = user
        doc = _http(self.url, "POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password})
        self.token = str(doc["access_token"])

    def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/{event_type}/{secrets.token_hex(8)}"
        return _http(self.url, "PUT", path, content, self.token)

    def join(self, room_id: str) -> None:
        doc = _http(self.url, "POST", f"/_matrix/client/v3/join/{urllib.parse.quote(room_id)}", {}, self.token)
        assert "room_id" in doc, doc

    def create_room(self, **body: Any) -> str:
        doc = _http(self.url, "POST", "/_matrix/client/v3/createRoom", body, self.token)
        assert "room_id" in doc, doc
        return str(doc["room_id"])


def _cli_env(data_dir: Path, vault_env: dict[str, str]) -> dict[str, str]:
    return {**vault_env, "KUMIX_DATA_DIR": str(data_dir)}


TERMINAL_CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))] + [
    "\u202e", "\u2066", "\u200f"]


def _assert_terminal_safe(text: str) -> None:
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if ch in TERMINAL_CONTROLS})
    assert not bad, f"terminal control characters reach the output: {bad}"


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"


# -- hostile peer ---------------------------------------------------------------------------------


async def test_hostile_relation_ids_do_not_poison_sync(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser
) -> None:
    """A relation id of the wrong JSON type (Synapse accepts it: it is just not a relation)
    must not make every later sync of every member fail."""
    peer = RawPeer(synapse, bob)
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="hostile", encrypted=False, invite=(bob.user_id,))
        peer.join(room_id)
        hostile = [
            {"msgtype": "m.text", "body": "edit with a list id", "m.new_content": {"msgtype": "m.text", "body": "x"},
             "m.relates_to": {"rel_type": "m.replace", "event_id": ["not", "an", "id"]}},
            {"msgtype": "m.text", "body": "reply with an object id",
             "m.relates_to": {"m.in_reply_to": {"event_id": {"a": 1}}}},
            {"msgtype": "m.text", "body": "reply with a number id", "m.relates_to": {"m.in_reply_to": {"event_id": 7}}},
            {"msgtype": "m.text", "body": "int formatted body", "format": "org.matrix.custom.html",
             "formatted_body": 5},
            {"msgtype": "m.file", "body": "file", "url": ["x"], "info": {"size": "big", "mimetype": 3}},
            {"msgtype": "m.text", "body": "deep", "x": _nested(120)},
            {"msgtype": "m.text", "body": "B" * 60_000},
        ]
        for content in hostile:
            assert "event_id" in peer.send(room_id, "m.room.message", content)
        assert "event_id" in peer.send(room_id, "m.room.message", {"msgtype": "m.text", "body": "after the junk"})
        await s.sync()
        assert alice.timeline.count_events(room_id, "after the junk") == 1
        reply = [e for e in alice.timeline.events(room_id, limit=100) if e.body == "reply with an object id"]
        assert len(reply) == 1
        assert reply[0].reply_to is None


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    cur = doc
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return doc


async def test_terminal_escapes_from_peers_never_reach_the_terminal(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser, data_dir: Path, vault_env: dict[str, str]
) -> None:
    """Room names, display names, bodies and relation ids are all chosen by other people."""
    peer = RawPeer(synapse, bob)
    room_id = peer.create_room(name=f"room{ESCAPES}", topic=f"topic{ESCAPES}", preset="public_chat",
                               invite=[alice.account().user_id])
    assert "event_id" in peer.send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"body{ESCAPES}"})
    # Synapse does not check what a redaction points at when the target is unknown.
    assert "event_id" in peer.send(room_id, "m.room.redaction", {"redacts": f"${ESCAPES}"})
    assert "event_id" in peer.send(room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": f"line one\r\nline two{ESCAPES}\nline three"})
    assert "event_id" in peer.send(room_id, "m.room.message", {"msgtype": "m.text", "body": "end marker"})
    env = _cli_env(data_dir, vault_env)
    assert run_kumix("join", room_id, env=env).returncode == 0
    outputs = [run_kumix(*args, env=env) for args in (
        ("history", room_id), ("history", room_id, "--json"), ("rooms",), ("rooms", "--json"),
        ("search", "body"), ("search", "body", "--json"))]
    for r in outputs:
        assert r.returncode == 0, r.stderr
        _assert_terminal_safe(r.stdout)
        _assert_terminal_safe(r.stderr)
    assert "end marker" in outputs[0].stdout
    # Line breaks stay line breaks (continuations indented); every other control is replaced.
    assert ": line one\n    line two" in outputs[0].stdout
    assert "\n    line three" in outputs[0].stdout
    # `tail --json` prints live events one JSON document a line.
    proc = subprocess.Popen([sys.executable, "-m", "kumix", "tail", room_id, "--json", "--history", "20"],
                            env={k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "end marker" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_terminal_safe("".join(lines) + rest + err)
    assert any(json.loads(line)["body"] == f"body{ESCAPES}" for line in lines)


async def test_forged_edit_and_foreign_redaction_change_nothing(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser
) -> None:
    peer = RawPeer(synapse, bob)
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="forgery", encrypted=False, invite=(bob.user_id,))
        peer.join(room_id)
        entry = await s.send_text(room_id, "the original words", markdown=False)
        assert entry.event_id
        forged = peer.send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": "* forged", "m.new_content": {"msgtype": "m.text", "body": "forged words"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": entry.event_id}})
        assert "event_id" in forged
        # The homeserver refuses a redaction of another user's event by someone without power.
        refused = peer.send(room_id, "m.room.redaction", {"redacts": entry.event_id})
        assert refused.get("http_status") == 403, refused
        await s.sync()
        original = alice.timeline.event(entry.event_id)
        assert original is not None
        assert original.body == "the original words"
        assert [h.event_id for h in s.search("forged words")] == []
        assert [h.event_id for h in s.search("original")] == [entry.event_id]


def test_relations_from_another_room_change_nothing(data_dir: Path) -> None:
    """Synapse refuses cross-room edits and redactions it can see, but not the relation
    inside an encrypted payload, and a hostile homeserver refuses nothing: the store checks."""
    db = Database(data_dir / "state.db")
    try:
        timeline, search = TimelineStore(db), SearchIndex(db)
        original = Event(event_id="$orig", room_id="!a", sender="@m:x", origin_ts=1, kind="text", body="kept words")
        edit = Event(event_id="$edit", room_id="!b", sender="@m:x", origin_ts=2, kind="edit", body="changed",
                     relates_to="$orig")
        redaction = Event(event_id="$red", room_id="!b", sender="@m:x", origin_ts=3, kind="redaction",
                          relates_to="$orig")
        for batch in ([original], [edit], [redaction]):
            with db.transaction() as tx:
                SearchIndex.index(tx, TimelineStore.put_events(tx, batch))
        kept = timeline.event("$orig")
        assert kept is not None
        assert kept.body == "kept words"
        assert [h.event_id for h in search.search("kept")] == ["$orig"]
        assert search.search("changed") == []
    finally:
        db.close()


async def test_formatted_body_attacks_are_sanitized_on_arrival(
    synapse: SynapseHarness, alice: MatrixService, bob: TestUser
) -> None:
    peer = RawPeer(synapse, bob)
    attacks = (
        '<a href="javascript:alert(1)">j</a><a href=" JaVaScRiPt:alert(1)">k</a>'
        '<a href="java&#09;script:alert(1)">t</a><a href="&#106;avascript:alert(1)">e</a>'
        '<a href="data:text/html,<script>alert(1)</script>">d</a><a href="vbscript:x">v</a>'
        '<img src=x onerror=alert(1)><svg onload=alert(1)><script>alert(1)</script></svg>'
        '<math><mi xlink:href="javascript:alert(1)">m</mi></math>'
        '<form action="https://evil.example"><input name=a><button formaction="javascript:1">b</button></form>'
        '<p style="background:url(https://evil.example/pixel)" onclick="alert(1)">s</p>'
        '<table><tr><td style="text-align:left;background:url(https://evil.example)">c</td></tr></table>'
        '<iframe srcdoc="<script>alert(1)</script>"></iframe><object data=x></object><embed src=x>'
        '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example">'
        '<link rel=stylesheet href="https://evil.example/x.css"><style>body{display:none}</style>'
        '<details open ontoggle=alert(1)>x</details><a href="https://ok.example" target="_blank">ok</a>'
        '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>'
    )
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="html", encrypted=False, invite=(bob.user_id,))
        peer.join(room_id)
        sent = peer.send(room_id, "m.room.message", {"msgtype": "m.text", "body": "html",
                                                       "format": "org.matrix.custom.html", "formatted_body": attacks})
        await s.sync()
        ev = alice.timeline.event(str(sent["event_id"]))
        assert ev is not None
        assert ev.formatted_html is not None
        html = ev.formatted_html.lower()
        for needle in ("javascript", "vbscript", "data:", "<img", "<svg", "<math", "<form", "<input", "<button",
                       "onerror", "onload", "onclick", "ontoggle", "background", "<iframe", "<object", "<embed",
                       "<base", "<meta", "<link", "<style", "<script", "target=", "evil.example"):
            assert needle not in html, (needle, ev.formatted_html)
        assert 'href="https://ok.example"' in html


async def test_search_input_is_never_fts_syntax(alice: MatrixService) -> None:
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="fts", encrypted=False)
        await s.send_text(room_id, "alpha beta gamma", markdown=False)
        await s.sync()
        for query in ('NEAR(alpha beta)', 'alpha OR zzz', '"alpha', "alpha*", "body:alpha", "^alpha", "alpha -beta",
                      "(", ")", '"', "*", "-", "\x00alpha", "a" * 5000, "alpha AND NOT beta", "{body}: alpha"):
            s.search(query)  # never raises an FTS5 syntax error
        assert len(s.search("alpha beta")) == 1
        assert s.search("alpha OR zzz") == []  # OR is a word here, not an operator


# -- outbox ---------------------------------------------------------------------------------------


async def test_a_message_to_an_unknown_room_does_not_block_the_outbox(
    synapse: SynapseHarness, alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    """A typo in a room id is a permanent failure; treating it as "not synced yet" kept it
    pending forever, and every later message waited behind it."""
    env = _cli_env(data_dir, vault_env)
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="outbox", encrypted=False)
    bogus = run_kumix("send", "!doesnotexist:localhost", "lost", "--plain", "--json", env=env)
    assert bogus.returncode == 1, bogus.stdout + bogus.stderr
    error = json.loads(bogus.stdout)["error"]  # a failure has the shape of every error
    assert error["code"] == "not_found"
    assert error["details"]["outbox"]["state"] == "failed"
    good = run_kumix("send", room_id, "delivered", "--plain", "--json", env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["state"] == "sent"
    assert alice.outbox.open_entries() == []


# -- command line ---------------------------------------------------------------------------------


class _NotMatrix(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = b"<html>\x1b[2J not a homeserver</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def not_matrix_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMatrix)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _assert_error(r: subprocess.CompletedProcess[str], code: str | None = None) -> dict[str, Any]:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    assert set(doc) == {"error"}, doc
    assert {"code", "message"} <= set(doc["error"]), doc
    if code is not None:
        assert doc["error"]["code"] == code, doc
    return doc


def test_login_rejects_bad_homeserver_urls_without_storing_them(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str],
    not_matrix_server: str,
) -> None:
    env = _cli_env(tmp_path / "data", vault_env)
    port = synapse.url.rsplit(":", 1)[1]
    secret_in_url = "hunter2secret"
    for url in (f"http://someone:{secret_in_url}@127.0.0.1:{port}", "ftp://127.0.0.1/", "not a url",
                f"http://127.0.0.1:{port}/?access_token=x", "javascript:alert(1)", "http://"):
        r = run_kumix("login", "--homeserver", url, "--user", alice_user.user_id, "--password-stdin", "--json",
                      env=env, input=alice_user.password + "\n")
        doc = _assert_error(r, "bad_request")
        assert secret_in_url not in json.dumps(doc) + r.stderr
    for url in ("http://127.0.0.1:1", not_matrix_server, not_matrix_server + "/some/path"):
        r = run_kumix("login", "--homeserver", url, "--user", alice_user.user_id, "--password-stdin", "--json",
                      env=env, input=alice_user.password + "\n")
        _assert_error(r)
        _assert_terminal_safe(r.stdout + r.stderr)
    for f in (tmp_path / "data").rglob("*"):
        if f.is_file():
            assert secret_in_url.encode() not in f.read_bytes(), f
    # A trailing slash is just a way to write the same homeserver.
    r = run_kumix("login", "--homeserver", synapse.url + "/", "--user", alice_user.user_id, "--password-stdin",
                  "--json", env=env, input=alice_user.password + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_kumix("whoami", env=env).returncode == 0


async def test_bad_limits_and_room_names_are_usage_or_typed_errors(
    alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    env = _cli_env(data_dir, vault_env)
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="limits", encrypted=False)
    for args in (("history", room_id, "--limit", "-1"), ("history", room_id, "--limit", str(10**30)),
                 ("search", "x", "--limit", "-5"), ("search", "x", "--limit", str(10**30)),
                 ("history", room_id, "--limit", "abc"), ("tail", room_id, "--history", str(10**30))):
        r = run_kumix(*args, "--json", env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
    for room in ("garbage", "!", "#", "#no-such-alias:localhost", "!nope:localhost", "#\x1b[2J:localhost"):
        r = run_kumix("history", room, "--json", env=env)
        _assert_error(r)
        _assert_terminal_safe(r.stdout)
        r = run_kumix("search", "x", "--room", room, "--json", env=env)
        _assert_error(r)
        _assert_terminal_safe(r.stdout)
        r = run_kumix("history", room, env=env)
        assert r.returncode == 1
        assert "Traceback" not in r.stderr
        _assert_terminal_safe(r.stderr)


# -- vault ----------------------------------------------------------------------------------------


def _tamper(path: Path, **changes: Any) -> None:
    doc = json.loads(path.read_bytes())
    for key, value in changes.items():
        if key in ("t", "m", "p", "salt"):
            doc["kdf"][key] = value
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


def test_a_tampered_vault_is_reported_as_corrupt_never_as_a_crash(tmp_path: Path, vault_env: dict[str, str]) -> None:
    path = tmp_path / "vault.json"
    Vault(path, vault_env, interactive=False).create({"access_token": "tok", "pickle_key": "pk"})
    pristine = path.read_bytes()
    assert Vault(path, vault_env, interactive=False).load() == {"access_token": "tok", "pickle_key": "pk"}
    short = base64.b64encode(b"x").decode()
    for changes in ({"m": 1}, {"t": True}, {"p": 0}, {"salt": short}, {"salt": ""}, {"nonce": short},
                    {"nonce": ""}, {"ciphertext": ""}, {"m": 2**40}, {"mode": "keyring", "keyring": "x"}):
        path.write_bytes(pristine)
        _tamper(path, **changes)
        with pytest.raises((VaultCorrupt,)):
            Vault(path, vault_env, interactive=False).load()
    for data in (pristine[: len(pristine) // 2], b"", b"\xff\xfe", b"[]", b"null"):
        path.write_bytes(data)
        with pytest.raises(VaultCorrupt):
            Vault(path, vault_env, interactive=False).load()


# -- secrets --------------------------------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def test_secrets_reach_no_file_log_argv_or_worker_environment(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, passphrase_file: Path,
    vault_env: dict[str, str],
) -> None:
    """A real login, a markdown send through the confined markdown-renderer, then a search
    for the token, the pickle key, the password and the vault passphrase in every file of
    the data directory (logs included) and in the argv and environment of every process
    Kumix started (the fork server and its workers)."""
    data = tmp_path / "data"
    env = _cli_env(data, vault_env)
    r = run_kumix("login", "--homeserver", synapse.url, "--user", alice_user.user_id, "--password-stdin",
                  env=env, input=alice_user.password + "\n")
    assert r.returncode == 0, r.stderr
    room = json.loads(run_kumix("create-room", "--name", "secrets", "--json", env=env).stdout)["room_id"]
    sent = run_kumix("send", room, "some **markdown**", "--json", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert json.loads(sent.stdout)["state"] == "sent"
    bad = run_kumix("send", "garbage", "x", "--json", env=env)
    assert bad.returncode == 1

    service = make_service(data, vault_env)
    settings = Settings.resolve(data_dir=str(data), policy="strict", extension_roots=())
    extensions = ExtensionService(load_policy(settings.policy), ExtensionStateStore(service.db),
                                  settings.extension_roots)
    vault = service.vault.load()
    needles = {
        "access token": vault["access_token"].encode(),
        "pickle key": vault["pickle_key"].encode(),
        "password": alice_user.password.encode(),
        "vault passphrase": passphrase_file.read_bytes().strip(),
    }
    seen: list[int] = []
    try:
        async with service.session() as s, ExtensionCaller(extensions, settings) as caller:
            s.service.renderer = renderer_for(caller)
            entry = await s.send_text(room, "rendered *while* the worker is watched")
            assert entry.state == "sent"
            assert (await s.render("**still running**")) is not None
            for pid in _descendants(os.getpid()):
                if pid == synapse.server.pid or pid in _descendants(synapse.server.pid or 0):
                    continue
                seen.append(pid)
                for what in ("environ", "cmdline"):
                    try:
                        blob = (Path("/proc") / str(pid) / what).read_bytes()
                    except (PermissionError, FileNotFoundError, ProcessLookupError):
                        continue  # a non-dumpable worker hides it from everyone: fine
                    for name, needle in needles.items():
                        assert needle not in blob, f"{name} in /proc/{pid}/{what}"
    finally:
        service.db.close()
    assert len(seen) >= 2, "expected the fork server and at least one worker"
    assert (data / "logs").is_dir()
    for f in data.rglob("*"):
        if f.is_file():
            content = f.read_bytes()
            for name, needle in needles.items():
                assert needle not in content, f"{name} in {f}"
    for out in (r, sent, bad):
        for name, needle in needles.items():
            assert needle.decode() not in out.stdout + out.stderr, name
    # Modes: every file private, every directory closed to others.
    for f in [data, *data.rglob("*")]:
        mode = f.stat().st_mode & 0o777
        if f.is_dir():
            assert mode & 0o077 == 0, f"{f} is {oct(mode)}"
        else:
            assert mode & 0o077 == 0, f"{f} is {oct(mode)}"
