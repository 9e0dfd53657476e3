"""Discovery: one broken extension is `invalid` with a reason; every other one still loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kumix.extensions.registry import discover
from tests.governance_fixtures import make_extension, proc_manifest


def by_id(records: list, ext_id: str):  # type: ignore[no-untyped-def]
    matches = [r for r in records if r.id == ext_id]
    assert len(matches) == 1, [r.id for r in records]
    return matches[0]


def test_bundled_extensions_are_discovered_valid() -> None:
    records = discover()
    ids = {r.id for r in records if r.valid}
    assert {"markdown-renderer", "mermaid-renderer", "theme-default"} <= ids
    assert all(r.origin == "bundled" for r in records)


def test_external_root_loads_next_to_broken_neighbours(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "good")
    make_extension(root, "wrong-dir", proc_manifest("other-id"))
    make_extension(root, "no-entry")
    (root / "no-entry" / "worker.py").unlink()
    make_extension(root, "binary", b"\x80\x81\x82")
    make_extension(root, "huge", b" " * 100_000)
    outside = tmp_path / "outside"
    make_extension(outside, "sneaky")
    os.symlink(outside / "sneaky", root / "sneaky")

    records = discover([root])
    assert by_id(records, "good").valid
    wrong = by_id(records, "wrong-dir")
    assert not wrong.valid
    assert wrong.problem.pointer == "/id"
    assert "directory name" in wrong.problem.reason
    assert "does not exist" in by_id(records, "no-entry").problem.reason
    assert "UTF-8" in by_id(records, "binary").problem.reason
    assert "limit" in by_id(records, "huge").problem.reason
    assert "leaves the extensions root" in by_id(records, "sneaky").problem.reason


def test_entry_symlink_leaving_the_extension_is_invalid(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    ext = make_extension(root, "linky")
    (ext / "worker.py").unlink()
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 1\n")
    os.symlink(secret, ext / "worker.py")
    record = by_id(discover([root]), "linky")
    assert not record.valid
    assert record.problem.pointer == "/entry"
    assert "leaves the extension directory" in record.problem.reason


def test_any_symlink_leaving_the_extension_is_invalid(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    ext = make_extension(root, "linky")
    os.symlink("/etc/passwd", ext / "data.txt")
    record = by_id(discover([root]), "linky")
    assert not record.valid
    assert "data.txt" in record.problem.reason


def test_manifest_symlink_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    ext = make_extension(root, "linky")
    real = tmp_path / "real.json"
    real.write_text(json.dumps(proc_manifest("linky")))
    (ext / "manifest.json").unlink()
    os.symlink(real, ext / "manifest.json")
    record = by_id(discover([root]), "linky")
    assert not record.valid
    assert "cannot open" in record.problem.reason


def test_duplicate_id_cannot_shadow_a_bundled_extension(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root, "markdown-renderer", proc_manifest("markdown-renderer"))
    records = [r for r in discover([root]) if r.id == "markdown-renderer"]
    assert [r.origin for r in records] == ["bundled", "external"]
    assert records[0].valid
    assert not records[1].valid
    assert "duplicate id" in records[1].problem.reason


def test_duplicate_between_two_external_roots(tmp_path: Path) -> None:
    make_extension(tmp_path / "a", "twin")
    make_extension(tmp_path / "b", "twin")
    records = [r for r in discover([tmp_path / "a", tmp_path / "b"]) if r.id == "twin"]
    assert [r.valid for r in records] == [True, False]


def test_kind_directories_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_extension(root / "ui", "proc-in-ui")
    make_extension(root / "proc", "fine")
    records = discover([root])
    assert by_id(records, "fine").valid
    assert by_id(records, "proc-in-ui").problem.pointer == "/kind"


def test_missing_root_is_not_an_error(tmp_path: Path) -> None:
    records = discover([tmp_path / "does-not-exist"])
    assert {r.origin for r in records} == {"bundled"}
