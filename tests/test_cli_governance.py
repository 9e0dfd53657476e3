"""The governance CLI, run as a user would run it: a real subprocess, real state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_kumix
from tests.governance_fixtures import make_extension, proc_manifest, write_policy


def kumix_json(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_kumix("--data-dir", str(data_dir), "--json", *args, env=env)
    assert result.stderr == "" or result.returncode != 0, result.stderr
    return result.returncode, json.loads(result.stdout)


def states(doc: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {e["id"]: e["state"] for e in doc["extensions"]}


def test_version_and_help() -> None:
    result = run_kumix("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("kumix ")
    result = run_kumix("--help")
    assert result.returncode == 0
    for command in ("ext", "policy", "schema"):
        assert command in result.stdout
    assert run_kumix("ext", "--help").returncode == 0


HEAVY = ("nio", "aiohttp", "kumix.matrix", "kumix.app.matrix_session", "kumix.extensions.proc.session")


def _modules_after(*argv: str, data_dir: Path | None = None) -> set[str]:
    """The modules a real `kumix ARGV` run has imported when it finishes."""
    probe = (
        "import sys\n"
        "from kumix.cli.main import main\n"
        f"code = main({list(argv)!r})\n"
        "heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print('MODULES', *heavy)\n"
    ).replace("{HEAVY!r}", repr(HEAVY))
    env = {**os.environ, "KUMIX_DATA_DIR": str(data_dir)} if data_dir else None
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False)
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_the_cli_imports_nio_and_the_matrix_side_only_for_matrix_commands(data_dir: Path) -> None:
    """Start-up cost is paid per command: building the parser (every `--help`, `--version`)
    and the governance commands never import nio or the Matrix adapter."""
    probe = ("import sys; from kumix.cli.main import build_parser; build_parser(); "
             f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))")
    parser_only = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert parser_only.stdout.strip() == "[]"
    for argv in (["ext", "list"], ["policy", "show"], ["policy", "check"]):
        assert _modules_after(*argv, data_dir=data_dir) == set(), argv
    # The probe sees imports: a Matrix command does load the Matrix side.
    assert "nio" in _modules_after("whoami", data_dir=data_dir)


def test_settings_name_the_policy_code_default() -> None:
    from kumix.app.settings import DEFAULT_POLICY, Settings
    from kumix.extensions import policy

    assert DEFAULT_POLICY == policy.DEFAULT_POLICY
    assert Settings.resolve(env={}).policy == policy.DEFAULT_POLICY


def test_ctrl_c_while_kumix_starts_is_interrupted_not_a_traceback(tmp_path: Path) -> None:
    """The first second of a run imports nio, the crypto libraries and jsonschema; Ctrl-C
    then must end like Ctrl-C during the command: "interrupted", exit 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    env["KUMIX_DATA_DIR"] = str(tmp_path / "data")
    for delay in (0.25, 0.4, 0.55, 0.7, 0.85, 1.0):
        proc = subprocess.Popen([sys.executable, "-m", "kumix", "ext", "list"], env=env, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err)
        # -SIGINT is also "interrupted" (a shell reports it as 130): CPython ends a process by
        # SIGINT when the KeyboardInterrupt, though caught, came out of exec'd code (dataclass
        # and namedtuple creation use exec), or when it arrives after the command finished.
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)
        assert err in ("", "kumix: interrupted\n"), (delay, err)


def test_every_option_and_argument_of_every_command_has_a_help_text() -> None:
    """`kumix COMMAND --help` is the reference a user reads first: a bare `--name NAME` or
    `room` says nothing about what is expected."""
    import argparse

    from kumix.cli.main import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if not any(c.dest == name and c.help for c in action._choices_actions):
                        missing.append(f"{sub.prog} (command)")
                    walk(sub)
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser())
    assert missing == []


def _ext_choices(parser: object) -> list[str]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    ext = top.choices["ext"]
    return list(next(a for a in ext._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_ext_subcommands_lists_every_subcommand_of_ext() -> None:
    """A `kumix ext` subcommand missing from SUBCOMMANDS would never get its parser alone,
    one listed there that `register` does not build would build none."""
    from kumix.cli import ext_commands
    from kumix.cli.main import build_parser

    assert _ext_choices(build_parser([ext_commands])) == list(ext_commands.SUBCOMMANDS)
    for name in ext_commands.SUBCOMMANDS:
        assert _ext_choices(build_parser([ext_commands], ext_only=name)) == [name]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ext", "list"], "list"),
        (["--json", "--policy", "dev", "ext", "--data-dir=/d", "info", "x"], "info"),
        (["ext", "call", "list", "info", "--params", "{}"], "call"),
        (["ext", "list", "-h"], "list"),  # the help of `list` alone either way
        (["ext", "-h", "list"], None),  # the help of `ext`: every subcommand
        (["-h", "ext", "list"], None),
        (["ext", "--pol", "info", "list"], None),  # an abbreviation: `info` is the policy
        (["ext", "lst"], None),  # argparse's error lists every subcommand
        (["ext"], None),
        (["policy", "show"], None),
        (["--policy", "ext", "list"], None),  # `ext` is the policy's value
    ],
)
def test_the_ext_subcommand_scan_declines_what_argparse_may_read_otherwise(argv: list[str],
                                                                          expected: str | None) -> None:
    from kumix.cli.main import ext_subcommand

    assert ext_subcommand(argv) == expected


