"""Manifest validation: every malformed input is an InvalidManifest naming file and pointer."""

from __future__ import annotations

import json

import pytest

from kumix.core.errors import InvalidManifest
from kumix.extensions.manifest import parse_manifest
from tests.governance_fixtures import proc_manifest


def parse(doc: object) -> object:
    return parse_manifest(json.dumps(doc).encode(), display="m.json")


def problem_of(data: bytes) -> dict[str, str]:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(data, display="m.json")
    assert info.value.code == "invalid_manifest"
    details = info.value.details
    assert details["file"] == "m.json"
    return details


def test_valid_proc_manifest_round_trips() -> None:
    manifest = parse(proc_manifest("echo", timeoutMs=1234))
    assert manifest.id == "echo"
    assert manifest.timeout_ms == 1234
    assert manifest.capability_for("demo.echo") == "demo.echo"
    assert parse(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("mutation", "pointer", "fragment"),
    [
        ({"id": "Bad_Id"}, "/id", "does not match"),
        ({"version": "1.0"}, "/version", "does not match"),
        ({"kind": "daemon"}, "/kind", "is not one of"),
        ({"entry": "../evil.py"}, "/entry", "does not match"),
        ({"entry": "/etc/passwd.py"}, "/entry", "does not match"),
        ({"entry": ".hidden/worker.py"}, "/entry", "does not match"),
        ({"entry": "worker.html"}, "/entry", "does not match"),
        ({"capabilities": "demo.echo"}, "/capabilities", "is not of type"),
        ({"capabilities": ["demo.echo", "demo.echo"]}, "/capabilities", "non-unique"),
        ({"timeoutMs": 0}, "/timeoutMs", "less than the minimum"),
        ({"timeoutMs": "5"}, "/timeoutMs", "is not of type"),
        ({"surprise": True}, "", "Additional properties"),
        ({"wasm": [{"path": "../x.wasm", "sha256": "0" * 64}]}, "/wasm/0/path", "does not match"),
        ({"wasm": [{"path": "x.wasm", "sha256": "XYZ"}]}, "/wasm/0/sha256", "does not match"),
    ],
)
def test_schema_violations_name_the_pointer(mutation: dict[str, object], pointer: str, fragment: str) -> None:
    doc = proc_manifest("echo")
    doc.update(mutation)
    details = problem_of(json.dumps(doc).encode())
    assert details["pointer"] == pointer
    assert fragment in details["reason"]


def test_method_needing_undeclared_capability_is_invalid() -> None:
    doc = proc_manifest("echo", methods={"demo.echo": "net.fetch"})
    details = problem_of(json.dumps(doc).encode())
    assert details["pointer"] == "/methods/demo.echo"
    assert "net.fetch" in details["reason"]


def test_reserved_ping_method_is_refused() -> None:
    doc = proc_manifest("echo", methods={"ping": "demo.echo"})
    assert problem_of(json.dumps(doc).encode())["pointer"] == "/methods/ping"


def test_proc_manifest_needs_methods() -> None:
    doc = proc_manifest("echo")
    del doc["methods"]
    assert "methods" in problem_of(json.dumps(doc).encode())["reason"]


def test_ui_manifest_may_not_declare_methods() -> None:
    doc = proc_manifest("panel", kind="ui", entry="entry.html")
    details = problem_of(json.dumps(doc).encode())
    assert details["pointer"] == "/methods"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"{", "invalid JSON"),
        (b'{"id": "a", "id": "b"}', "duplicate key"),
        (b'{"timeoutMs": NaN}', "non-finite"),
        (b"[" * 5000 + b"]" * 5000, "deep"),
        (b" " * (64 * 1024 + 1), "exceeds"),
        (b'{"id": "echo\\u0000"}', "control characters"),
        (b'{"id": "echo\\n"}', "control characters"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid JSON"),
    ],
)
def test_hostile_bytes_are_invalid_manifests(data: bytes, fragment: str) -> None:
    assert fragment in problem_of(data)["reason"]


def test_newline_after_id_cannot_sneak_past_the_anchor() -> None:
    # Python's `$` matches before a trailing newline; the control-character rule stops it.
    doc = proc_manifest("echo")
    doc["id"] = "echo\n"
    assert problem_of(json.dumps(doc).encode())["pointer"] == "/id"
