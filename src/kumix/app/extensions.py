"""Extension use cases: list, inspect, enable, disable, grant, validate.

State of an extension, in order of precedence:
- `invalid`: its directory or manifest is broken (with file, JSON pointer, reason);
- `denied`: the policy does not allow a capability, or (external) a capability is not granted;
- `enabled` / `disabled`: the user's choice, defaulting to enabled for bundled extensions
  and disabled for external ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kumix.core.errors import BadRequest, Disabled, InvalidManifest, NotFound, NotGranted, PolicyDenied
from kumix.extensions.manifest import MANIFEST_FILE, Manifest
from kumix.extensions.policy import Decision, Policy
from kumix.extensions.registry import ExtensionRecord, discover, inspect_extension_dir
from kumix.store.extension_state import ExtensionStateStore
from kumix.store.extension_stats import ExtensionStatsStore

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any, Literal

    State = Literal["enabled", "disabled", "denied", "invalid"]


@dataclass(frozen=True)
class ExtensionStatus:
    record: ExtensionRecord
    state: State
    reason: str
    decision: Decision | None
    granted: frozenset[str]
    effective_timeout_ms: int | None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def manifest(self) -> Manifest:
        if self.record.manifest is None:
            raise InvalidManifest(self.reason, details=self.record.problem.as_dict() if self.record.problem else None)
        return self.record.manifest

    def to_json(self) -> dict[str, Any]:
        rec = self.record
        doc: dict[str, Any] = {
            "id": rec.id,
            "state": self.state,
            "reason": self.reason,
            "origin": rec.origin,
            "path": str(rec.path),
        }
        if rec.manifest is not None:
            doc.update(
                name=rec.manifest.name,
                version=rec.manifest.version,
                kind=rec.manifest.kind,
                capabilities=list(rec.manifest.capabilities),
            )
        if rec.problem is not None:
            doc["problem"] = rec.problem.as_dict()
        if rec.external:
            doc["granted"] = sorted(self.granted)
        if self.effective_timeout_ms is not None:
            doc["effectiveTimeoutMs"] = self.effective_timeout_ms
        return doc


def _source_path(record: ExtensionRecord) -> str | None:
    """The resolved directory an external extension's grants and enable choice are bound
    to; None for a bundled extension, whose choices follow its id."""
    return str(record.path.resolve()) if record.external else None


class ExtensionService:
    def __init__(
        self,
        policy: Policy,
        store: ExtensionStateStore,
        extension_roots: tuple[Path, ...],
        stats_store: ExtensionStatsStore | None = None,
    ) -> None:
        self.policy = policy
        self.stats_store = stats_store
        """Where call figures of every process are saved; None keeps them in memory only."""
        self._store = store
        self._roots = extension_roots
        self._records: list[ExtensionRecord] | None = None

    def records(self) -> list[ExtensionRecord]:
        if self._records is None:
            self._records = discover(self._roots)
        return self._records

    def _status(self, record: ExtensionRecord) -> ExtensionStatus:
        if record.manifest is None:
            reason = str(record.problem) if record.problem else "invalid"
            return ExtensionStatus(record, "invalid", reason, None, frozenset(), None)
        manifest = record.manifest
        source = _source_path(record)
        granted = self._store.grants(record.id, source) if source is not None else frozenset()
        decision = self.policy.decide(manifest, external=record.external, granted=granted)
        timeout = self.policy.effective_timeout_ms(manifest) if manifest.kind == "proc" else None
        if not decision.allowed:
            return ExtensionStatus(record, "denied", decision.reason, decision, granted, timeout)
        choice = self._store.enabled_choice(record.id, source)
        enabled = choice if choice is not None else not record.external
        if enabled:
            reason = "enabled by the user" if choice else "bundled and allowed by the policy"
            return ExtensionStatus(record, "enabled", reason, decision, granted, timeout)
        reason = "disabled by the user" if choice is False else "external: disabled until the user enables it"
        return ExtensionStatus(record, "disabled", reason, decision, granted, timeout)

    def list(self) -> list[ExtensionStatus]:
        return [self._status(r) for r in self.records()]

    def get(self, extension_id: str) -> ExtensionStatus:
        matches = [r for r in self.records() if r.id == extension_id]
        if not matches:
            raise NotFound(f"no extension with id {extension_id!r}")
        # A duplicate is invalid, the first claim is the real one.
        return self._status(matches[0])

    def require_runnable(self, extension_id: str) -> ExtensionStatus:
        """The status of an extension that may run now, or the typed reason it may not."""
        status = self.get(extension_id)
        self._raise_unless_allowed(status)
        if status.state == "disabled":
            raise Disabled(f"extension {extension_id!r} is disabled")
        return status

    def _raise_unless_allowed(self, status: ExtensionStatus) -> None:
        if status.state == "invalid":
            problem = status.record.problem
            raise InvalidManifest(status.reason, details=problem.as_dict() if problem else None)
        if status.state == "denied" and status.decision is not None:
            details = {"missing": list(status.decision.missing)}
            if status.decision.code == "not_granted":
                raise NotGranted(status.reason, details=details)
            raise PolicyDenied(status.reason, details=details)

    def enable(self, extension_id: str) -> ExtensionStatus:
        status = self.get(extension_id)
        self._raise_unless_allowed(status)
        self._store.set_enabled(extension_id, True, _source_path(status.record))
        return self.get(extension_id)

    def disable(self, extension_id: str) -> ExtensionStatus:
        status = self.get(extension_id)
        if status.state == "invalid":
            self._raise_unless_allowed(status)
        self._store.set_enabled(extension_id, False, _source_path(status.record))
        return self.get(extension_id)

    def grant(self, extension_id: str, capability: str) -> ExtensionStatus:
        status = self.get(extension_id)
        if status.state == "invalid":
            self._raise_unless_allowed(status)
        if not status.record.external:
            raise BadRequest(f"{extension_id!r} is bundled: grants apply to external extensions only")
        if capability not in status.manifest.capabilities:
            raise BadRequest(f"{extension_id!r} does not declare capability {capability!r}")
        if not self.policy.allows(capability):
            # Same details as every policy_denied (docs/errors.md), so a script reads one shape.
            raise PolicyDenied(f"policy {self.policy.name!r} does not allow capability {capability!r}",
                               details={"missing": [capability]})
        self._store.grant(extension_id, capability, str(status.record.path.resolve()))
        return self.get(extension_id)


def validate_extension_dir(path: Path) -> ExtensionRecord:
    """`kumix ext validate PATH`: the same checks discovery applies, on one directory."""
    if not path.exists():
        raise NotFound(f"{path} does not exist")
    # Absolute (not resolved, so a symlinked directory is still judged as one): `.` or a
    # bare `manifest.json` would otherwise give the directory the empty name.
    path = path.absolute()
    if path.is_file():
        # Any other file would be judged as if its directory were meant, and the answer
        # would be about a manifest.json the user never named.
        if path.name != MANIFEST_FILE:
            raise BadRequest(
                f"{path} is not a {MANIFEST_FILE}: give an extension directory or its {MANIFEST_FILE}"
            )
        path = path.parent
    return inspect_extension_dir(path, origin="external", root=path.parent, expected_kind=None)