def test_every_ext_subcommand_parses_as_with_the_full_parser() -> None:
    from kumix.cli.main import build_parser

    for argv in (["ext", "list", "--json"], ["ext", "info", "x"], ["ext", "grant", "x", "cap"],
                 ["ext", "call", "x", "m", "--params", "{}"], ["--policy", "dev", "ext", "disable", "x"]):
        full = vars(build_parser().parse_args(argv))
        alone = vars(build_parser(ext_only=argv[argv.index("ext") + 1]).parse_args(argv))
        assert alone == full


def test_docs_name_every_option_of_the_matrix_commands() -> None:
    """docs/matrix.md lists the Matrix commands with their options; one the CLI has and the
    page does not name is a feature a reader cannot find."""
    import argparse

    from kumix.cli.main import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "matrix.md").read_text(encoding="utf-8")
    matrix_commands = {"login", "logout", "whoami", "rooms", "join", "create-room", "send", "tail", "history",
                       "search", "keys"}
    global_options = {"--data-dir", "--policy", "--extensions-dir", "--json", "-h", "--help"}
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            for option in action.option_strings:
                if option not in global_options and option not in doc:
                    missing.append(f"{parser.prog} {option}")

    sub_action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub_action.choices.items():
        if name in matrix_commands:
            walk(parser)
    assert missing == []


def test_usage_errors_exit_2() -> None:
    # An empty global option (an unset shell variable) is refused, not read as "the default".
    for option in ("--data-dir", "--policy", "--extensions-dir"):
        result = run_kumix(option, "", "ext", "list", "--json")
        assert result.returncode == 2, (option, result.stderr)
        assert json.loads(result.stdout)["error"]["code"] == "bad_request"
        assert "must not be empty" in result.stderr
    assert run_kumix().returncode == 2
    assert run_kumix("no-such-command").returncode == 2
    result = run_kumix("ext", "enable")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert result.stdout == ""


def test_usage_errors_with_json_print_a_json_error_too() -> None:
    for args in (("ext", "enable", "--json"), ("--json", "ext", "bogus"), ("--json", "send")):
        result = run_kumix(*args)
        assert result.returncode == 2, args
        assert "usage:" in result.stderr
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "bad_request"
        assert error["message"].startswith("kumix ")


def test_list_shows_bundled_extensions_enabled_under_strict(data_dir: Path) -> None:
    code, doc = kumix_json(data_dir, "ext", "list")
    assert code == 0
    assert doc["policy"] == "strict"
    assert states(doc)["markdown-renderer"] == "enabled"


def test_global_options_after_the_command(data_dir: Path) -> None:
    result = run_kumix("ext", "list", "--json", "--data-dir", str(data_dir), "--policy", "dev")
    assert result.returncode == 0
    assert json.loads(result.stdout)["policy"] == "dev"


def test_disable_then_enable_persists(data_dir: Path) -> None:
    assert kumix_json(data_dir, "ext", "disable", "theme-default")[1]["state"] == "disabled"
    assert states(kumix_json(data_dir, "ext", "list")[1])["theme-default"] == "disabled"
    assert kumix_json(data_dir, "ext", "enable", "theme-default")[1]["state"] == "enabled"
    assert states(kumix_json(data_dir, "ext", "list")[1])["theme-default"] == "enabled"


def test_unknown_extension_is_not_found(data_dir: Path) -> None:
    code, doc = kumix_json(data_dir, "ext", "info", "nope")
    assert code == 1
    assert doc["error"]["code"] == "not_found"


