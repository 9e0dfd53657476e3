"""Policies: which capabilities extensions may use and within which limits.

A policy is deny-by-default: a capability not listed is refused, a limit not given takes the
conservative default below. `*` grants every capability and is accepted only in a policy
named `dev`, so that a renamed copy of the dev policy cannot silently open everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from kumix.bundled import BUNDLED_DIR
from kumix.core.errors import InvalidPolicy
from kumix.extensions.jsondoc import (
    DocumentError,
    DocumentProblem,
    load_schema,
    parse_document,
    read_document_bytes,
    schema_problem,
    shipped_and_valid,
)

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any, Literal

    # Imported where documents are validated: its import alone costs a command-line
    # start (`kumix --version`) ~90 ms.
    import jsonschema

    # A policy judges manifests but never reads one: `kumix policy show` and `doctor` load
    # the policy without the manifest module (four dataclasses and its patterns, ~7 ms).
    from kumix.extensions.manifest import Manifest

BUNDLED_POLICIES = ("strict", "dev")
DEFAULT_POLICY = "strict"
WILDCARD = "*"
FORBIDDEN_SANDBOX_FLAGS = frozenset({"allow-same-origin"})
"""allow-same-origin next to allow-scripts lets a frame remove its own sandbox."""


@dataclass(frozen=True)
class ProcLimits:
    """Limits for proc workers. Defaults are the strict values, used when a key is absent."""

    default_timeout_ms: int = 5_000
    max_timeout_ms: int = 30_000
    max_input_bytes: int = 1_048_576
    max_output_bytes: int = 4_194_304
    max_memory_mb: int = 512
    max_cpu_seconds: int = 60
    max_concurrency: int = 4
    max_queue: int = 64
    max_log_bytes: int = 1_048_576
    max_crashes: int = 5
    crash_window_seconds: int = 60
    require_confinement: bool = True
    allow_without_namespaces: bool = False
    """With requireConfinement: still start workers where the kernel gives no (unprivileged) user,
    mount, IPC and network namespaces, on the other layers alone (docs/confinement.md)."""
    max_tasks_per_worker: int = 32
    """Threads a worker may hold at once (it cannot fork): RLIMIT_NPROC in its own user namespace.
    The runtime needs 1 to 3 (main, asyncio's executor, wasmtime's epoch thread); an extension that
    starts more fails to start the one over the limit, in its own call."""
    spare_workers: int = 1
    """Workers started ahead of need, already confined, to take over at once when a worker
    crashes (ready after a crash in a few ms instead of a fork and confinement). They count
    against max_concurrency, so against memory: a quiet extension keeps two processes."""


@dataclass(frozen=True)
class UiLimits:
    sandbox: tuple[str, ...] = ("allow-scripts",)
    connect_src: tuple[str, ...] = ()
    max_message_bytes: int = 65_536
    max_messages_per_second: int = 50


@dataclass(frozen=True)
class Decision:
    """Whether an extension may run, and why not: the first missing capability is named."""

    allowed: bool
    reason: str
    code: Literal["ok", "policy_denied", "not_granted"] = "ok"
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    capabilities: frozenset[str]
    source: str
    description: str = ""
    plugin_origins: tuple[str, ...] | None = None
    proc: ProcLimits = field(default_factory=ProcLimits)
    ui: UiLimits = field(default_factory=UiLimits)
    net_allowed_hosts: tuple[str, ...] = ()

    @property
    def allows_everything(self) -> bool:
        return WILDCARD in self.capabilities

    def allows(self, capability: str) -> bool:
        return self.allows_everything or capability in self.capabilities

    def effective_timeout_ms(self, manifest: Manifest) -> int:
        """min(manifest timeoutMs or the policy default, the policy maximum)."""
        wanted = manifest.timeout_ms if manifest.timeout_ms is not None else self.proc.default_timeout_ms
        return min(wanted, self.proc.max_timeout_ms)

    def decide(
        self,
        manifest: Manifest,
        *,
        external: bool = False,
        granted: frozenset[str] = frozenset(),
    ) -> Decision:
        """Allowed only if the policy allows every capability and, for an external
        extension, the user granted every one of them too."""
        denied = tuple(cap for cap in manifest.capabilities if not self.allows(cap))
        if denied:
            return Decision(
                False,
                f"policy {self.name!r} does not allow capability {denied[0]!r}"
                + (f" (and {len(denied) - 1} more)" if len(denied) > 1 else ""),
                "policy_denied",
                denied,
            )
        if external:
            ungranted = tuple(cap for cap in manifest.capabilities if cap not in granted)
            if ungranted:
                return Decision(
                    False,
                    f"external extension: capability {ungranted[0]!r} is not granted",
                    "not_granted",
                    ungranted,
                )
        return Decision(True, f"policy {self.name!r} allows every capability it declares")

    def to_json(self) -> dict[str, Any]:
        p, u = self.proc, self.ui
        return {
            "name": self.name,
            "description": self.description,
            "capabilities": sorted(self.capabilities),
            "pluginOrigins": None if self.plugin_origins is None else list(self.plugin_origins),
            "proc": {
                "defaultTimeoutMs": p.default_timeout_ms,
                "maxTimeoutMs": p.max_timeout_ms,
                "maxInputBytes": p.max_input_bytes,
                "maxOutputBytes": p.max_output_bytes,
                "maxMemoryMb": p.max_memory_mb,
                "maxCpuSeconds": p.max_cpu_seconds,
                "maxConcurrency": p.max_concurrency,
                "maxQueue": p.max_queue,
                "maxLogBytes": p.max_log_bytes,
                "maxCrashes": p.max_crashes,
                "crashWindowSeconds": p.crash_window_seconds,
                "requireConfinement": p.require_confinement,
                "allowWithoutNamespaces": p.allow_without_namespaces,
                "maxTasksPerWorker": p.max_tasks_per_worker,
                "spareWorkers": p.spare_workers,
            },
            "ui": {
                "sandbox": list(u.sandbox),
                "connectSrc": list(u.connect_src),
                "maxMessageBytes": u.max_message_bytes,
                "maxMessagesPerSecond": u.max_messages_per_second,
            },
            "net": {"allowedHosts": list(self.net_allowed_hosts)},
        }


@cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    schema = load_schema("policy.schema.json")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def _invalid(problem: DocumentProblem) -> InvalidPolicy:
    return InvalidPolicy(str(problem), details=problem.as_dict())


_PROC_KEYS = {
    "defaultTimeoutMs": "default_timeout_ms",
    "maxTimeoutMs": "max_timeout_ms",
    "maxInputBytes": "max_input_bytes",
    "maxOutputBytes": "max_output_bytes",
    "maxMemoryMb": "max_memory_mb",
    "maxCpuSeconds": "max_cpu_seconds",
    "maxConcurrency": "max_concurrency",
    "maxQueue": "max_queue",
    "maxLogBytes": "max_log_bytes",
    "maxCrashes": "max_crashes",
    "crashWindowSeconds": "crash_window_seconds",
    "requireConfinement": "require_confinement",
    "allowWithoutNamespaces": "allow_without_namespaces",
    "maxTasksPerWorker": "max_tasks_per_worker",
    "spareWorkers": "spare_workers",
}


def policy_from_document(doc: Any, *, display: str) -> Policy:
    problem = None if shipped_and_valid("policy.schema.json", doc) else schema_problem(_validator(), doc, display)
    if problem is not None:
        raise _invalid(problem)
    assert isinstance(doc, dict)
    name: str = doc["name"]
    caps: list[str] = doc["capabilities"]
    if WILDCARD in caps and name != "dev":
        index = caps.index(WILDCARD)
        raise _invalid(
            DocumentProblem(display, f"/capabilities/{index}", "'*' is only accepted in a policy named 'dev'")
        )
    proc_doc = doc.get("proc", {})
    proc = ProcLimits(**{_PROC_KEYS[k]: v for k, v in proc_doc.items()})
    if proc.default_timeout_ms > proc.max_timeout_ms:
        raise _invalid(
            DocumentProblem(display, "/proc/defaultTimeoutMs", "defaultTimeoutMs is larger than maxTimeoutMs")
        )
    ui_doc = doc.get("ui", {})
    sandbox = tuple(ui_doc.get("sandbox", UiLimits.sandbox))
    for index, flag in enumerate(sandbox):
        if flag in FORBIDDEN_SANDBOX_FLAGS:
            raise _invalid(
                DocumentProblem(
                    display,
                    f"/ui/sandbox/{index}",
                    f"{flag} is always refused: it would let a frame escape its sandbox",
                )
            )
    ui = UiLimits(
        sandbox=sandbox,
        connect_src=tuple(ui_doc.get("connectSrc", ())),
        max_message_bytes=ui_doc.get("maxMessageBytes", UiLimits.max_message_bytes),
        max_messages_per_second=ui_doc.get("maxMessagesPerSecond", UiLimits.max_messages_per_second),
    )
    origins = doc.get("pluginOrigins")
    return Policy(
        name=name,
        capabilities=frozenset(caps),
        source=display,
        description=doc.get("description", ""),
        plugin_origins=None if origins is None else tuple(origins),
        proc=proc,
        ui=ui,
        net_allowed_hosts=tuple(doc.get("net", {}).get("allowedHosts", ())),
    )


def parse_policy(data: bytes, *, display: str) -> Policy:
    try:
        doc = parse_document(data, display=display)
    except DocumentError as exc:
        raise _invalid(exc.problem) from None
    return policy_from_document(doc, display=display)


def load_policy(spec: str) -> Policy:
    """`spec` is a bundled policy name (`strict`, `dev`) or a path to a policy file."""
    if spec in BUNDLED_POLICIES:
        data = (BUNDLED_DIR / "policies" / f"{spec}.json").read_bytes()
        return parse_policy(data, display=f"<bundled policy {spec}>")
    path = Path(spec)
    try:
        data = read_document_bytes(path, display=spec)
    except DocumentError as exc:
        raise _invalid(exc.problem) from None
    return parse_policy(data, display=spec)
