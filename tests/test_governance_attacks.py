"""Attacks on the governance core from outside: hostile directory layouts, documents and
names, checked through discovery, the state store and the real command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kumix.app.extensions import validate_extension_dir
from kumix.core.errors import InvalidManifest, InvalidPolicy
from kumix.extensions.jsondoc import load_schema
from kumix.extensions.manifest import parse_manifest
from kumix.extensions.policy import parse_policy
from kumix.extensions.registry import discover
from kumix.store.database import Database, Migrations
from kumix.store.extension_state import MIGRATIONS, ExtensionStateStore
from tests.conftest import run_kumix
from tests.governance_fixtures import make_extension, proc_manifest


def by_id(records: list[Any], ext_id: str) -> Any:
    matches = [r for r in records if r.id == ext_id]
    assert len(matches) == 1, [r.id for r in records]
    return matches[0]


def list_json(data_dir: Path, *roots: Path, policy: str = "strict",
              env: dict[str, str] | None = None) -> dict[str, Any]:
    args = ["--data-dir", str(data_dir), "--policy", policy]
    for root in roots:
        args += ["--extensions-dir", str(root)]
    result = run_kumix(*args, "ext", "list", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def state_of(doc: dict[str, Any], ext_id: str) -> str:
    states = [e["state"] for e in doc["extensions"] if e["id"] == ext_id]
    assert len(states) == 1, doc
    return str(states[0])


# --- hostile directory layouts -------------------------------------------------------------


def test_looping_symlink_inside_one_extension_does_not_break_discovery(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    loopy = make_extension(root, "loopy")
    os.symlink("loop", loopy / "loop")  # a link to itself: resolving it loops
    os.symlink("b", loopy / "a")
    os.symlink("a", loopy / "b")
    make_extension(root, "good")

    records = discover([root])
    assert "loops" in by_id(records, "loopy").problem.reason
    assert by_id(records, "good").valid

    doc = list_json(data_dir, root, policy="dev")
    assert state_of(doc, "loopy") == "invalid"
    assert state_of(doc, "good") == "denied"  # external, nothing granted yet
    assert state_of(doc, "markdown-renderer") == "enabled"


def test_very_deep_directory_tree_inside_an_extension_does_not_break_discovery(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    deep = make_extension(root, "deep")
    levels = [deep]
    for _ in range(1_100):  # deeper than Python's recursion limit, shorter than PATH_MAX
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    try:
        make_extension(root, "good")
        records = discover([root])
        assert by_id(records, "good").valid
        assert by_id(records, "deep").valid  # nothing in it escapes; it only must not crash
    finally:
        # pytest's own clean-up (shutil.rmtree) recurses per level too: remove bottom-up.
        for level in reversed(levels[1:]):
            level.rmdir()


def test_deep_tree_still_finds_an_escaping_symlink_at_the_bottom(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    deep = make_extension(root, "deep")
    path = deep
    for _ in range(300):
        path = path / "d"
        path.mkdir()
    os.symlink("/etc", path / "out")
    record = by_id(discover([root]), "deep")
    assert not record.valid
    assert "leaves the extension directory" in record.problem.reason


# --- enablement bound to a directory -------------------------------------------------------


def test_enable_does_not_follow_the_id_to_a_different_directory(data_dir: Path, tmp_path: Path) -> None:
    """An external extension needing no capability has nothing to grant, so the user's
    `enable` is the only consent it gets; another directory claiming the id must not
    inherit it (grants are bound the same way)."""
    trusted = tmp_path / "trusted"
    other = tmp_path / "other"
    empty = proc_manifest("quiet", capabilities=[], methods={})
    make_extension(trusted, "quiet", empty)
    make_extension(other, "quiet", empty)
    base = ["--data-dir", str(data_dir)]
    result = run_kumix(*base, "--extensions-dir", str(trusted), "ext", "enable", "quiet")
    assert result.returncode == 0, result.stderr
    assert state_of(list_json(data_dir, trusted), "quiet") == "enabled"
    assert state_of(list_json(data_dir, other), "quiet") == "disabled"
    # The original directory keeps the user's choice.
    assert state_of(list_json(data_dir, trusted), "quiet") == "enabled"


def test_bundled_enable_choice_still_applies(data_dir: Path) -> None:
    base = ["--data-dir", str(data_dir)]
    assert run_kumix(*base, "ext", "disable", "theme-default").returncode == 0
    assert state_of(list_json(data_dir), "theme-default") == "disabled"
    assert run_kumix(*base, "ext", "enable", "theme-default").returncode == 0
    assert state_of(list_json(data_dir), "theme-default") == "enabled"


# --- output that could drive a terminal or break a JSON reader ----------------------------


def test_json_output_with_a_non_utf8_directory_name_is_valid_ascii_json(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    root.mkdir()
    os.mkdir(os.fsencode(root) + b"/bad-\xff\xfe")
    (root / "ctl-\u009b31m-\u202e").mkdir()
    make_extension(root, "good")
    result = run_kumix("--data-dir", str(data_dir), "--extensions-dir", str(root), "ext", "list", "--json",
                       env={"PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.isascii()  # no raw C1 control or bidi override reaches the terminal
    doc = json.loads(result.stdout)
    assert state_of(doc, "good") == "denied"  # external, nothing granted yet
    assert state_of(doc, "ctl-\u009b31m-\u202e") == "invalid"


def test_error_text_does_not_echo_terminal_escapes_from_disk(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    root.mkdir()
    hostile = root / "esc\x1b]0;PWNED\x07\u009b2J"
    hostile.mkdir()
    # A script running `kumix ext validate exts/*` passes the name straight from disk.
    result = run_kumix("--data-dir", str(data_dir), "ext", "validate", str(hostile))
    assert result.returncode == 1
    assert "invalid_manifest" in result.stderr
    for ch in ("\x1b", "\x07", "\u009b"):
        assert ch not in result.stderr


@pytest.mark.parametrize("text", ["Evil\u009b31m", "abc\u0085", "\u202eexe.txt", "a\u2066b", "x\u200f"])
def test_c1_controls_and_bidi_overrides_are_refused_in_documents(text: str) -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(json.dumps(proc_manifest("echo", name=text)).encode(), display="m.json")
    assert info.value.details["pointer"] == "/name"
    with pytest.raises(InvalidPolicy) as pinfo:
        parse_policy(json.dumps({"name": "p", "capabilities": [], "description": text}).encode(), display="p.json")
    assert pinfo.value.details["pointer"] == "/description"


# --- numbers ------------------------------------------------------------------------------


def test_integral_floats_become_integers() -> None:
    """JSON Schema counts 5000.0 as an integer; the runtime must never see a float limit."""
    manifest = parse_manifest(json.dumps(proc_manifest("echo", timeoutMs=5000.0)).encode(), display="m.json")
    assert type(manifest.timeout_ms) is int
    assert manifest.timeout_ms == 5000
    policy = parse_policy(
        b'{"name": "p", "capabilities": [], "proc": {"maxConcurrency": 4.0, "maxMemoryMb": 1e2,'
        b' "defaultTimeoutMs": 1000.0, "maxTimeoutMs": 2e3}, "ui": {"maxMessageBytes": 1024.0}}',
        display="p.json",
    )
    assert type(policy.proc.max_concurrency) is int
    assert type(policy.proc.max_memory_mb) is int
    assert type(policy.proc.default_timeout_ms) is int
    assert type(policy.effective_timeout_ms(manifest)) is int
    assert type(policy.ui.max_message_bytes) is int
    with pytest.raises(InvalidManifest):
        parse_manifest(json.dumps(proc_manifest("echo", timeoutMs=5000.5)).encode(), display="m.json")


# --- the shipped schemas agree with the Python checks --------------------------------------


def _manifest(**overrides: Any) -> dict[str, Any]:
    return proc_manifest("echo", **overrides)


def _policy(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "custom", "capabilities": ["render.markdown"]}
    doc.update(overrides)
    return doc


MANIFEST_CASES: list[dict[str, Any]] = [
    _manifest(),
    _manifest(id="echo\n"),
    _manifest(name="Echo\n"),
    _manifest(name="Echo\u0007"),
    _manifest(description="line\nbreak"),
    _manifest(description="\u009b31m"),
    _manifest(description="\u202e"),
    _manifest(description="caf\u00e9 \u2014 ok"),
    _manifest(version="1.0.0\n"),
    _manifest(entry="worker.py\n"),
    _manifest(methods={"ping": "demo.echo"}, capabilities=["demo.echo"]),
    _manifest(methods={"demo.echo\n": "demo.echo"}),
    _manifest(capabilities=["demo.echo", "demo.echo\n"]),
    _manifest(timeoutMs=5000.0),
    _manifest(wasm=[{"path": "m.wasm\n", "sha256": "0" * 64}]),
    _manifest(wasm=[{"path": "m.wasm", "sha256": "0" * 64 + "\n"}]),
    _manifest(wasm=[{"path": "m.wasm", "sha256": "0" * 64, "exports": ["run\n"]}]),
]

POLICY_CASES: list[dict[str, Any]] = [
    _policy(),
    _policy(name="dev", capabilities=["*"]),
    _policy(name="devish", capabilities=["*"]),
    _policy(capabilities=["render.markdown", "*"]),
    _policy(name="custom\n"),
    _policy(description="tab\there"),
    _policy(description="\u0085"),
    _policy(ui={"sandbox": ["allow-scripts", "allow-same-origin"]}),
    _policy(ui={"sandbox": ["allow-scripts\n"]}),
    _policy(ui={"connectSrc": ["https://example.org/a\ufeff"]}),
    _policy(ui={"connectSrc": ["https://example.org/a\u0085"]}),
    _policy(ui={"connectSrc": ["https://example.org/\u00e9"]}),
    _policy(ui={"connectSrc": ["https://example.org/path?q=1"]}),
    _policy(ui={"connectSrc": ["https://example.org\n"]}),
    _policy(pluginOrigins=["https://example.org\n"]),
    _policy(net={"allowedHosts": ["example.org\n"]}),
    _policy(proc={"maxConcurrency": 4.0}),
]


def _python_accepts_manifest(doc: dict[str, Any]) -> bool:
    try:
        parse_manifest(json.dumps(doc).encode(), display="m.json")
    except InvalidManifest:
        return False
    return True


def _python_accepts_policy(doc: dict[str, Any]) -> bool:
    try:
        parse_policy(json.dumps(doc).encode(), display="p.json")
    except InvalidPolicy:
        return False
    return True


@pytest.mark.parametrize("doc", MANIFEST_CASES)
def test_manifest_schema_and_python_agree(doc: dict[str, Any]) -> None:
    schema = load_schema("manifest.schema.json")
    assert jsonschema.Draft202012Validator(schema).is_valid(doc) == _python_accepts_manifest(doc), doc


@pytest.mark.parametrize("doc", POLICY_CASES)
def test_policy_schema_and_python_agree(doc: dict[str, Any]) -> None:
    schema = load_schema("policy.schema.json")
    assert jsonschema.Draft202012Validator(schema).is_valid(doc) == _python_accepts_policy(doc), doc


@pytest.mark.parametrize("path", ["/a\ufeff", "/\u00e9", "/a b", "/a;b", "/a'b"])
def test_connect_src_paths_are_visible_ascii(path: str) -> None:
    """ECMA-262 and Python disagree on what \\s matches (U+FEFF, U+0085), so a schema tool
    and Kumix would disagree on such a path; it is refused in every dialect now."""
    doc = _policy(ui={"connectSrc": ["https://example.org" + path]})
    assert not _python_accepts_policy(doc)
    assert not jsonschema.Draft202012Validator(load_schema("policy.schema.json")).is_valid(doc)


def test_schema_rules_keep_their_pointers_and_reasons() -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(json.dumps(_policy(name="devish", capabilities=["*"])).encode(), display="p.json")
    assert info.value.details["pointer"] == "/capabilities/0"
    assert "dev" in info.value.details["reason"]
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(json.dumps(_policy(ui={"sandbox": ["allow-same-origin"]})).encode(), display="p.json")
    assert info.value.details["pointer"] == "/ui/sandbox/0"
    assert "allow-same-origin" in info.value.details["reason"]
    with pytest.raises(InvalidManifest) as minfo:
        parse_manifest(json.dumps(_manifest(methods={"ping": "demo.echo"})).encode(), display="m.json")
    assert minfo.value.details["pointer"] == "/methods/ping"
    assert "reserved" in minfo.value.details["reason"]


# --- paths given on the command line --------------------------------------------------------


def test_validate_accepts_the_current_directory_and_a_bare_manifest_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext = make_extension(tmp_path / "exts", "echo")
    monkeypatch.chdir(ext)
    assert validate_extension_dir(Path(".")).valid
    assert validate_extension_dir(Path("manifest.json")).valid
    assert validate_extension_dir(Path(".")).id == "echo"


def test_enable_choice_is_bound_to_the_directory_in_the_store(data_dir: Path) -> None:
    with Database(data_dir / "state.db") as db:
        store = ExtensionStateStore(db)
        store.set_enabled("quiet", True, "/exts/a/quiet")
        assert store.enabled_choice("quiet", "/exts/a/quiet") is True
        assert store.enabled_choice("quiet", "/exts/b/quiet") is None
        store.set_enabled("theme-default", False)
        assert store.enabled_choice("theme-default") is False


def test_state_written_before_the_directory_binding_is_migrated(data_dir: Path) -> None:
    """A database from before enable choices were bound keeps bundled choices; an old
    external `enabled` row binds to no directory, so it no longer enables anything."""
    path = data_dir / "state.db"
    with Database(path) as db:
        db.migrate(Migrations("extension_state", MIGRATIONS.steps[:1]))
        with db.transaction() as tx:
            tx.execute("INSERT INTO extension_enabled VALUES ('theme-default', 0, 0), ('quiet', 1, 0)")
    with Database(path) as db:
        store = ExtensionStateStore(db)
        assert store.enabled_choice("theme-default") is False
        assert store.enabled_choice("quiet", "/exts/quiet") is None
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"


# --- state locations that cannot work --------------------------------------------------------


def test_data_dir_that_is_a_file_is_a_typed_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_kumix("--data-dir", str(not_a_dir), "ext", "list", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "bad_request"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_state_file_that_is_not_a_regular_file_is_state_corrupt(data_dir: Path, kind: str) -> None:
    state = data_dir / "state.db"
    if kind == "fifo":
        os.mkfifo(state)
    else:
        state.mkdir()
    result = run_kumix("--data-dir", str(data_dir), "ext", "disable", "theme-default", "--json", timeout=30)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "state_corrupt"


@pytest.mark.parametrize("command", [["ext", "info"], ["ext", "grant"], ["ext", "validate"], ["schema", "export"]])
def test_every_positional_argument_is_explained_in_help(command: list[str]) -> None:
    result = run_kumix(*command, "--help")
    assert result.returncode == 0
    positionals = result.stdout.split("positional arguments:")[1].split("options:")[0]
    for line in positionals.strip().splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            assert len(line.split(None, 1)) == 2, f"no help for {line.strip()!r}"
