"""Kumix errors as HTTP answers: `{"error": {"code", "message", "details"?}}` with one
documented status per stable code (docs/web.md lists them; a test keeps this table
complete against `kumix.core.errors.ALL_ERRORS`)."""

from __future__ import annotations

from typing import Any

from kumix.core.errors import KumixError

STATUS_OF_CODE: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "wrong_recovery_key": 403,
    "wrong_passphrase": 403,
    "policy_denied": 403,
    "capability_not_declared": 403,
    "not_granted": 403,
    "not_found": 404,
    "disabled": 409,
    "state_busy": 409,
    "reload_required": 409,
    "verification_failed": 409,
    "identity_changed": 409,
    "input_too_large": 413,
    "vault_locked": 423,
    "invalid_manifest": 422,
    "invalid_policy": 422,
    "wasm_rejected": 422,
    "signature_invalid": 422,
    "internal": 500,
    "state_corrupt": 500,
    "vault_corrupt": 500,
    "homeserver_failed": 502,
    "output_too_large": 502,
    "crashed": 502,
    "protocol_error": 502,
    "wasm_trap": 502,
    "extension_error": 502,
    "resource_limit": 502,
    "unavailable": 503,
    "confinement_unavailable": 503,
    "circuit_open": 503,
    "timeout": 504,
}


def status_of(error: KumixError) -> int:
    return STATUS_OF_CODE.get(error.code, 500)


def error_document(error: KumixError) -> dict[str, Any]:
    return {"error": error.to_dict()}
