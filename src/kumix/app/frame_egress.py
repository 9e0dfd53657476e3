"""What a UI extension's frame may reach over the network, as `kumix policy check` and the
grant dialog show it.

Apart from `ui_frames` (the mount use cases) because it needs only the policy and the
manifest: `policy check` must not pay for the frame builder (html5lib, the bridge session,
asyncio: ~150 ms of a command-line start) to print a few sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kumix.extensions.ui.frame_policy import FrameGrant, frame_grant

if TYPE_CHECKING:
    from kumix.app.extensions import ExtensionStatus
    from kumix.extensions.manifest import Manifest
    from kumix.extensions.policy import Policy


def frame_egress(policy: Policy, manifest: Manifest) -> FrameGrant:
    """What a UI extension's frame may reach (and what it asked for in vain), for
    `kumix policy check` and the grant dialog."""
    return frame_grant(policy, manifest)


def egress_summary(policy: Policy, status: ExtensionStatus) -> dict[str, Any] | None:
    """One UI extension's egress as JSON, or None for proc or invalid extensions."""
    manifest = status.record.manifest
    if manifest is None or manifest.kind != "ui":
        return None
    grant = frame_egress(policy, manifest)
    return {
        "connectSrc": [{"source": e.source, "reason": e.reason} for e in grant.egress],
        "refused": [{"source": c.source, "reason": c.reason} for c in grant.refused_egress],
        "sandbox": list(grant.sandbox),
    }
