"""The client's view models, tested without a DOM by `node --test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_view_models_pass_node_test() -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the web client's tests (Debian package nodejs)"
    tests = sorted(str(p) for p in (ROOT / "tests/web_client/js").glob("*.test.js"))
    assert tests, "no node tests found"
    done = subprocess.run([node, "--test", "--test-reporter=dot", *tests], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
