"""The confinement layers and the report of one confinement: names and data only.

A module of its own so `kumix doctor` (the parent side of its probe) and the host can read
a report without importing the confinement machinery (pyprctl, the seccomp compiler,
Landlock), which only confined processes run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any

LAYERS: tuple[str, ...] = ("no_new_privs", "unprivileged", "namespaces", "task_limit", "landlock", "seccomp")
"""Every layer a confined worker must have. `unprivileged`: no capability left and, when the
host is root, the extension's own non-root uid/gid. `namespaces`: own user (non-root host, and
root host after the uid switch), mount (a root holding only the runtime, the extension and its
scratch directory), IPC, network and PID (the worker is pid 1) namespaces. `task_limit`: RLIMIT_NPROC counting this
worker's tasks (in its own user namespace) or its extension uid's."""

WEAKER_WITHOUT_NAMESPACES: frozenset[str] = frozenset({"namespaces"})
"""What the policy value `proc.allowWithoutNamespaces` accepts missing: the namespaces layer
only. Every other layer stays required."""


@dataclass(frozen=True)
class ConfinementReport:
    layers: dict[str, bool] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    """Why a layer is off (missing kernel feature, simulated, failed verification …)."""
    details: dict[str, Any] = field(default_factory=dict)
    extension_dir: Path | None = None
    """How the worker reaches its extension directory from now on."""
    scratch_dir: Path | None = None
    """How the worker reaches its scratch directory from now on (None without `fs.scratch`)."""
    accepted_missing: tuple[str, ...] = ()
    """Layers the policy accepts missing (`proc.allowWithoutNamespaces`)."""

    @property
    def confined(self) -> bool:
        return bool(self.layers) and all(on or name in self.accepted_missing for name, on in self.layers.items())

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name, on in self.layers.items() if not on)

    def warning(self) -> str | None:
        """The line to show on every start without every layer, or None when all hold."""
        if not self.missing:
            return None
        parts = [f"{name} ({self.problems.get(name, 'unavailable')})" for name in self.missing]
        return "proc worker runs without OS confinement layers: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "confined": self.confined,
            "layers": dict(self.layers),
            "accepted_missing": list(self.accepted_missing),
            "problems": dict(self.problems),
            "details": _jsonable(self.details),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
