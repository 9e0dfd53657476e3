"""Canonical JSON and signed JSON, exactly as the Matrix specification defines them
(appendices: "Canonical JSON", "Signing JSON").

Canonical JSON: UTF-8, no insignificant whitespace, object keys sorted by code point,
integers only (in [-(2**53)+1, 2**53-1]); floats are refused rather than rendered in some
way another implementation would not reproduce. Signing covers the object without its
`signatures` and `unsigned` members; the signature goes under
`signatures[<entity>]["ed25519:<key id>"]`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kumix.core.errors import BadRequest, SignatureInvalid
from kumix.matrix.crypto_primitives import SigningKey, verify_ed25519

MAX_SAFE_INT = 2**53 - 1


def _check_text(text: str) -> None:
    # JSON can escape half a UTF-16 pair ("\ud800"), which Python's parser keeps as a lone
    # surrogate: it has no UTF-8 encoding, so no canonical form (and must not raise later).
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("canonical JSON: a string holds a lone surrogate") from None


def _check(value: Any, depth: int = 0) -> None:
    if depth > 100:
        raise BadRequest("canonical JSON: nested too deeply")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        _check_text(value)
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise BadRequest("canonical JSON: integer out of range")
        return
    if isinstance(value, float):
        raise BadRequest("canonical JSON: floating-point numbers are not allowed")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise BadRequest("canonical JSON: object keys must be strings")
            _check_text(k)
            _check(v, depth + 1)
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check(v, depth + 1)
        return
    raise BadRequest(f"canonical JSON: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The canonical encoding of a JSON value (`BadRequest` for what has none)."""
    _check(value)
    # Python's sort_keys compares str values, i.e. by code point, as the spec requires.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def signing_payload(obj: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(obj: dict[str, Any], entity: str, key_id: str, key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with `entity`'s signature (key `ed25519:<key_id>`) added."""
    signed = copy.deepcopy(obj)
    signature = key.sign(signing_payload(obj))
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        signatures = {}
    signed["signatures"] = signatures
    signatures.setdefault(entity, {})[f"ed25519:{key_id}"] = signature
    return signed


def signature_of(obj: dict[str, Any], entity: str, key_id: str) -> str | None:
    sigs = obj.get("signatures")
    by_entity = sigs.get(entity) if isinstance(sigs, dict) else None
    sig = by_entity.get(f"ed25519:{key_id}") if isinstance(by_entity, dict) else None
    return sig if isinstance(sig, str) else None


def verify_signed_json(obj: dict[str, Any], entity: str, key_id: str, public_key: str) -> None:
    """`SignatureInvalid` unless `obj` carries a valid signature by `public_key`, filed
    under `entity` and `ed25519:<key_id>`. A missing signature is invalid too."""
    sig = signature_of(obj, entity, key_id)
    if sig is None:
        raise SignatureInvalid(f"no signature by {entity} with key ed25519:{key_id}")
    try:
        payload = signing_payload(obj)
    except BadRequest as exc:
        raise SignatureInvalid(f"signed object is not canonical JSON ({exc.message})") from None
    verify_ed25519(public_key, payload, sig)
