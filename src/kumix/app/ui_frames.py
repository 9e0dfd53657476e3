"""UI frame use cases: mount a UI extension in a room, route its bridge, unload it.

The web server calls these; it never builds a frame or decides a capability itself. Each
mount gets a fresh bridge token (`widgetId`, 128 bits from `secrets`) that is never handed
out twice in this process, and its own BridgeSession, which decides every request again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kumix.app.extensions import ExtensionService, ExtensionStatus
from kumix.app.frame_egress import egress_summary, frame_egress
from kumix.core.errors import BadRequest, KumixError, NotFound, PolicyDenied
from kumix.extensions.manifest import Manifest
from kumix.extensions.policy import Policy
from kumix.extensions.ui.bootstrap import BootstrapConfig
from kumix.extensions.ui.bridge_session import (
    AskUser,
    BridgeSession,
    Effect,
    FrameRights,
    Perform,
    RememberSendApproval,
    Reply,
    Unload,
)
from kumix.extensions.ui.capabilities import UI_CAPABILITIES
from kumix.extensions.ui.frame_document import FrameDocument, build_frame
from kumix.store.ui_send_approvals import SendApprovalStore

__all__ = ["AskUser", "BridgeActions", "Effect", "MountedFrame", "Reply", "UiFrames", "Unload", "egress_summary",
           "frame_egress"]
"""The effects a front end acts on are re-exported here: front ends import only `kumix.app`."""

TOKEN_BYTES = 16
"""128 bits: the bridge token is the only thing that tells one frame's messages from another's."""
MAX_MOUNTED = 64
"""Frames mounted at once in one server; each holds a srcdoc and a session."""


@dataclass(frozen=True)
class MountedFrame:
    widget_id: str
    extension_id: str
    room_id: str
    document: FrameDocument
    session: BridgeSession

    def to_json(self) -> dict[str, Any]:
        """What the host page needs to create the iframe."""
        doc = self.document
        return {
            "widgetId": self.widget_id,
            "extensionId": self.extension_id,
            "roomId": self.room_id,
            "srcdoc": doc.srcdoc,
            "sandbox": doc.sandbox,
            "referrerPolicy": doc.referrer_policy,
            "allow": doc.allow,
            "limits": {
                "maxMessageBytes": self.session.max_message_bytes,
                "maxMessagesPerSecond": self.session.max_messages_per_second,
            },
        }


@dataclass(frozen=True)
class _MountPlan:
    """What a mount decided before the document is built (rights, token, bootstrap)."""

    status: ExtensionStatus
    manifest: Manifest
    policy: Policy
    rights: FrameRights
    config: BootstrapConfig
    room_id: str
    always: bool

    def build_args(self, script_nonce: str) -> dict[str, Any]:
        return {"extension_dir": self.status.record.path, "manifest": self.manifest, "policy": self.policy,
                "config": self.config, "script_nonce": script_nonce}


class BridgeActions(Protocol):
    """What a frame's requests can make happen, carried out by the account's use cases
    (the web server wires these to `kumix.app` for the signed-in account)."""

    async def read_events(self, room_id: str, event_type: str, msgtype: str | None,
                          limit: int) -> list[Mapping[str, Any]]: ...
    async def send_event(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str: ...
    async def navigate(self, room_link: str) -> None: ...
    async def theme_tokens(self) -> Mapping[str, Any]: ...
    async def proc_call(self, extension_id: str, method: str, params: dict[str, Any]) -> Any: ...


def _source_path(status: ExtensionStatus) -> str | None:
    return str(status.record.path.resolve()) if status.record.external else None


class UiFrames:
    def __init__(self, extensions: ExtensionService, approvals: SendApprovalStore | None = None) -> None:
        self._extensions = extensions
        self._approvals = approvals
        self._mounted: dict[str, MountedFrame] = {}
        self._issued: set[str] = set()

    def _new_token(self) -> str:
        while True:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            if token not in self._issued:
                self._issued.add(token)
                return token

    def mount(
        self,
        extension_id: str,
        *,
        room_id: str,
        host_origin: str,
        script_nonce: str,
        theme: Mapping[str, str] | None = None,
        language: str = "en",
    ) -> MountedFrame:
        plan = self._plan(extension_id, room_id=room_id, host_origin=host_origin, theme=theme, language=language)
        return self._register(plan, build_frame(**plan.build_args(script_nonce)))

    async def mount_async(
        self,
        extension_id: str,
        *,
        room_id: str,
        host_origin: str,
        script_nonce: str,
        theme: Mapping[str, str] | None = None,
        language: str = "en",
    ) -> MountedFrame:
        """`mount` for a server: the document is built in a worker thread (parsing a large
        extension page the first time takes seconds; the event loop keeps serving)."""
        plan = self._plan(extension_id, room_id=room_id, host_origin=host_origin, theme=theme, language=language)
        document = await asyncio.to_thread(build_frame, **plan.build_args(script_nonce))
        return self._register(plan, document)

    def _plan(self, extension_id: str, *, room_id: str, host_origin: str, theme: Mapping[str, str] | None,
              language: str) -> _MountPlan:
        if len(self._mounted) >= MAX_MOUNTED:
            raise BadRequest(f"{MAX_MOUNTED} frames are mounted already; unload one first")
        status = self._extensions.require_runnable(extension_id)
        manifest = status.manifest
        if manifest.kind != "ui":
            raise BadRequest(f"{extension_id!r} is a {manifest.kind} extension, not a UI extension")
        policy = self._extensions.policy
        declared = frozenset(manifest.capabilities) & UI_CAPABILITIES
        rights = FrameRights(
            declared=declared,
            allowed_by_policy=frozenset(c for c in declared if policy.allows(c)),
            granted=status.granted if status.record.external else None,
        )
        widget_id = self._new_token()
        config = BootstrapConfig(
            extension_id=extension_id,
            widget_id=widget_id,
            host_origin=host_origin,
            capabilities=sorted(c for c in declared if rights.missing(c) is None),
            theme=dict(theme or {}),
            language=language,
        )
        source = _source_path(status)
        always = self._approvals.always_allowed(extension_id, source) if self._approvals else False
        return _MountPlan(status, manifest, policy, rights, config, room_id, always)

    def _register(self, plan: _MountPlan, document: FrameDocument) -> MountedFrame:
        if len(self._mounted) >= MAX_MOUNTED:
            raise BadRequest(f"{MAX_MOUNTED} frames are mounted already; unload one first")
        widget_id = plan.config.widget_id
        session = BridgeSession(
            widget_id=widget_id,
            extension_id=plan.config.extension_id,
            room_id=plan.room_id,
            rights=plan.rights,
            max_message_bytes=plan.policy.ui.max_message_bytes,
            max_messages_per_second=plan.policy.ui.max_messages_per_second,
            send_always_allowed=plan.always,
        )
        frame = MountedFrame(widget_id, plan.config.extension_id, plan.room_id, document, session)
        self._mounted[widget_id] = frame
        return frame

    def get(self, widget_id: str) -> MountedFrame:
        frame = self._mounted.get(widget_id)
        if frame is None:
            raise NotFound("no mounted frame with that token")
        return frame

    def active_in(self, room_id: str) -> list[MountedFrame]:
        return [f for f in self._mounted.values() if f.room_id == room_id]

    def unload(self, widget_id: str) -> None:
        """Forget a frame; its token stays issued, so it is never given to another mount."""
        self._mounted.pop(widget_id, None)

    def remember(self, effects: list[Effect]) -> list[Effect]:
        """Persist what the session asks to keep ("allow for this extension")."""
        for effect in effects:
            if isinstance(effect, RememberSendApproval) and self._approvals is not None:
                status = self._extensions.get(effect.extension_id)
                self._approvals.allow_always(effect.extension_id, _source_path(status))
        return effects

    async def handle(self, widget_id: str, raw: str, now: float, actions: BridgeActions) -> list[Effect]:
        """One message the page forwarded for a frame. Returns what the page must do:
        `Reply` (post to that frame), `AskUser` (the confirmation dialog), `Unload`."""
        frame = self.get(widget_id)
        return await self._run(frame, frame.session.receive(raw, now), actions)

    async def answer(self, widget_id: str, request_id: str, *, approved: bool, always: bool,
                     actions: BridgeActions) -> list[Effect]:
        """The user's answer to an AskUser of that frame."""
        frame = self.get(widget_id)
        return await self._run(frame, frame.session.confirm(request_id, approved=approved, always=always), actions)

    async def _run(self, frame: MountedFrame, effects: list[Effect], actions: BridgeActions) -> list[Effect]:
        out: list[Effect] = []
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, Perform):
                try:
                    result = await self._perform(effect, actions)
                except KumixError as exc:
                    queue.extend(frame.session.complete(effect.request_id, exc))
                else:
                    queue.extend(frame.session.complete(effect.request_id, result))
            elif isinstance(effect, RememberSendApproval):
                self.remember([effect])
            else:
                if isinstance(effect, Unload):
                    self.unload(frame.widget_id)
                out.append(effect)
        return out

    async def _perform(self, effect: Perform, actions: BridgeActions) -> Mapping[str, Any]:
        p = effect.params
        if effect.action == "read_events":
            events = await actions.read_events(p["room_id"], p["type"], p.get("msgtype"), p["limit"])
            return {"events": list(events)}
        if effect.action == "send_event":
            event_id = await actions.send_event(p["room_id"], p["type"], p["content"])
            return {"room_id": p["room_id"], "event_id": event_id}
        if effect.action == "navigate":
            await actions.navigate(p["uri"])
            return {}
        if effect.action == "theme_tokens":
            return {"tokens": dict(await actions.theme_tokens())}
        # proc_call: the target must be runnable and its method's capability allowed, on
        # top of the frame's own proc.call.
        target = self._extensions.require_runnable(p["extension"])
        manifest = target.manifest
        if manifest.kind != "proc":
            raise BadRequest(f"{target.id!r} is not a proc extension")
        capability = manifest.capability_for(p["method"])
        if capability is None:
            raise NotFound(f"{target.id!r} has no method {p['method']!r}")
        if not self._extensions.policy.allows(capability):
            raise PolicyDenied(f"the policy does not allow capability {capability!r}",
                               details={"missing": [capability]})
        return {"result": await actions.proc_call(target.id, p["method"], dict(p["params"]))}

    def send_always_allowed(self, extension_id: str) -> bool:
        """Whether the user ticked "allow for this extension" (for the extensions page)."""
        if self._approvals is None:
            return False
        return self._approvals.always_allowed(extension_id, _source_path(self._extensions.get(extension_id)))

    def revoke_send_approval(self, extension_id: str) -> bool:
        for frame in self._mounted.values():
            if frame.extension_id == extension_id:
                frame.session.send_always_allowed = False
        return self._approvals.revoke(extension_id) if self._approvals is not None else False
