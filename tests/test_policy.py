"""Policies: deny-by-default decisions, limits and the rules a policy file must obey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kumix.core.errors import InvalidPolicy
from kumix.extensions.manifest import parse_manifest
from kumix.extensions.policy import load_policy, parse_policy
from kumix.extensions.registry import discover
from tests.governance_fixtures import proc_manifest, write_policy


def manifest(**overrides: object):  # type: ignore[no-untyped-def]
    return parse_manifest(json.dumps(proc_manifest("echo", **overrides)).encode(), display="m")


def test_strict_allows_every_bundled_extension() -> None:
    strict = load_policy("strict")
    bundled = [r for r in discover() if r.origin == "bundled"]
    assert bundled, "bundled extensions must be discovered"
    for record in bundled:
        assert record.manifest is not None, record.problem
        decision = strict.decide(record.manifest)
        assert decision.allowed, (record.id, decision.reason)


def test_strict_denies_an_unlisted_capability_and_names_it() -> None:
    decision = load_policy("strict").decide(manifest())
    assert not decision.allowed
    assert decision.code == "policy_denied"
    assert decision.missing == ("demo.echo",)
    assert "demo.echo" in decision.reason


def test_dev_wildcard_allows_anything() -> None:
    assert load_policy("dev").decide(manifest()).allowed


def test_external_extension_needs_every_capability_granted() -> None:
    dev = load_policy("dev")
    m = manifest(capabilities=["demo.echo", "demo.other"], methods={"demo.echo": "demo.echo"})
    refused = dev.decide(m, external=True, granted=frozenset({"demo.echo"}))
    assert not refused.allowed
    assert refused.code == "not_granted"
    assert refused.missing == ("demo.other",)
    assert dev.decide(m, external=True, granted=frozenset({"demo.echo", "demo.other"})).allowed


def test_wildcard_outside_a_policy_named_dev_is_refused(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.json", name="devish", capabilities=["*"])
    with pytest.raises(InvalidPolicy) as info:
        load_policy(str(path))
    assert info.value.details["pointer"] == "/capabilities/0"


def test_allow_same_origin_is_always_refused(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.json", ui={"sandbox": ["allow-scripts", "allow-same-origin"]})
    with pytest.raises(InvalidPolicy) as info:
        load_policy(str(path))
    assert info.value.details["pointer"] == "/ui/sandbox/1"


@pytest.mark.parametrize(
    ("timeout_ms", "expected"),
    [(None, 5000), (100, 100), (29_999, 29_999), (600_000, 30_000)],
)
def test_effective_timeout_is_capped_by_policy(timeout_ms: int | None, expected: int) -> None:
    m = manifest() if timeout_ms is None else manifest(timeoutMs=timeout_ms)
    assert load_policy("strict").effective_timeout_ms(m) == expected


def test_default_timeout_above_max_is_invalid(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.json", proc={"defaultTimeoutMs": 10, "maxTimeoutMs": 5})
    with pytest.raises(InvalidPolicy) as info:
        load_policy(str(path))
    assert info.value.details["pointer"] == "/proc/defaultTimeoutMs"


def test_absent_limits_take_the_strict_defaults(tmp_path: Path) -> None:
    policy = load_policy(str(write_policy(tmp_path / "p.json")))
    assert policy.proc == load_policy("strict").proc
    assert policy.proc.require_confinement is True


@pytest.mark.parametrize(
    "doc",
    [
        {"name": "x", "capabilities": ["a"], "proc": {"maxMemoryMb": 1}},
        {"name": "x", "capabilities": ["a"], "proc": {"unknown": 1}},
        {"name": "x", "capabilities": ["a"], "pluginOrigins": ["http://evil.example"]},
        {"name": "x", "capabilities": ["a"], "ui": {"connectSrc": ["https://x; script-src *"]}},
        {"name": "X", "capabilities": []},
        {"capabilities": []},
    ],
)
def test_bad_policy_documents_are_invalid(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(json.dumps(doc).encode(), display="p.json")
    assert info.value.details["file"] == "p.json"


def test_missing_policy_file_is_invalid_policy(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(str(tmp_path / "nope.json"))
    assert "does not exist" in info.value.message
