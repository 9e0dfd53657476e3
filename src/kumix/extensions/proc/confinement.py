"""OS-level confinement of a proc worker, applied in the worker before extension code loads.

Interface contract (the spawn path calls `confine_worker` exactly once, in the forked
worker, after its channel fds are in place and basic process hygiene — rlimits, closed fds,
allowlisted environment, PDEATHSIG, own process group — is done, and before the extension's
entry file is imported):

- `confine_worker(spec)` applies no_new_privs, the seccomp filter, Landlock and, when running
  as root, the switch to an unprivileged uid/gid. It returns a `ConfinementReport` saying
  which layers are active. When `spec.required` is true and a layer cannot be applied it
  raises `ConfinementUnavailable` (the worker then reports that code and exits).
- `probe()` says which layers this machine supports, for `kumix doctor`, without confining
  the calling process.

This module is a placeholder until the confinement layers are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kumix.core.errors import ConfinementUnavailable


@dataclass(frozen=True)
class ConfinementSpec:
    extension_dir: Path
    scratch_dir: Path | None
    """Writable private directory, only when the extension declares `fs.scratch`."""
    required: bool
    read_only_paths: tuple[Path, ...] = ()
    """Extra read-only paths (the Python runtime and its packages are added by this module)."""


@dataclass(frozen=True)
class ConfinementReport:
    layers: dict[str, bool] = field(default_factory=dict)

    @property
    def confined(self) -> bool:
        return bool(self.layers) and all(self.layers.values())


def probe() -> dict[str, bool]:
    return {"seccomp": False, "landlock": False, "no_new_privs": False, "uid_switch": False}


def confine_worker(spec: ConfinementSpec) -> ConfinementReport:
    if spec.required:
        raise ConfinementUnavailable("OS confinement is not implemented on this build")
    return ConfinementReport(dict.fromkeys(probe(), False))
