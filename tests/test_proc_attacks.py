"""Attacks on the proc host found by review, through the real host (`ExtensionCaller` →
`ProcHost` → fork server → confined worker) under the strict policy with confinement required,
and the sans-I/O protocol where the flaw lives there.

Fixtures: `tests/fixtures/attacks/` (`raider`: one method per attack; `forged-hello`: writes
its own hello at import; `theme-tracker`: token values that load resources), external,
granted and enabled like a user would, next to the confinement suite's bystander.

Each test attacks through the real host and asserts both the refusal seen inside the worker
and that the target (a sibling worker, a listening socket) was untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kumix.app.extension_calls import ExtensionCaller
from kumix.app.extensions import ExtensionService
from kumix.app.settings import Settings
from kumix.core.errors import KumixError, ProtocolError
from kumix.extensions.policy import load_policy
from kumix.extensions.proc.protocol import ChannelState, HostChannel, WorkerChannel, encode_frame, encode_params
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.conftest import REPO_ROOT, run_kumix

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

ATTACKS = Path(__file__).resolve().parent / "fixtures" / "attacks"
BYSTANDER = Path(__file__).resolve().parent / "fixtures" / "confinement" / "bystander"
EXTENSIONS = ("raider", "forged-hello", "theme-tracker", "claims-unconfined")
ESC = "\x1b"


def _policy_file(tmp_path: Path) -> Path:
    doc = json.loads((REPO_ROOT / "src/kumix/bundled/policies/strict.json").read_text())
    doc["name"] = "strict-attack-review"
    doc["capabilities"] = [*doc["capabilities"], "test.attack", "test.echo"]
    assert doc["proc"]["requireConfinement"] is True
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return path


class Kumix:
    """A data directory with the attack fixtures and the bystander granted and enabled."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "extensions"
        for ext in EXTENSIONS:
            shutil.copytree(ATTACKS / ext, self.root / ext)
        shutil.copytree(BYSTANDER, self.root / "bystander")
        self.policy = _policy_file(tmp_path)
        self.settings = Settings(data_dir=tmp_path / "data", policy=str(self.policy), extension_roots=(self.root,))
        self.settings.ensure_data_dir()
        self.db = Database(self.settings.state_db)
        self.service = ExtensionService(load_policy(str(self.policy)), ExtensionStateStore(self.db), (self.root,))
        for ext in (*EXTENSIONS, "bystander"):
            for cap in self.service.get(ext).manifest.capabilities:
                self.service.grant(ext, cap)
            self.service.enable(ext)

    def cli(self, *args: str) -> tuple[int, str, str]:
        out = run_kumix(
            "--data-dir",
            str(self.settings.data_dir),
            "--policy",
            str(self.policy),
            "--extensions-dir",
            str(self.root),
            *args,
        )
        return out.returncode, out.stdout, out.stderr


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[tuple[Kumix, ExtensionCaller]]:
    kumix = Kumix(tmp_path)
    async with ExtensionCaller(kumix.service, kumix.settings) as caller:
        yield kumix, caller
    kumix.db.close()


