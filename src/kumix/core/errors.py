"""The one error hierarchy of Kumix.

Every failure a user, a script or an extension can see is a `KumixError` carrying a
stable `code` string. The same codes travel over the CLI (`--json`), HTTP and the UI
bridge, so they never change meaning. Adapters map their library's errors onto these
classes at their edge; nothing above an adapter sees a foreign exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class KumixError(Exception):
    """Base of every Kumix error; `code` is stable and machine-readable."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(KumixError):
    """The extension, room, method or file asked for does not exist."""

    code = "not_found"


class InvalidManifest(KumixError):
    """An extension's manifest is unreadable or breaks the manifest schema."""

    code = "invalid_manifest"


class InvalidPolicy(KumixError):
    """A policy file is unreadable or breaks the policy schema."""

    code = "invalid_policy"


class Disabled(KumixError):
    """The extension exists but the user has not enabled it."""

    code = "disabled"


class PolicyDenied(KumixError):
    """The active policy does not allow a capability the extension needs."""

    code = "policy_denied"


class CapabilityNotDeclared(KumixError):
    """The extension asked for something its manifest does not declare."""

    code = "capability_not_declared"


class NotGranted(KumixError):
    """An external extension's capability has not been granted by the user."""

    code = "not_granted"


class InputTooLarge(KumixError):
    """A request is larger than the policy allows; it was never sent."""

    code = "input_too_large"


class OutputTooLarge(KumixError):
    """A reply was larger than the policy allows; reading stopped at the limit."""

    code = "output_too_large"


class CallTimeout(KumixError):
    """A call did not finish before its deadline."""

    code = "timeout"


class Crashed(KumixError):
    """The worker died or broke the protocol while the call was pending."""

    code = "crashed"


class Unavailable(KumixError):
    """The extension crashed too often recently, or is restarting; try later."""

    code = "unavailable"


class ProtocolError(KumixError):
    """A peer sent bytes that break the wire protocol."""

    code = "protocol_error"


class WasmRejected(KumixError):
    """A WASM module failed a loading rule (path, hash, imports, exports, limits)."""

    code = "wasm_rejected"


class WasmTrap(KumixError):
    """A WASM module trapped or broke the calling convention; its instance was discarded."""

    code = "wasm_trap"


class ResourceLimit(KumixError):
    """A worker hit a memory, CPU, fuel or file limit."""

    code = "resource_limit"


class ConfinementUnavailable(KumixError):
    """OS confinement is required by the policy but this machine cannot provide it."""

    code = "confinement_unavailable"


class BadRequest(KumixError):
    """The request itself is malformed (wrong params, bad JSON, bad arguments)."""

    code = "bad_request"


class Unauthorized(KumixError):
    """Missing or wrong credentials, session token or vault key."""

    code = "unauthorized"


class Forbidden(KumixError):
    """The homeserver refused an action for this account (not a member, no power level)."""

    code = "forbidden"


class ExtensionFailed(KumixError):
    """The extension's own code failed (its handler raised, or its entry file did not load)."""

    code = "extension_error"


class StateBusy(KumixError):
    """Local state is locked by another Kumix process for longer than we wait."""

    code = "state_busy"


class StateCorrupt(KumixError):
    """The state database cannot be read, or is newer than this Kumix; it is left untouched."""

    code = "state_corrupt"


# -- end-to-end encryption trust (cross-signing, verification, secret storage, backup) -------


class SignatureInvalid(KumixError):
    """A signature or MAC over keys does not verify: forged, corrupted or for another key."""

    code = "signature_invalid"


class VerificationFailed(KumixError):
    """A device or user verification was cancelled, mismatched or broke the protocol."""

    code = "verification_failed"


class WrongRecoveryKey(KumixError):
    """The recovery key or passphrase given does not open the account's secret storage."""

    code = "wrong_recovery_key"


class IdentityChanged(KumixError):
    """A verified user's cross-signing identity changed; it is not trusted until re-verified."""

    code = "identity_changed"


ALL_ERRORS: tuple[type[KumixError], ...] = (
    NotFound,
    InvalidManifest,
    InvalidPolicy,
    Disabled,
    PolicyDenied,
    CapabilityNotDeclared,
    NotGranted,
    InputTooLarge,
    OutputTooLarge,
    CallTimeout,
    Crashed,
    Unavailable,
    ProtocolError,
    WasmRejected,
    WasmTrap,
    ResourceLimit,
    ConfinementUnavailable,
    BadRequest,
    Unauthorized,
    Forbidden,
    ExtensionFailed,
    StateBusy,
    StateCorrupt,
    SignatureInvalid,
    VerificationFailed,
    WrongRecoveryKey,
    IdentityChanged,
)

_BY_CODE: dict[str, type[KumixError]] = {cls.code: cls for cls in ALL_ERRORS}


def error_from_code(code: str, message: str) -> KumixError:
    """Rebuild an error received over a wire; unknown codes become `protocol_error`."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ProtocolError(f"peer sent unknown error code {code[:64]!r}: {message[:200]}")
    return cls(message)