def test_external_extension_lifecycle_under_strict(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "echo", proc_manifest("echo", capabilities=["render.markdown"],
                                               methods={"render.md": "render.markdown"}))
    env = {"KUMIX_EXTENSIONS_PATH": str(root)}
    doc = kumix_json(data_dir, "ext", "list", env=env)[1]
    echo = next(e for e in doc["extensions"] if e["id"] == "echo")
    assert echo["state"] == "denied"
    assert echo["origin"] == "external"
    assert "not granted" in echo["reason"]

    code, err = kumix_json(data_dir, "ext", "enable", "echo", env=env)
    assert code == 1
    assert err["error"]["code"] == "not_granted"

    code, granted = kumix_json(data_dir, "ext", "grant", "echo", "render.markdown", env=env)
    assert code == 0
    assert granted["state"] == "disabled"  # granted but not yet enabled
    assert granted["granted"] == ["render.markdown"]
    assert kumix_json(data_dir, "ext", "enable", "echo", env=env)[1]["state"] == "enabled"


def test_grant_is_refused_for_undeclared_or_disallowed_capabilities(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "echo")  # declares demo.echo, which strict does not allow
    args = ("--extensions-dir", str(root))
    code, doc = kumix_json(data_dir, *args, "ext", "grant", "echo", "net.fetch")
    assert (code, doc["error"]["code"]) == (1, "bad_request")
    code, doc = kumix_json(data_dir, *args, "ext", "grant", "echo", "demo.echo")
    assert (code, doc["error"]["code"]) == (1, "policy_denied")
    assert doc["error"]["details"] == {"missing": ["demo.echo"]}
    code, doc = kumix_json(data_dir, "ext", "grant", "markdown-renderer", "render.markdown")
    assert (code, doc["error"]["code"]) == (1, "bad_request")


def test_grant_does_not_follow_a_different_directory(data_dir: Path, tmp_path: Path) -> None:
    manifest = proc_manifest("echo", capabilities=["render.markdown"], methods={"render.md": "render.markdown"})
    make_extension(tmp_path / "a", "echo", manifest)
    make_extension(tmp_path / "b", "echo", manifest)
    kumix_json(data_dir, "--extensions-dir", str(tmp_path / "a"), "ext", "grant", "echo", "render.markdown")
    doc = kumix_json(data_dir, "--extensions-dir", str(tmp_path / "b"), "ext", "info", "echo")[1]
    assert doc["state"] == "denied"
    assert doc["granted"] == []


def test_invalid_extension_is_listed_and_cannot_be_enabled(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "broken", b'{"id": "broken"')
    env = {"KUMIX_EXTENSIONS_PATH": str(root)}
    doc = kumix_json(data_dir, "ext", "list", env=env)[1]
    broken = next(e for e in doc["extensions"] if e["id"] == "broken")
    assert broken["state"] == "invalid"
    assert broken["problem"]["file"].endswith("broken/manifest.json")
    code, err = kumix_json(data_dir, "ext", "enable", "broken", env=env)
    assert (code, err["error"]["code"]) == (1, "invalid_manifest")


def test_policy_denied_extension_names_the_capability(data_dir: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "tight.json", name="tight", capabilities=["render.markdown"])
    doc = kumix_json(data_dir, "--policy", str(policy), "policy", "check")[1]
    rows = {r["id"]: r for r in doc["extensions"]}
    assert rows["markdown-renderer"]["allowed"] is True
    assert rows["theme-default"]["allowed"] is False
    assert "theme.tokens" in rows["theme-default"]["reason"]
    code, err = kumix_json(data_dir, "--policy", str(policy), "ext", "enable", "theme-default")
    assert (code, err["error"]["code"]) == (1, "policy_denied")


def test_invalid_policy_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "capabilities": ["*"]}')
    code, err = kumix_json(data_dir, "--policy", str(bad), "ext", "list")
    assert code == 1
    assert err["error"]["code"] == "invalid_policy"
    assert err["error"]["details"]["pointer"] == "/capabilities/0"
    result = run_kumix("--data-dir", str(data_dir), "--policy", str(bad), "ext", "list")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "invalid_policy" in result.stderr


def test_policy_show(data_dir: Path) -> None:
    code, doc = kumix_json(data_dir, "policy", "show")
    assert code == 0
    assert doc["name"] == "strict"
    assert doc["proc"]["requireConfinement"] is True
    text = run_kumix("--data-dir", str(data_dir), "--policy", "dev", "policy", "show").stdout
    assert "policy dev" in text


def test_validate(tmp_path: Path, data_dir: Path) -> None:
    good = make_extension(tmp_path / "x", "good")
    code, doc = kumix_json(data_dir, "ext", "validate", str(good))
    assert (code, doc["valid"]) == (0, True)
    bad = make_extension(tmp_path / "y", "bad", proc_manifest("bad", version="one"))
    code, doc = kumix_json(data_dir, "ext", "validate", str(bad / "manifest.json"))
    assert code == 1
    assert doc["error"]["details"]["pointer"] == "/version"
    code, doc = kumix_json(data_dir, "ext", "validate", str(tmp_path / "missing"))
    assert (code, doc["error"]["code"]) == (1, "not_found")
    # A file other than a manifest.json is named as such, not judged as its directory.
    other = tmp_path / "notes.json"
    other.write_text("{}")
    code, doc = kumix_json(data_dir, "ext", "validate", str(other))
    assert (code, doc["error"]["code"]) == (1, "bad_request")
    assert "notes.json is not a manifest.json" in doc["error"]["message"]


