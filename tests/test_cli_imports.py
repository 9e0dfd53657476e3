"""Each command imports what it uses and nothing heavier: the modules a real `python -m kumix`
run has loaded when it exits, per command (start-up cost is paid per command; issue 11 pins
`--version`, `ext list`, `policy show` and `doctor` within 100 ms of `python -c pass`).

Not a timing test: a command that starts importing the HTML frame builder, nio, asyncio,
jsonschema, wasmtime or the confinement bindings again fails here, whatever the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.governance_fixtures import make_extension, proc_manifest

RECORD_MODULES = """
import atexit, os, sys, runpy
out, args = sys.argv[1], sys.argv[2:]
pid = os.getpid()

def record():
    if os.getpid() == pid:  # not in a child that exits through atexit
        with open(out, "w") as f:
            f.write("\\n".join(sorted(sys.modules)))

atexit.register(record)
sys.argv = ["kumix", *args]
runpy.run_module("kumix", run_name="__main__", alter_sys=True)
"""

MATRIX = ("nio", "aiohttp", "vodozemac", "argon2", "keyring", "kumix.matrix", "kumix.app.matrix_session")
FRAME_BUILDER = ("html5lib", "kumix.app.ui_frames", "kumix.extensions.ui.frame_document",
                 "kumix.extensions.ui.html_document", "kumix.extensions.ui.bridge_session")
CONFINEMENT = ("pyprctl", "landlockpy", "pyseccomp", "kumix.extensions.proc.confinement",
               "kumix.extensions.proc.privileges", "kumix.extensions.proc.landlock_rules",
               "kumix.extensions.proc.seccomp_filter", "kumix.extensions.proc.namespaces")
EXTENSION_HOST = ("kumix.extensions.proc.host", "kumix.extensions.proc.session", "kumix.extensions.proc.launch",
                  "msgspec", "uvloop", "wasmtime", "kumix.extensions.wasm")
WEB = ("starlette", "uvicorn", "kumix.web")
VALIDATION = ("jsonschema",)
"""Bundled manifests and policies are known valid by digest; only other documents need it."""
EVENT_LOOP = ("asyncio",)
RESOURCES = ("importlib.resources",)
MODELS = ("kumix.core.models", "kumix.app.events", "kumix.core.outbox")
STORE = ("sqlite3", "kumix.store")
OPENSSL = ("hashlib", "_hashlib")
"""The digests of shipped documents are computed by the interpreter's own SHA-256."""
TYPING = ("typing",)
"""The modules of these commands use typing's names in annotations only (TYPE_CHECKING = False)."""

EVERYTHING_HEAVY = MATRIX + FRAME_BUILDER + CONFINEMENT + EXTENSION_HOST + WEB + VALIDATION + EVENT_LOOP + RESOURCES

COMMAND_LINE = ("argparse", "typing", "kumix.cli.main", "kumix.cli.early_launch")
"""`kumix --version` is answered by the entry point, before the command line is parsed."""

NOT_IMPORTED = {
    ("--version",): EVERYTHING_HEAVY + MODELS + STORE + COMMAND_LINE + ("kumix.extensions", "kumix.app", "dataclasses"),
    ("ext", "list"): EVERYTHING_HEAVY + MODELS + OPENSSL + TYPING,
    ("ext", "info", "markdown-renderer"): EVERYTHING_HEAVY + MODELS + OPENSSL,
    # The policy alone: no manifest is read, so neither is the manifest module.
    ("policy", "show"): EVERYTHING_HEAVY + MODELS + STORE + OPENSSL + TYPING + (
        "kumix.extensions.ui", "kumix.extensions.registry", "kumix.extensions.manifest"),
    ("policy", "check"): EVERYTHING_HEAVY + MODELS + OPENSSL,
    # The probe child imports the confinement code and confines itself; the command does not.
    ("doctor",): EVERYTHING_HEAVY + MODELS + STORE + OPENSSL + TYPING + ("kumix.extensions.registry",
                                                                "kumix.extensions.manifest"),
}


def _imported(name: str, modules: set[str]) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def modules_after(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules of the command's own process when it exits (not of the children it forks)."""
    out = tmp_path / "modules.txt"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}
    full_env["KUMIX_DATA_DIR"] = str(tmp_path / "data")
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", RECORD_MODULES, str(out), *argv], capture_output=True, text=True,
                          env=full_env, timeout=120, check=False)
    assert out.exists(), done.stderr
    return set(out.read_text().split())


@pytest.mark.parametrize("argv", list(NOT_IMPORTED), ids=" ".join)
def test_a_local_command_imports_nothing_it_does_not_use(tmp_path: Path, argv: tuple[str, ...]) -> None:
    modules = modules_after(tmp_path, *argv)
    # The record is of a real run (`--version` is answered before the command line code loads).
    assert ("kumix.cli.entry" if argv == ("--version",) else "kumix.cli.main") in modules
    assert sorted(name for name in NOT_IMPORTED[argv] if _imported(name, modules)) == []


def test_the_recording_sees_what_a_command_imports(tmp_path: Path) -> None:
    """The same recording finds the heavy modules where they are used: a Matrix command loads
    nio, `ext list` the store, `doctor` the probe launcher (what the pins above rule out is
    therefore really absent, not unseen)."""
    assert _imported("nio", modules_after(tmp_path, "whoami"))
    assert {"sqlite3", "kumix.extensions.registry"} <= modules_after(tmp_path, "ext", "list")
    assert "kumix.extensions.proc.machine_probe" in modules_after(tmp_path, "doctor")


def test_matrix_commands_pay_only_for_the_matrix_side(tmp_path: Path) -> None:
    """A Matrix command loads nio and the store, not the frame builder, the confinement
    bindings, the extension host (started on the first markdown render only) or the web server."""
    modules = modules_after(tmp_path, "whoami")
    assert _imported("nio", modules)
    unused = FRAME_BUILDER + CONFINEMENT + EXTENSION_HOST + WEB
    assert sorted(name for name in unused if _imported(name, modules)) == []


def test_an_external_manifest_is_still_validated_with_jsonschema(tmp_path: Path) -> None:
    """Only documents identical to shipped ones skip the schema: an external extension's
    manifest is judged by jsonschema in `ext list`, as before."""
    make_extension(tmp_path / "ext", "outside", proc_manifest("outside"))
    modules = modules_after(tmp_path, "--extensions-dir", str(tmp_path / "ext"), "ext", "list")
    assert "jsonschema" in modules