@pytest.fixture
def world_reachable_dir() -> Iterator[Path]:
    """A directory uid 65534 can traverse (pytest's tmp_path lives under a 0700 root), so a
    refusal cannot come from file permissions instead of the confinement."""
    path = Path(tempfile.mkdtemp(prefix="kumix-attack-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


async def raid(caller: ExtensionCaller, attack_name: str, **params: Any) -> dict[str, Any]:
    answer = await caller.call("raider", f"attack.{attack_name}", params)
    assert isinstance(answer, dict)
    # A neighbour keeps answering whatever the raider does.
    assert await caller.call("bystander", "echo.say", {"text": attack_name}) == {"said": attack_name}
    return answer


async def _confined(caller: ExtensionCaller) -> None:
    session = await caller.session("raider")
    await session.warm()
    assert session.current_pid is not None


# ---------------------------------------------------------------- F1: socketpair datagrams


async def test_socketpair_datagram_cannot_reach_a_pathname_socket(
    strict: tuple[Kumix, ExtensionCaller], world_reachable_dir: Path
) -> None:
    _kumix, caller = strict
    await _confined(caller)
    path = world_reachable_dir / "listener.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        path.chmod(0o666)  # like /dev/log or journald's socket
        answer = await raid(caller, "dgram_send", path=str(path))
        listener.setblocking(False)
        try:
            leaked: bytes | None = listener.recv(4096)
        except BlockingIOError:
            leaked = None
    assert leaked is None, f"a confined worker sent a datagram out of its box: {leaked!r}"
    assert answer["outcome"] == "blocked", answer


async def test_socketpair_cannot_squat_an_abstract_name(strict: tuple[Kumix, ExtensionCaller]) -> None:
    _kumix, caller = strict
    await _confined(caller)
    name = f"kumix-attack-{uuid.uuid4().hex}"
    answer = await raid(caller, "abstract_bind", name=name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mine:
        mine.bind(b"\0" + name.encode())  # EADDRINUSE while the worker holds the name
    assert answer["outcome"] == "blocked", answer


# ---------------------------------------------------------------- F2: sibling rlimits


def _open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " ".join(line.split()[3:5])
    raise AssertionError("no open files line")


async def test_worker_cannot_lower_a_sibling_workers_limits(strict: tuple[Kumix, ExtensionCaller]) -> None:
    _kumix, caller = strict
    await _confined(caller)
    assert await caller.call("bystander", "echo.say", {"text": "up"}) == {"said": "up"}
    victim = (await caller.session("bystander")).current_pid
    assert victim is not None
    before = _open_files_limit(victim)
    answer = await raid(caller, "sibling_limits", pid=victim)
    after = _open_files_limit(victim)
    assert (session_pid := (await caller.session("bystander")).current_pid) == victim, session_pid
    assert after == before, f"bystander's RLIMIT_NOFILE went from {before} to {after}"
    assert answer["outcome"] == "blocked", answer


async def test_worker_cannot_renice_or_pin_a_sibling_but_can_steer_itself(
    strict: tuple[Kumix, ExtensionCaller],
) -> None:
    _kumix, caller = strict
    await _confined(caller)
    assert await caller.call("bystander", "echo.say", {"text": "up"}) == {"said": "up"}
    victim = (await caller.session("bystander")).current_pid
    assert victim is not None
    nice_before = os.getpriority(os.PRIO_PROCESS, victim)
    cpus_before = os.sched_getaffinity(victim)
    answer = await raid(caller, "sibling_sched", pid=victim)
    assert answer == {"renice": "EPERM", "affinity": "EPERM", "self": "ok"}
    assert os.getpriority(os.PRIO_PROCESS, victim) == nice_before
    assert os.sched_getaffinity(victim) == cpus_before


async def test_only_stream_socketpairs_are_allowed(strict: tuple[Kumix, ExtensionCaller]) -> None:
    _kumix, caller = strict
    await _confined(caller)
    assert await raid(caller, "seqpacket_pair") == {"outcome": "blocked", "errno": "EPERM"}


# ---------------------------------------------------------------- F3: invalid UTF-8 frames


def _ready_host() -> HostChannel:
    host = HostChannel(max_input_bytes=1024, max_output_bytes=4096)
    worker = WorkerChannel(max_input_bytes=1024, max_output_bytes=4096)
    host.receive_data(worker.hello({"confined": True, "layers": {"seccomp": True}, "warning": None, "methods": []}))
    return host


@pytest.mark.parametrize("copies", [1, 2], ids=["one-frame", "two-frames-one-read"])
def test_invalid_utf8_in_a_reply_poisons_the_channel(copies: int) -> None:
    host = _ready_host()
    request_id, _ = host.send_request("m", encode_params({}, 1024), 100)
    body = b'{"id": %d, "result": "\xff"}' % request_id
    with pytest.raises(ProtocolError, match="malformed frame"):
        host.receive_data(encode_frame(body) * copies)
    assert host.state is ChannelState.ERROR


def test_invalid_utf8_in_a_request_is_a_protocol_error() -> None:
    worker = WorkerChannel(max_input_bytes=1024, max_output_bytes=4096)
    with pytest.raises(ProtocolError, match="malformed request"):
        worker.receive_data(encode_frame(b'{"id": 1, "method": "\xc0\x80", "params": {}}'))


async def test_invalid_utf8_frames_crash_the_worker_instead_of_wedging_the_call(
    strict: tuple[Kumix, ExtensionCaller],
) -> None:
    _kumix, caller = strict
    with pytest.raises(KumixError) as info:
        await caller.call("raider", "attack.bad_utf8_frames", {})
    # Before: the frame stayed in the reader's buffer, every read raised into the event loop,
    # and the call waited for its whole deadline (`timeout`).
    assert info.value.code == "crashed", info.value
    assert "broke the protocol" in info.value.message
    assert await caller.call("bystander", "echo.say", {"text": "still"}) == {"said": "still"}


# ---------------------------------------------------------------- F4: forged hello


def test_hello_text_with_control_characters_is_refused() -> None:
    host = HostChannel(max_input_bytes=1024, max_output_bytes=4096)
    body = {"id": 0, "result": {"ready": True, "confined": False, "warning": f"{ESC}[2J{ESC}]0;x\x07"}}
    with pytest.raises(ProtocolError, match="malformed hello") as info:
        host.receive_data(encode_frame(json.dumps(body).encode()))
    assert ESC not in info.value.message
    assert host.state is ChannelState.ERROR


def test_hello_with_unknown_keys_or_bad_types_is_refused() -> None:
    for result in (
        {"ready": True, "token": "x"},
        {"ready": True, "layers": {"seccomp": "yes"}},
        {"ready": True, "methods": ["m" * 500]},
    ):
        host = HostChannel(max_input_bytes=1024, max_output_bytes=4096)
        with pytest.raises(ProtocolError, match="malformed hello"):
            host.receive_data(encode_frame(json.dumps({"id": 0, "result": result}).encode()))


def test_protocol_error_messages_never_carry_control_characters() -> None:
    host = _ready_host()
    with pytest.raises(ProtocolError) as info:
        host.receive_data(encode_frame(json.dumps({"id": 1, f"{ESC}[2J": 1}).encode()))
    assert ESC not in info.value.message
    assert "\\x1b" in info.value.message


async def test_forged_hello_does_not_reach_the_terminal(strict: tuple[Kumix, ExtensionCaller]) -> None:
    kumix, _caller = strict
    code, stdout, stderr = kumix.cli("ext", "call", "forged-hello", "forged.noop", "--json")
    assert code == 1
    assert json.loads(stdout)["error"]["code"] == "crashed"
    assert ESC not in stderr, stderr
    assert ESC not in stdout, stdout
    # The lie ("runs without full confinement ... does not require it") is not repeated either.
    assert "owned-by-extension" not in stderr


# ---------------------------------------------------------------- F5: theme tokens


@pytest.mark.parametrize(
    "value",
    [
        "url(https://tracker.example/pixel)",
        "URL(//tracker.example/p)",
        "#fff image-set(https://tracker.example/a 1x)",
        "-webkit-image-set(https://t.example/a 1x)",
        "cross-fade(url(a), url(b))",
        "expression(alert(1))",
        "red /* swallow what follows",
        "red */",
    ],
)
async def test_theme_token_values_cannot_load_resources_or_open_comments(
    strict: tuple[Kumix, ExtensionCaller], value: str
) -> None:
    _kumix, caller = strict
    with pytest.raises(KumixError) as info:
        await caller.call("theme-tracker", "theme.tokens.provide", {"value": value})
    assert info.value.code == "protocol_error"


async def test_ordinary_theme_values_still_pass(strict: tuple[Kumix, ExtensionCaller]) -> None:
    _kumix, caller = strict
    for value in (
        "#ffffff",
        "rgb(1 2 3 / 50%)",
        "linear-gradient(90deg, #000, #fff)",
        '"Helvetica Neue", Arial, sans-serif',
        "calc(1rem + 2px)",
    ):
        result = await caller.call("theme-tracker", "theme.tokens.provide", {"value": value})
        assert result["light"]["bg"] == value


# ---------------------------------------------------------------- F6: nested html


async def test_html_below_the_top_level_is_sanitized(strict: tuple[Kumix, ExtensionCaller]) -> None:
    _kumix, caller = strict
    result = await caller.call("raider", "attack.nested_html", {})
    html = result["items"][0]["html"]
    assert html == "<b>ok</b>", html


# ---------------------------------------------------------------- a hello that admits no confinement


async def test_worker_claiming_to_be_unconfined_is_refused_under_a_requiring_policy(
    strict: tuple[Kumix, ExtensionCaller],
) -> None:
    _kumix, caller = strict
    with pytest.raises(KumixError) as info:
        await caller.call("claims-unconfined", "claims.noop", {})
    assert info.value.code == "confinement_unavailable"
    session = await caller.session("claims-unconfined")
    assert session.live_pids == []
    assert await caller.call("bystander", "echo.say", {"text": "still here"}) == {"said": "still here"}
