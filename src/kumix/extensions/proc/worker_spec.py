"""What the host asks the fork server for: one extension's worker, described as JSON.

The host side (`session.py`, `spawner.py`) builds it and the worker side (`forkserver.py`,
`worker.py`) reads it; it lives apart from both so the host never imports the worker's
bootstrap (nor, through it, the authors' SDK).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a forked child needs to become one extension's worker (sent as JSON)."""

    extension_id: str
    extension_dir: str
    entry: str
    manifest: dict[str, Any]
    max_memory_mb: int
    max_cpu_seconds: int
    max_log_bytes: int
    max_input_bytes: int
    max_output_bytes: int
    require_confinement: bool
    scratch_dir: str | None = None
    max_tasks: int = 32
    """The policy's proc.maxTasksPerWorker."""
    allow_without_namespaces: bool = False
    """The policy's proc.allowWithoutNamespaces."""
    preload: tuple[str, ...] = ()
    """Modules of preload.PRELOAD_MODULES the entry file imports: the fork server imports those
    it has not yet preloaded before it forks this worker (it ignores any other name)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> WorkerSpec:
        return cls(**{**doc, "preload": tuple(doc.get("preload", ()))})
