"""`kumix policy check` shows each UI extension's network egress: what its frame may reach."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_kumix
from tests.governance_fixtures import write_policy
from tests.ui_fixtures import make_ui_extension


def test_policy_check_shows_granted_and_refused_egress(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    make_ui_extension(root, "net", "<p>x</p>", capabilities=[], ui={"connectSrc": [
        {"source": "https://api.github.com", "reason": "issue titles"},
        {"source": "https://tracker.example", "reason": "analytics"},
    ]})
    policy = write_policy(tmp_path / "gh.json", name="gh", capabilities=[],
                          ui={"connectSrc": ["https://api.github.com"]})
    args = ("--data-dir", str(data_dir), "--extensions-dir", str(root), "--policy", str(policy), "policy", "check")
    result = run_kumix(*args, "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)["extensions"]}
    assert rows["net"]["egress"]["connectSrc"] == [{"source": "https://api.github.com", "reason": "issue titles"}]
    assert rows["net"]["egress"]["refused"] == [{"source": "https://tracker.example", "reason": "analytics"}]
    assert "egress" not in rows["markdown-renderer"]
    table = run_kumix(*args)
    line = next(x for x in table.stdout.splitlines() if x.startswith("net "))
    assert "https://api.github.com (refused: https://tracker.example)" in line
