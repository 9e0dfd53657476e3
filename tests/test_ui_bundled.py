"""The bundled UI extensions: valid, allowed by the strict policy, buildable into frame
documents, and mermaid exactly the pinned npm file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kumix.app.extensions import ExtensionService
from kumix.app.ui_frames import UiFrames
from kumix.extensions.policy import load_policy
from kumix.extensions.registry import bundled_root
from kumix.store.database import Database
from kumix.store.extension_state import ExtensionStateStore
from tests.ui_fixtures import NONCE

UI_ROOT = bundled_root() / "ui"
BUNDLED_UI = ("github-panel", "mermaid-viewer", "poll")


@pytest.fixture
def frames(tmp_path: Path) -> UiFrames:
    db = Database(tmp_path / "state.db")
    return UiFrames(ExtensionService(load_policy("strict"), ExtensionStateStore(db), ()))


@pytest.mark.parametrize("ext_id", BUNDLED_UI)
def test_bundled_ui_extension_is_enabled_under_strict_and_mounts(frames: UiFrames, ext_id: str) -> None:
    frame = frames.mount(ext_id, room_id="!r:localhost", host_origin="http://127.0.0.1:1", script_nonce=NONCE)
    assert frame.document.sandbox == "allow-scripts"
    assert frame.document.grant.egress == ()
    assert "connect-src 'none'" in frame.document.csp
    srcdoc = frame.document.srcdoc
    assert srcdoc.count(f'nonce="{NONCE}"') >= 3  # bootstrap, widget.js and the extension's own script


def test_mermaid_is_the_pinned_npm_file() -> None:
    lock = json.loads((UI_ROOT / "mermaid-viewer/vendor/vendor.lock.json").read_text())
    assert (lock["package"], lock["version"], lock["license"]) == ("mermaid", "11.17.2", "MIT")
    for entry in lock["files"]:
        data = (UI_ROOT / "mermaid-viewer" / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    vendored = {p.name for p in (UI_ROOT / "mermaid-viewer/vendor").iterdir()}
    assert vendored == {"mermaid.min.js", "vendor.lock.json", "LICENSE-mermaid.txt"}


def test_every_bundled_ui_extension_ships_the_same_widget_client() -> None:
    copies = {hashlib.sha256((UI_ROOT / ext / "widget.js").read_bytes()).hexdigest() for ext in BUNDLED_UI}
    assert len(copies) == 1


def test_mermaid_never_reaches_the_host_page() -> None:
    client = Path(__file__).resolve().parents[1] / "src/kumix/web/client"
    if client.exists():
        for path in client.rglob("*"):
            if path.is_file() and path.suffix in {".js", ".html", ".json"}:
                assert "mermaid.min.js" not in path.read_text(errors="replace"), path


def test_bootstrap_and_bundled_scripts_are_valid_javascript(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from kumix.extensions.ui.bootstrap import BootstrapConfig, bootstrap_script

    node = shutil.which("node")
    assert node is not None, "node is needed (Debian package nodejs)"
    boot = tmp_path / "bootstrap.js"
    boot.write_text(bootstrap_script(BootstrapConfig("x", "W" * 22, "http://127.0.0.1:1", ["theme.tokens"],
                                                     {"a": "</script>\u2028"}, "en")))
    scripts = [boot, *(p for ext in BUNDLED_UI for p in (UI_ROOT / ext).glob("*.js"))]
    for script in scripts:
        done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{script}: {done.stderr}"
