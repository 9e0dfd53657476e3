"""The two sides of the proc wire stay apart: the host never loads the worker's bootstrap or
the authors' SDK; both share only the wire modules."""

from __future__ import annotations

import json
import subprocess
import sys

HOST_ENTRY_POINTS = ("kumix.extensions.proc.host", "kumix.extensions.proc.session", "kumix.extensions.proc.spawner")
WORKER_SIDE = ("kumix.sdk", "kumix.extensions.proc.worker", "kumix.extensions.proc.forkserver")


def loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-I", "-c", code], check=True, capture_output=True, text=True).stdout
    return list(json.loads(out))


def test_host_side_imports_neither_the_sdk_nor_the_worker_bootstrap() -> None:
    for entry in HOST_ENTRY_POINTS:
        loaded = loaded_after_import(entry)
        leaked = [m for m in loaded if any(m == w or m.startswith(w + ".") for w in WORKER_SIDE)]
        assert leaked == [], f"{entry} pulls in worker-side modules: {leaked}"


def test_the_check_sees_worker_side_modules_when_they_are_imported() -> None:
    # The same probe on the worker bootstrap must find the SDK, or the test above proves nothing.
    assert "kumix.sdk.proc" in loaded_after_import("kumix.extensions.proc.worker")