def test_schema_export_into_an_unusable_directory_is_a_bad_request(tmp_path: Path, data_dir: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for target in (a_file / "schemas", Path("/proc/kumix-no-such-dir")):
        code, doc = kumix_json(data_dir, "schema", "export", str(target))
        assert (code, doc["error"]["code"]) == (1, "bad_request"), doc
        assert str(target) in doc["error"]["message"]


def test_schema_export_writes_valid_json_schemas(tmp_path: Path, data_dir: Path) -> None:
    target = tmp_path / "schemas"
    code, doc = kumix_json(data_dir, "schema", "export", str(target))
    assert code == 0
    names = sorted(p.name for p in target.iterdir())
    assert names == ["manifest.schema.json", "policy.schema.json"]
    import jsonschema

    for name in names:
        schema = json.loads((target / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
    manifest_schema = json.loads((target / "manifest.schema.json").read_text())
    jsonschema.validate(proc_manifest("echo"), manifest_schema)


def test_data_dir_from_environment_and_private_mode(tmp_path: Path) -> None:
    data = tmp_path / "fromenv"
    result = run_kumix("ext", "disable", "theme-default", env={"KUMIX_DATA_DIR": str(data)})
    assert result.returncode == 0
    assert (data / "state.db").exists()
    assert os.stat(data).st_mode & 0o777 == 0o700


def test_hostile_names_are_not_echoed_raw_to_the_terminal(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "esc", dir_name="esc\x1b[31m")
    result = run_kumix("--data-dir", str(data_dir), "--extensions-dir", str(root), "ext", "list")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout


def _shipped_documents() -> list[tuple[str, Path]]:
    bundled = REPO_ROOT / "src" / "kumix" / "bundled"
    return sorted([("manifest.schema.json", p) for p in bundled.glob("extensions/*/*/manifest.json")]
                  + [("policy.schema.json", p) for p in bundled.glob("policies/*.json")])


def test_the_shipped_valid_digests_are_exactly_the_shipped_documents_that_conform() -> None:
    """`ext list` and `policy show` skip jsonschema for documents identical to the ones
    Kumix ships; this keeps that list true. When it fails after a bundled manifest or
    policy changed, write the `expected` list below into
    src/kumix/extensions/schemas/shipped-valid.json."""
    import jsonschema

    from kumix.extensions.jsondoc import SHIPPED_VALID_FILE, document_digest, load_schema, parse_document

    expected = []
    for schema_name, path in _shipped_documents():
        doc = parse_document(path.read_bytes(), display=str(path))
        schema = load_schema(schema_name)
        jsonschema.validators.validator_for(schema)(schema).validate(doc)  # it does conform
        expected.append(document_digest(schema_name, doc))
    listed = json.loads((REPO_ROOT / "src/kumix/extensions/schemas" / SHIPPED_VALID_FILE).read_text())
    assert listed == sorted(expected), json.dumps(sorted(expected), indent=2)


def test_the_document_digest_is_sha256_whichever_implementation_computes_it() -> None:
    """The digest is computed without hashlib (no OpenSSL load) where the interpreter has its
    own SHA-256: it must be the same standard digest the listed ones were made with."""
    import hashlib

    from kumix.extensions.jsondoc import SCHEMAS_DIR, document_digest

    schema = (SCHEMAS_DIR / "policy.schema.json").read_bytes()
    doc = {"b": [1, "\u00e9"], "a": None}
    canonical = b'{"a":null,"b":[1,"\\u00e9"]}'
    expected = hashlib.sha256(hashlib.sha256(schema).digest() + canonical).hexdigest()
    assert document_digest("policy.schema.json", doc) == expected


def test_a_document_that_differs_from_a_shipped_one_is_still_validated(tmp_path: Path) -> None:
    from kumix.core.errors import InvalidPolicy
    from kumix.extensions.policy import load_policy

    strict = json.loads((REPO_ROOT / "src/kumix/bundled/policies/strict.json").read_text())
    strict["proc"]["maxQueue"] = -1
    path = tmp_path / "almost-strict.json"
    path.write_text(json.dumps(strict))
    try:
        load_policy(str(path))
    except InvalidPolicy as exc:
        assert exc.details["pointer"] == "/proc/maxQueue", exc.details
    else:
        raise AssertionError("a changed copy of a shipped policy was not validated")
