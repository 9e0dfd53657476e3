"""The figures `ext info` shows: call counts, errors and latencies every Kumix process
using this data directory saved when its sessions ended, with the limits that apply."""

from __future__ import annotations

from typing import Any

from kumix.app.extensions import ExtensionService, ExtensionStatus
from kumix.extensions.policy import Policy
from kumix.extensions.proc.stats import latency_summary


def figures_for(extensions: ExtensionService, policy: Policy, status: ExtensionStatus) -> dict[str, Any]:
    manifest = status.record.manifest
    if manifest is None or manifest.kind != "proc":
        return {}
    limits = policy.proc
    store = extensions.stats_store
    saved = store.load(status.id) if store is not None else {}
    figures: dict[str, Any] = {key: saved.get(key, 0) for key in ("calls", "ok", "timeouts", "crashes", "restarts")}
    figures["errors"] = dict(sorted(saved.get("errors", {}).items()))
    if saved.get("latencies"):
        figures["latency_ms"] = latency_summary(saved["latencies"])
    return {
        "scope": "saved by every kumix process using this data directory, when its sessions ended",
        **figures,
        "limits": {
            "timeoutMs": policy.effective_timeout_ms(manifest),
            "maxInputBytes": limits.max_input_bytes,
            "maxOutputBytes": limits.max_output_bytes,
            "maxMemoryMb": limits.max_memory_mb,
            "maxConcurrency": limits.max_concurrency,
            "maxQueue": limits.max_queue,
            "maxCrashes": limits.max_crashes,
            "crashWindowSeconds": limits.crash_window_seconds,
            "requireConfinement": limits.require_confinement,
        },
    }
