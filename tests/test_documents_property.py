"""Property tests: no manifest or policy input escapes as anything but a validation error."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kumix.core.errors import InvalidManifest, InvalidPolicy
from kumix.extensions.manifest import parse_manifest
from kumix.extensions.policy import parse_policy
from kumix.extensions.registry import discover
from tests.governance_fixtures import proc_manifest

hostile_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["..", "../..", "/etc/passwd", "a/../../b", "\x00", "x\x00.py", "worker.py\n", "C:\\x",
                     "~", "a" * 10_000, "\u202e", "*", "", " ", "file:///etc", "https://evil.example/x.wasm"]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(hostile_text, children, max_size=5)
    ),
    max_leaves=30,
)
MANIFEST_KEYS = list(proc_manifest("x").keys()) + ["timeoutMs", "wasm", "description"]
POLICY_KEYS = ["name", "capabilities", "pluginOrigins", "proc", "ui", "net", "description"]


def nested(depth: int) -> str:
    """Deeply nested JSON text, built as text: json.dumps itself would hit the recursion limit."""
    return '{"a": [' * depth + '"x"' + "]}" * depth


def check_manifest(data: bytes) -> None:
    try:
        parse_manifest(data, display="m.json")
    except InvalidManifest as exc:
        assert exc.code == "invalid_manifest"
        assert exc.details["file"] == "m.json"
        assert isinstance(exc.details["pointer"], str)
        assert exc.details["reason"]


def check_policy(data: bytes) -> None:
    try:
        parse_policy(data, display="p.json")
    except InvalidPolicy as exc:
        assert exc.code == "invalid_policy"
        assert exc.details["file"] == "p.json"


@given(json_values)
def test_random_json_is_a_manifest_or_an_invalid_manifest(doc: Any) -> None:
    check_manifest(json.dumps(doc).encode())


@given(st.fixed_dictionaries({}, optional=dict.fromkeys(MANIFEST_KEYS, json_values)))
def test_manifest_shaped_documents_with_wrong_values(doc: dict[str, Any]) -> None:
    check_manifest(json.dumps(doc).encode())


@given(st.sampled_from(MANIFEST_KEYS), json_values)
def test_one_bad_field_in_an_otherwise_valid_manifest(key: str, value: Any) -> None:
    doc = proc_manifest("echo")
    doc[key] = value
    check_manifest(json.dumps(doc).encode())


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_manifest(data)
    check_policy(data)


@given(st.integers(min_value=1, max_value=3000))
def test_deep_nesting(depth: int) -> None:
    check_manifest(nested(depth).encode())
    check_policy(('{"name": "x", "capabilities": [], "proc": ' + nested(depth) + "}").encode())


@given(st.fixed_dictionaries({}, optional=dict.fromkeys(POLICY_KEYS, json_values)))
def test_policy_shaped_documents_with_wrong_values(doc: dict[str, Any]) -> None:
    check_policy(json.dumps(doc).encode())


@given(st.sampled_from(POLICY_KEYS), json_values)
def test_one_bad_field_in_an_otherwise_valid_policy(key: str, value: Any) -> None:
    doc: dict[str, Any] = {"name": "dev", "capabilities": ["*"]}
    doc[key] = value
    check_policy(json.dumps(doc).encode())


entry_names = st.one_of(
    hostile_text,
    st.sampled_from(["../outside.py", "/tmp/x.py", "sub/../../x.py", "link.py", "worker.py"]),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entry_names, dir_name=st.sampled_from(["echo", "..", "Echo", "echo-2", "e" * 80]),
       manifest_bytes=st.one_of(st.none(), st.binary(max_size=100)))
def test_discovery_never_raises_and_keeps_neighbours(entry: str, dir_name: str, manifest_bytes: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "exts"
        root.mkdir()
        (Path(tmp) / "outside.py").write_text("x = 1\n")
        good = root / "good"
        good.mkdir()
        (good / "manifest.json").write_text(json.dumps(proc_manifest("good")))
        (good / "worker.py").write_text("")
        target = (root / dir_name).resolve()
        if target.parent == root.resolve():
            target.mkdir(exist_ok=True)
            data = manifest_bytes if manifest_bytes is not None else json.dumps(
                proc_manifest("echo", entry=entry)).encode()
            (target / "manifest.json").write_bytes(data)
            os.symlink(Path(tmp) / "outside.py", target / "link.py")
        records = discover([root])
        assert any(r.id == "good" and r.valid for r in records)
        for record in records:
            if record.valid and record.origin == "external":
                resolved = (record.path / record.manifest.entry).resolve()
                assert record.path.resolve() in resolved.parents
