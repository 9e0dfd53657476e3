"""The OpenAPI 3.1 document of the JSON API (served at /api/openapi.json).

Written by hand next to the routes: it is the contract the browser client and the
property tests (schemathesis) hold the server to. Every operation lists its error answers
with the stable codes of docs/errors.md.
"""

from __future__ import annotations

from typing import Any, get_args

from kumix.core.errors import ALL_ERRORS
from kumix.core.trust import SenderTrust
from kumix.web.errors import STATUS_OF_CODE

S = dict[str, Any]

ERROR: S = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": sorted({c.code for c in ALL_ERRORS} | {"internal"})},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
    }},
}

NULLABLE_STR: S = {"type": ["string", "null"]}

ACCOUNT: S = {"type": "object", "required": ["user_id", "device_id", "homeserver"],
              "properties": {k: {"type": "string"} for k in ("user_id", "device_id", "homeserver")}}

WHOAMI: S = {"type": "object", "required": ["logged_in", "account"], "properties": {
    "logged_in": {"type": "boolean"}, "account": {"oneOf": [ACCOUNT, {"type": "null"}]},
    "vault_locked": {"type": "boolean", "description": "the account's vault waits for its passphrase "
                                                       "(POST /api/vault/unlock); nothing else answers until then"}}}

ROOM: S = {"type": "object",
           "required": ["room_id", "name", "encrypted", "membership", "unread", "highlights", "direct"],
           "properties": {
               "room_id": {"type": "string"}, "name": {"type": "string"}, "topic": NULLABLE_STR,
               "encrypted": {"type": "boolean"}, "membership": {"enum": ["join", "invite", "leave"]},
               "unread": {"type": "integer"}, "highlights": {"type": "integer"}, "direct": {"type": "boolean"},
               "alias": NULLABLE_STR, "inviter": NULLABLE_STR,
               "avatar": {"type": ["string", "null"], "description": "mxc:// URI; the bytes are at "
                                                                      "/api/rooms/{room_id}/avatar"},
               "space": {"type": "boolean"},
               "children": {"type": "array", "items": {"type": "string"},
                            "description": "for a space, the rooms it groups (m.space.child)"},
               "parents": {"type": "array", "items": {"type": "string"},
                           "description": "the spaces this room names as parents (m.space.parent)"}}}

EVENT: S = {"type": "object", "required": ["event_id", "room_id", "sender", "ts", "kind", "body", "encrypted"],
            "properties": {
                "event_id": {"type": "string"}, "room_id": {"type": "string"}, "sender": {"type": "string"},
                "ts": {"type": "integer"}, "kind": {"type": "string"}, "body": {"type": "string"},
                "encrypted": {"type": "boolean"}, "html": {"type": "string"}, "msgtype": {"type": "string"},
                "relates_to": {"type": "string"}, "reply_to": {"type": "string"}, "key": {"type": "string"},
                "file": {"type": "object"},
                # The shield (docs/encryption.md): present on decrypted and withheld events.
                "sender_trust": {"enum": list(get_args(SenderTrust))},
                "sender_device": NULLABLE_STR}}

ITEM: S = {"type": "object", "required": ["cursor", "event"],
           "properties": {"cursor": {"type": "integer"}, "event": EVENT}}

NULLABLE_INT: S = {"type": ["integer", "null"]}

OUTBOX: S = {"type": "object", "required": ["txn_id", "room_id", "state"], "properties": {
    "txn_id": {"type": "string"}, "room_id": {"type": "string"}, "state": {"type": "string"},
    "event_id": NULLABLE_STR, "error": {"oneOf": [{"type": "null"}, {"type": "object"}]},
    "handed_to": {"type": "object"}}}

ROOM_ID: S = {"type": "object", "required": ["room_id"], "properties": {"room_id": {"type": "string"}}}

SETTINGS: S = {"type": "object", "required": ["theme", "language"],
               "properties": {"theme": {"enum": ["system", "light", "dark"]}, "language": {"type": "string"}}}

EXTENSION: S = {"type": "object", "required": ["id", "state"],
                "properties": {"id": {"type": "string"}, "state": {"type": "string"}}}


def _body(schema: S, required: bool = True) -> S:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _obj(props: S, required: list[str]) -> S:
    return {"type": "object", "properties": props, "required": required}


