"""The one error hierarchy of Kumix.

Every failure a user, a script or an extension can see is a `KumixError` carrying a
stable `code` string. The same codes travel over the CLI (`--json`), HTTP and the UI
bridge, so they never change meaning. Adapters map their library's errors onto these
classes at their edge; nothing above an adapter sees a foreign exception.

Classes are grouped by what a caller does about them (as httpx groups its errors), so a
front end catches a group instead of listing codes by hand:

- `ExtensionRefused`: the extension was not run (disabled, policy_denied, not_granted,
  capability_not_declared, reload_required, invalid_manifest); nothing to retry, the user
  changes a choice or the policy.
- `ExtensionFault`: the extension ran and failed (timeout, crashed, resource_limit,
  wasm_trap, extension_error, output_too_large).
- `Transient`: retry later, after `retry_after` seconds when known (`unavailable`: the
  homeserver is unreachable, rate-limited or answering 5xx, an extension's queue is full;
  `circuit_open`: an extension crashed too often and rests until its window passes).
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from typing import Any, ClassVar


class KumixError(Exception):
    """Base of every Kumix error; `code` is stable and machine-readable."""

    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False
    """Whether the same request may succeed later without anyone changing anything."""

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


class ExtensionRefused(KumixError):
    """Group: the extension was not run; a user's choice or the policy has to change first."""


class ExtensionFault(KumixError):
    """Group: the extension ran and failed (its worker, its code or its limits)."""


class Transient(KumixError):
    """Group: retry later. `retry_after` is the wait in seconds when the source said one
    (a homeserver's 429, an open crash circuit), else None: the caller's backoff decides."""

    retryable: ClassVar[bool] = True

    @property
    def retry_after(self) -> float | None:
        ms = self.details.get("retry_after_ms")
        return ms / 1000 if isinstance(ms, int | float) and ms >= 0 else None


class NotFound(KumixError):
    """The extension, room, method or file asked for does not exist."""

    code = "not_found"


class InvalidManifest(ExtensionRefused):
    """An extension's manifest is unreadable or breaks the manifest schema."""

    code = "invalid_manifest"


class InvalidPolicy(KumixError):
    """A policy file is unreadable or breaks the policy schema."""

    code = "invalid_policy"


class Disabled(ExtensionRefused):
    """The extension exists but the user has not enabled it."""

    code = "disabled"


class PolicyDenied(ExtensionRefused):
    """The active policy does not allow a capability the extension needs."""

    code = "policy_denied"


class CapabilityNotDeclared(ExtensionRefused):
    """The extension asked for something its manifest does not declare."""

    code = "capability_not_declared"


class NotGranted(ExtensionRefused):
    """An external extension's capability has not been granted by the user."""

    code = "not_granted"


class InputTooLarge(KumixError):
    """A request is larger than the policy allows; it was never sent."""

    code = "input_too_large"


class OutputTooLarge(ExtensionFault):
    """A reply was larger than the policy allows; reading stopped at the limit."""

    code = "output_too_large"


class CallTimeout(ExtensionFault):
    """A call did not finish before its deadline."""

    code = "timeout"


class Crashed(ExtensionFault):
    """The worker died or broke the protocol while the call was pending."""

    code = "crashed"


class Unavailable(Transient):
    """A service is unreachable or busy for now (homeserver down, 5xx, 429; an extension's
    queue full; the proc host shutting down); try later."""

    code = "unavailable"


class CircuitOpen(Unavailable):
    """The extension crashed too often within its crash window and is not started again
    until the window has passed (`retry_after`) or the user re-enables it.

    A subclass of `Unavailable`, which used to carry this case: code that catches
    `Unavailable` still does; scripts see the more precise code."""

    code = "circuit_open"


class ReloadRequired(ExtensionRefused):
    """The extension changed on disk while this process runs it; no retry helps, only
    disabling and re-enabling it (which reloads it)."""

    code = "reload_required"


class HomeserverFailed(KumixError):
    """The local homeserver (demo, tests) could not be configured, started or used."""

    code = "homeserver_failed"


class ProtocolError(KumixError):
    """A peer sent bytes that break the wire protocol."""

    code = "protocol_error"


class WasmRejected(KumixError):
    """A WASM module failed a loading rule (path, hash, imports, exports, limits)."""

    code = "wasm_rejected"


class WasmTrap(ExtensionFault):
    """A WASM module trapped or broke the calling convention; its instance was discarded."""

    code = "wasm_trap"


class ResourceLimit(ExtensionFault):
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


class ExtensionFailed(ExtensionFault):
    """The extension's own code failed (its handler raised, or its entry file did not load)."""

    code = "extension_error"


class VaultCorrupt(KumixError):
    """The credential vault is damaged or was tampered with; it is left untouched."""

    code = "vault_corrupt"


class VaultLocked(KumixError):
    """The credential vault needs its passphrase before this use case can run (a server
    started without a key source: `kumix serve` asks for it in the page)."""

    code = "vault_locked"


class WrongPassphrase(KumixError):
    """The passphrase given does not open the credential vault; the vault is left untouched."""

    code = "wrong_passphrase"


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
    CircuitOpen,
    ReloadRequired,
    HomeserverFailed,
    ProtocolError,
    WasmRejected,
    WasmTrap,
    ResourceLimit,
    ConfinementUnavailable,
    BadRequest,
    Unauthorized,
    Forbidden,
    ExtensionFailed,
    VaultCorrupt,
    VaultLocked,
    WrongPassphrase,
    StateBusy,
    StateCorrupt,
    SignatureInvalid,
    VerificationFailed,
    WrongRecoveryKey,
    IdentityChanged,
)

_BY_CODE: dict[str, type[KumixError]] = {cls.code: cls for cls in ALL_ERRORS}


def error_from_code(code: str, message: str, details: Mapping[str, Any] | None = None) -> KumixError:
    """Rebuild an error received over a wire or read back from storage; unknown codes
    become `protocol_error`."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ProtocolError(f"peer sent unknown error code {code[:64]!r}: {message[:200]}")
    return cls(message, details=details)
