"""Run one attack of the hostile fixture in a forked child, behind chosen confinement layers.

Modes:
- "none": no confinement at all: the baseline that shows an attack really works here (we run
  as root, so a refusal in this mode would be worthless as evidence).
- "full": `confine_worker` with `required=True`, exactly as the worker does (extension id
  "hostile", so a root host gives it that extension's own uid).
- "weaker": "full" on a machine without namespaces, accepted by the policy value
  `proc.allowWithoutNamespaces` (namespaces simulated unavailable): every other layer.
- "namespaces": the worker's own user/mount/IPC/network/PID namespaces alone (still root when the
  tests run as root), to show what the view itself hides.
- "landlock" / "seccomp" / "unprivileged": one layer alone (plus no_new_privs, which the kernel
  demands for the first two), to show *which* mechanism stops an attack, not merely that
  something does.

The attack module is loaded after confinement, the way a worker imports its entry file, from
the path the report says is reachable; a parameter string may name the scratch directory as
`{scratch}`, which is replaced by the path the worker reaches it by (as an extension reads it
from its worker context). The answer travels over a pipe as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumix.extensions.proc import (
    hygiene,
    landlock_rules,
    namespaces,
    pid_namespace,
    privileges,
    runtime_access,
    seccomp_filter,
)
from kumix.extensions.proc.confinement import ConfinementSpec, confine_worker

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "confinement"
HARNESS_TIMEOUT_S = 60.0
"""Only a hang ends here; attacks finish in milliseconds or hit a CPU rlimit of a second."""

MODES = ("none", "full", "weaker", "namespaces", "landlock", "seccomp", "unprivileged")


@dataclass
class ChildResult:
    answer: dict[str, Any] | None
    """The attack's outcome document, or None when the child died without answering."""
    status: int
    """Raw wait status of the child."""
    report: dict[str, Any] | None = None

    @property
    def outcome(self) -> str | None:
        return None if self.answer is None else self.answer["outcome"]

    @property
    def errno(self) -> str | None:
        return None if self.answer is None else self.answer.get("errno")

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None


def _apply(mode: str, ext_dir: Path, scratch: Path | None) -> tuple[Path, Path | None, dict[str, Any] | None]:
    """Apply `mode`; return how the extension and scratch directories are reached now."""
    if mode == "none":
        return ext_dir, scratch, None
    if mode in ("full", "weaker"):
        weaker = mode == "weaker"
        report = confine_worker(ConfinementSpec(
            extension_dir=ext_dir, scratch_dir=scratch, required=True, extension_id="hostile",
            simulate_unavailable=frozenset({"namespaces"}) if weaker else frozenset(),
            accept_without_namespaces=weaker,
        ))
        assert report.confined, report
        assert report.extension_dir is not None
        return report.extension_dir, report.scratch_dir, report.to_json()
    if mode == "landlock":
        read = [ext_dir.resolve(), *runtime_access.python_runtime_paths()]
        prepared = landlock_rules.prepare(read, [scratch.resolve()] if scratch else [])
        privileges.set_no_new_privs()
        prepared.enforce()
        return ext_dir, scratch, None
    if mode == "namespaces":
        read = [ext_dir.resolve(), *runtime_access.python_runtime_paths()]
        exposures = [namespaces.Exposure(p) for p in read]
        if scratch is not None:
            exposures.append(namespaces.Exposure(scratch.resolve(), writable=True))
        # pid 1 of its own PID namespace (with the user namespace on a non-root host); the parent
        # stays behind and ends the way this child does.
        namespaces.enter_pid_namespace(new_user_namespace=not privileges.running_as_root())
        hygiene.die_with_parent(0, pid_namespace.become_pid_one(None))
        namespaces.enter(exposures, new_user_namespace=False)
        return ext_dir, scratch, None
    if mode == "seccomp":
        seccomp_filter.install()
        return ext_dir, scratch, None
    if mode == "unprivileged":
        fds = runtime_access.open_traversal_fds(
            [ext_dir.resolve(), *runtime_access.python_runtime_paths()], privileges.NOBODY_ID, privileges.NOBODY_ID
        )
        privileges.switch_to_unprivileged(privileges.NOBODY_ID, privileges.NOBODY_ID)
        runtime_access.redirect_imports(fds)
        return fds.reach(ext_dir.resolve()), scratch and fds.reach(scratch.resolve()), None
    raise ValueError(mode)


def run_attack(
    attack: str,
    params: dict[str, Any] | None = None,
    *,
    mode: str,
    ext_dir: Path | None = None,
    scratch: Path | None = None,
    rlimits: dict[int, int] | None = None,
) -> ChildResult:
    ext_dir = ext_dir or FIXTURES / "hostile"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            os.setpgid(0, 0)
            for limit, value in (rlimits or {}).items():
                resource.setrlimit(limit, (value, value))
            reachable, scratch_now, report = _apply(mode, ext_dir, scratch)
            # Like an extension that finds its scratch directory in its worker context.
            params = {k: v.replace("{scratch}", str(scratch_now)) if isinstance(v, str) else v
                      for k, v in (params or {}).items()}
            spec = importlib.util.spec_from_file_location("hostile_attacks", reachable / "attacks.py")
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            answer = module.outcome(attack, params)
            os.write(write_end, json.dumps({"answer": answer, "report": report}).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"setup_error": f"{type(exc).__name__}: {exc}"}).encode())
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + HARNESS_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.killpg(pid, signal.SIGKILL)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return ChildResult(None, status)
    doc = json.loads(b"".join(chunks))
    if "setup_error" in doc:
        raise AssertionError(f"harness child could not set up mode {mode!r}: {doc['setup_error']}")
    return ChildResult(doc["answer"], status, doc["report"])