def _op(summary: str, ok: S, *, errors: tuple[str, ...] = ("bad_request",), body: S | None = None,
        params: list[S] | None = None, ok_content: S | None = None) -> S:
    responses: S = {"200": ok_content or {"description": "done", "content": {"application/json": {"schema": ok}}}}
    # vault_locked: every route but the page's own few answers it until the vault is unlocked.
    for code in ("unauthorized", "forbidden", "internal", "vault_locked", *errors):
        status = str(STATUS_OF_CODE[code])
        responses.setdefault(status, {"description": f"error ({code} and others of this status)",
                                      "content": {"application/json": {"schema": ERROR}}})
    op: S = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> S:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: S, required: bool = False) -> S:
    return {"name": name, "in": "query", "required": required, "schema": schema}


ROOM_PARAM = _path_param("room_id")
FILE_CONTENT: S = {"description": "the file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
MATRIX = ("bad_request", "not_found", "unavailable", "state_busy", "timeout", "forbidden")
ROOM_ERRORS = ("bad_request", "not_found", "unavailable", "timeout", "forbidden", "input_too_large")


def _room_post(summary: str, ok: S, body: S) -> S:
    return {"post": _op(summary, ok, errors=ROOM_ERRORS, body=_body(body), params=[ROOM_PARAM])}


BOOL: S = {"type": "boolean"}
STR_LIST: S = {"type": "array", "items": {"type": "string"}}

CROSS_SIGNING: S = _obj({
    "user_id": {"type": "string"}, "device_id": {"type": "string"}, "has_identity": BOOL, "master_key": NULLABLE_STR,
    "private_keys": STR_LIST, "identity_trusted": BOOL, "device_signed": BOOL, "device_verified": BOOL},
    ["user_id", "device_id", "has_identity", "master_key", "private_keys", "identity_trusted", "device_signed",
     "device_verified"])

RECOVERY: S = _obj({"set_up": BOOL, "key_id": NULLABLE_STR, "has_passphrase": BOOL, "stored_secrets": STR_LIST},
                   ["set_up", "key_id", "has_passphrase", "stored_secrets"])

BACKUP: S = _obj({"version": NULLABLE_STR, "trusted": BOOL, "have_key": BOOL, "uploaded": {"type": "integer"},
                  "held": {"type": "integer"}}, ["version", "trusted", "have_key", "uploaded", "held"])

DEVICE: S = _obj({"user_id": {"type": "string"}, "device_id": {"type": "string"}, "display_name": NULLABLE_STR,
                  "ed25519": NULLABLE_STR, "this_device": BOOL,
                  "trust": {"enum": ["verified", "cross_signed_unverified_identity", "not_cross_signed"]}},
                 ["user_id", "device_id", "trust"])

USER_DEVICES: S = _obj({"user_id": {"type": "string"}, "master_key": NULLABLE_STR, "identity_verified": BOOL,
                        "identity_changed": BOOL, "devices": {"type": "array", "items": DEVICE}},
                       ["user_id", "master_key", "identity_verified", "identity_changed", "devices"])

VERIFICATION: S = _obj({
    "id": {"type": "string"}, "role": {"enum": ["asker", "answerer"]}, "user_id": {"type": "string"},
    "device_id": NULLABLE_STR, "room_id": NULLABLE_STR,
    "state": {"enum": ["incoming", "requested", "ready", "started", "accepted", "keys", "confirmed", "done",
                       "cancelled", "failed"]},
    "error": {"oneOf": [{"type": "null"}, {"type": "object"}]},
    "emoji": {"oneOf": [{"type": "null"}, {"type": "array", "items": _obj(
        {"emoji": {"type": "string"}, "name": {"type": "string"}}, ["emoji", "name"])}]},
    "decimals": {"oneOf": [{"type": "null"}, {"type": "array", "items": {"type": "integer"}}]},
    "verified": STR_LIST},
    ["id", "role", "user_id", "state", "error", "emoji", "decimals", "verified"])

TRUST_ERRORS = ("bad_request", "not_found", "unavailable", "state_busy", "timeout", "forbidden", "homeserver_failed",
                "wrong_recovery_key", "signature_invalid", "verification_failed", "identity_changed")


def _encryption_paths() -> S:
    """Cross-signing, recovery, key backup, devices and SAS verification (docs/encryption.md)."""
    user = {"type": "string", "minLength": 1, "maxLength": 255}
    flow_param = _path_param("flow_id")
    return {
        "/api/encryption": {"get": _op(
            "cross-signing (is this device verified?), recovery, key backup and the exclude-insecure-devices "
            "setting", _obj({"cross_signing": CROSS_SIGNING, "recovery": RECOVERY, "backup": BACKUP,
                             "exclude_insecure_devices": BOOL},
                            ["cross_signing", "recovery", "backup", "exclude_insecure_devices"]),
            errors=TRUST_ERRORS)},
        "/api/encryption/settings": {"put": _op(
            "turn exclude insecure devices (MSC4153) on or off", _obj({"exclude_insecure_devices": BOOL},
                                                                      ["exclude_insecure_devices"]),
            errors=TRUST_ERRORS, body=_body(_obj({"exclude_insecure_devices": BOOL}, [])))},
        "/api/encryption/cross-signing": {"post": _op(
            "create (or with reset, replace) the cross-signing identity and sign this device; the password is "
            "for the homeserver's user-interactive auth and is never logged", _obj(
                {"done": BOOL, "cross_signing": CROSS_SIGNING}, ["done", "cross_signing"]), errors=TRUST_ERRORS,
            body=_body(_obj({"password": {"type": "string"}, "reset": BOOL}, []), required=False))},
        "/api/encryption/recovery": {"post": _op(
            "set up secret storage: the new recovery key is in this answer once and kept nowhere", _obj(
                {"recovery_key": {"type": "string"}, "recovery": RECOVERY}, ["recovery_key", "recovery"]),
            errors=TRUST_ERRORS)},
        "/api/encryption/recovery/use": {"post": _op(
            "verify this device with the recovery key or its passphrase", _obj(
                {"cross_signing": CROSS_SIGNING}, ["cross_signing"]), errors=TRUST_ERRORS,
            body=_body({"oneOf": [_obj({"recovery_key": {"type": "string", "minLength": 1}}, ["recovery_key"]),
                                  _obj({"passphrase": {"type": "string", "minLength": 1}}, ["passphrase"])]}))},
        "/api/encryption/backup": {"post": _op(
            "create (or adopt) the server-side key backup and upload the room keys", _obj(
                {"version": {"type": "string"}, "backup": BACKUP}, ["version", "backup"]), errors=TRUST_ERRORS)},
        "/api/encryption/backup/restore": {"post": _op(
            "restore room keys from the key backup; held events they unlock become readable", _obj(
                {"total": {"type": "integer"}, "imported": {"type": "integer"},
                 "decrypted_events": {"type": "integer"}, "refused": {"type": "array"}},
                ["total", "imported", "decrypted_events", "refused"]), errors=TRUST_ERRORS)},
        "/api/devices": {"get": _op(
            "a user's devices (default: ours) and whether each is verified", USER_DEVICES, errors=TRUST_ERRORS,
            params=[_query("user", {"type": "string", "maxLength": 255})])},
        "/api/devices/accept-new-identity": {"post": _op(
            "accept a verified user's changed identity (it is then trusted as unverified)", USER_DEVICES,
            errors=TRUST_ERRORS, body=_body(_obj({"user": user}, ["user"])))},
        "/api/verifications": {
            "get": _op("running and recent SAS verifications, incoming requests included", _obj(
                {"verifications": {"type": "array", "items": VERIFICATION}}, ["verifications"]),
                errors=TRUST_ERRORS),
            "post": _op("ask a user (one device, all of them, or in a room) to verify", VERIFICATION,
                        errors=TRUST_ERRORS, body=_body(_obj({"user": user, "device": user, "room": user},
                                                             ["user"]))),
        },
        "/api/verifications/{flow_id}": {"get": _op(
            "a verification's state; once keys are exchanged, the emoji (with names) and decimals to compare",
            VERIFICATION, errors=TRUST_ERRORS, params=[flow_param])},
        "/api/verifications/{flow_id}/{action}": {"post": _op(
            "accept an incoming request; confirm (the emoji match), mismatch (they do not) or cancel",
            VERIFICATION, errors=TRUST_ERRORS, params=[flow_param, {
                "name": "action", "in": "path", "required": True,
                "schema": {"enum": ["accept", "confirm", "mismatch", "cancel"]}}])},
    }


def document() -> S:
    event_id = {"type": "string", "minLength": 1, "maxLength": 255}
    text = {"type": "string", "minLength": 1}
    paths: S = {
        "/api/whoami": {"get": _op("who is logged in, and whether sync works", WHOAMI, errors=())},
        "/api/login": {"post": _op(
            "log in to a Matrix account (the Matrix login happens in the server)", WHOAMI, errors=MATRIX,
            body=_body({"oneOf": [
                _obj({"homeserver": text, "user": text, "password": text}, ["homeserver", "user", "password"]),
                _obj({"homeserver": text, "access_token": text}, ["homeserver", "access_token"]),
            ]}))},
        "/api/vault/unlock": {"post": _op(
            "open the locked credential vault with its passphrase, then start the session", WHOAMI,
            errors=("bad_request", "wrong_passphrase", *MATRIX),
            body=_body(_obj({"passphrase": {"type": "string", "minLength": 1, "maxLength": 4096}}, ["passphrase"])))},
        "/api/logout": {"post": _op("log out and forget the local session", WHOAMI, errors=MATRIX)},
        "/api/rooms": {
            "get": _op("the account's rooms and invites", _obj({"rooms": {"type": "array", "items": ROOM}},
                                                              ["rooms"]), errors=()),
            "post": _op("create a room or a direct chat", ROOM_ID, errors=MATRIX, body=_body(_obj({
                "name": {"type": "string"}, "topic": {"type": "string"}, "encrypted": {"type": "boolean"},
                "direct": {"type": "boolean"}, "invite": {"type": "array", "items": text, "maxItems": 50}}, []))),
        },
        "/api/join": {"post": _op("join a room, or accept an invite", ROOM_ID, errors=MATRIX,
                                  body=_body(_obj({"room": text}, ["room"])))},
        "/api/rooms/{room_id}/leave": {"post": _op("leave a room, or decline an invite", ROOM_ID,
                                                   errors=ROOM_ERRORS, params=[ROOM_PARAM])},
        "/api/rooms/{room_id}/invite": _room_post("invite a user", ROOM_ID, _obj({"user_id": text}, ["user_id"])),
        "/api/rooms/{room_id}/events": {"get": _op(
            "a timeline page: the newest events before a cursor (default) or the oldest after one",
            _obj({"events": {"type": "array", "items": ITEM}, "before": NULLABLE_INT, "after": NULLABLE_INT},
                 ["events", "before", "after"]), errors=ROOM_ERRORS,
            params=[ROOM_PARAM, _query("before", {"type": "integer"}), _query("after", {"type": "integer"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})])},
        "/api/rooms/{room_id}/messages": _room_post("send text (markdown rendered by the markdown extension)",
                                                    OUTBOX, _obj({"text": text, "markdown": {"type": "boolean"},
                                                                  "reply_to": event_id}, ["text"])),
        "/api/rooms/{room_id}/edit": _room_post("edit a message", OUTBOX, _obj(
            {"event_id": event_id, "text": text, "markdown": {"type": "boolean"}}, ["event_id", "text"])),
        "/api/rooms/{room_id}/react": _room_post("react to an event", OUTBOX, _obj(
            {"event_id": event_id, "key": {"type": "string", "minLength": 1, "maxLength": 64}},
            ["event_id", "key"])),
        "/api/rooms/{room_id}/redact": _room_post("redact an event", OUTBOX, _obj(
            {"event_id": event_id, "reason": {"type": "string"}}, ["event_id"])),
        "/api/rooms/{room_id}/typing": _room_post("typing notice on or off", ROOM_ID,
                                                  _obj({"typing": {"type": "boolean"}}, [])),
        "/api/rooms/{room_id}/receipt": _room_post("read receipt up to an event", ROOM_ID,
                                                   _obj({"event_id": event_id}, ["event_id"])),
        "/api/rooms/{room_id}/upload": {"post": _op(
            "upload a file (encrypted in encrypted rooms) and send it", OUTBOX, errors=ROOM_ERRORS,
            params=[ROOM_PARAM, _query("name", {"type": "string", "minLength": 1, "maxLength": 255}, True)],
            body={"required": True, "content": {"application/octet-stream": {"schema": {
                "type": "string", "format": "binary"}}}})},
        "/api/rooms/{room_id}/avatar": {"get": _op(
            "the room's avatar (m.room.avatar) through authenticated media; images inline, anything else "
            "as an attachment", {}, errors=("not_found", "bad_request", "unavailable", "timeout"),
            params=[ROOM_PARAM], ok_content=FILE_CONTENT)},
        "/api/upload": {"post": _op(
            "upload a file without sending it (unencrypted): its mxc:// URI, for later use",
            _obj({"url": {"type": "string"}}, ["url"]), errors=ROOM_ERRORS,
            params=[_query("name", {"type": "string", "minLength": 1, "maxLength": 255}, True)],
            body={"required": True, "content": {"application/octet-stream": {"schema": {
                "type": "string", "format": "binary"}}}})},
        "/api/markdown/preview": {"post": _op(
            "the sanitized HTML a message of this text would carry (null: it would go as plain text)",
            _obj({"html": NULLABLE_STR}, ["html"]), errors=("bad_request",),
            body=_body(_obj({"text": text}, ["text"])))},
        "/api/search": {"get": _op("search the local index", _obj({"hits": {"type": "array", "items": {
            "type": "object"}}}, ["hits"]), errors=("bad_request", "not_found"), params=[
            _query("q", {"type": "string", "minLength": 1, "maxLength": 1024}, True),
            _query("room", {"type": "string"}), _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})])},
        "/api/media/{event_id}": {"get": _op(
            "an event's attachment, decrypted in the server; images inline, everything else as an attachment",
            {}, errors=("not_found", "bad_request", "unavailable", "timeout"), params=[_path_param("event_id")],
            ok_content=FILE_CONTENT)},
        "/api/extensions": {"get": _op("extensions with state, denial reasons and call figures", _obj(
            {"extensions": {"type": "array", "items": EXTENSION}}, ["extensions"]), errors=("unavailable",))},
        "/api/extensions/{extension_id}/{action}": {"post": _op(
            "enable, disable, or grant a capability (body {capability}) to an extension", EXTENSION,
            errors=("bad_request", "not_found", "policy_denied", "unavailable", "invalid_manifest"),
            params=[_path_param("extension_id"),
                    {"name": "action", "in": "path", "required": True, "schema": {"enum": ["enable", "disable",
                                                                                           "grant", "revoke-send"]}}],
            body=_body(_obj({"capability": text}, []), required=False))},
        "/api/ui/frames": {"post": _op(
            "mount a UI extension for a room on the page's event WebSocket: the iframe's srcdoc, sandbox, "
            "referrerPolicy, allow, widgetId (the bridge token) and limits", _obj(
                {"widgetId": {"type": "string"}, "extensionId": {"type": "string"}, "roomId": {"type": "string"},
                 "srcdoc": {"type": "string"}, "sandbox": {"type": "string"}, "referrerPolicy": {"type": "string"},
                 "allow": {"type": "string"}, "limits": {"type": "object"}},
                ["widgetId", "extensionId", "roomId", "srcdoc", "sandbox", "referrerPolicy", "allow", "limits"]),
            errors=("bad_request", "not_found", "disabled", "policy_denied", "capability_not_declared", "not_granted",
                    "invalid_manifest", "extension_error"),
            body=_body(_obj({"extension": text, "room": text, "nonce": text, "connection": text},
                            ["extension", "room", "nonce", "connection"])))},
        "/api/policy": {"get": _op("the active policy", {"type": "object"}, errors=("unavailable",))},
        "/api/policy/check": {"get": _op("which extension the policy allows, and why", _obj(
            {"policy": {"type": "string"}, "extensions": {"type": "array"}}, ["policy", "extensions"]),
            errors=("unavailable",))},
        "/api/theme": {"get": _op("the theme-default extension's light and dark token maps (CSS custom property "
                                  "values); an error when that extension is disabled or denied", _obj(
            {"light": {"type": "object"}, "dark": {"type": "object"}}, []),
            errors=("disabled", "policy_denied", "unavailable", "extension_error", "timeout"))},
        "/api/settings": {
            "get": _op("the page's settings", SETTINGS, errors=()),
            "put": _op("change theme or language", SETTINGS, body=_body(_obj(
                {"theme": {"enum": ["system", "light", "dark"]}, "language": {"type": "string"}}, []))),
        },
    }
    paths.update(_encryption_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kumix local web API", "version": "1",
                 "description": "Served by `kumix serve` on 127.0.0.1 to a browser session (cookie). "
                                "Events: WebSocket /api/events?cursor=N (docs/web.md)."},
        "paths": paths,
    }
