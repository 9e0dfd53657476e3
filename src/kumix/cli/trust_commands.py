"""Trust commands: `kumix keys cross-signing status|bootstrap`, `kumix keys recovery
setup|show-status|use`, `kumix keys backup status|enable|upload|restore`, `kumix verify USER [DEVICE]`,
`kumix devices [USER]`.

Importing this module imports neither nio nor the crypto libraries: the use cases
(`kumix.app.trust`, `kumix.app.recovery`) and the session plumbing are imported inside each
command. Secrets (the account password, the recovery key) come from stdin or a terminal
prompt, never from argv.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TypeVar

from kumix.cli.output import emit_json, emit_table, printable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from kumix.app.encryption import Encryption
    from kumix.app.kumix import Kumix
    from kumix.cli.context import CliContext

T = TypeVar("T")


async def _enc(k: Kumix, use: Callable[[Encryption], Awaitable[T]], *, refresh: bool = False) -> T:
    """Run one encryption use case of this device."""
    return await use(await k.encryption(refresh=refresh))


def _keys_subcommands(subparsers: Any) -> Any:
    """The `keys` command's own subparsers (registered by the Matrix commands): cross-signing
    and recovery are more things done with keys, so they live under it."""
    keys = subparsers.choices["keys"]
    for action in keys._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise AssertionError("the keys command has no subcommands")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    ksub = _keys_subcommands(subparsers)
    cs = ksub.add_parser("cross-signing", help="this account's cross-signing identity", parents=[common])
    cssub = cs.add_subparsers(dest="cross_signing_command", metavar="COMMAND", required=True)
    p = cssub.add_parser("status", help="show whether the account has an identity and this device is verified",
                         parents=[common])
    p.set_defaults(handler=cmd_cross_signing_status)
    p = cssub.add_parser("bootstrap", help="create the identity if there is none and sign this device",
                         parents=[common])
    p.add_argument("--reset", action="store_true",
                   help="replace the identity (every verification of it is lost; asks for the password)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the account password (if the homeserver asks for it) from stdin")
    p.set_defaults(handler=cmd_cross_signing_bootstrap)

    rc = ksub.add_parser("recovery", help="secret storage and the recovery key", parents=[common])
    rsub = rc.add_subparsers(dest="recovery_command", metavar="COMMAND", required=True)
    p = rsub.add_parser("setup", help="create a recovery key and store this device's secrets under it "
                        "(the key is shown once)", parents=[common])
    p.set_defaults(handler=cmd_recovery_setup)
    p = rsub.add_parser("show-status", help="show whether secret storage is set up and what it holds",
                        parents=[common])
    p.set_defaults(handler=cmd_recovery_status)
    p = rsub.add_parser("use", help="verify this device with the recovery key (or its passphrase)", parents=[common])
    how = p.add_mutually_exclusive_group()
    how.add_argument("--recovery-key-stdin", action="store_true", help="read the recovery key from stdin")
    how.add_argument("--passphrase-stdin", action="store_true",
                     help="read the secret storage passphrase (set up in another client) from stdin")
    p.set_defaults(handler=cmd_recovery_use)

    bk = ksub.add_parser("backup", help="server-side key backup of room keys", parents=[common])
    bsub = bk.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)
    p = bsub.add_parser("status", help="show the key backup and how many room keys are in it", parents=[common])
    p.set_defaults(handler=cmd_backup_status)
    p = bsub.add_parser("enable", help="create the key backup, or adopt the account's when this device holds its key",
                        parents=[common])
    p.set_defaults(handler=cmd_backup_enable)
    p = bsub.add_parser("upload", help="upload the room keys not yet in the backup (a running session does this "
                        "by itself)", parents=[common])
    p.set_defaults(handler=cmd_backup_upload)
    p = bsub.add_parser("restore", help="download room keys from the backup and decrypt the history they unlock",
                        parents=[common])
    p.set_defaults(handler=cmd_backup_restore)

    p = ksub.add_parser("exclude-insecure-devices", help="show or set whether room keys go only to cross-signed "
                        "devices (MSC4153; on by default for a new data directory)", parents=[common])
    p.add_argument("value", nargs="?", choices=["on", "off"], help="the new setting (default: show it)")
    p.set_defaults(handler=cmd_exclude_insecure)

    p = subparsers.add_parser("verify", help="verify a user or device by comparing emoji (SAS)", parents=[common])
    p.add_argument("user", nargs="?", help="whom to verify (your own user id for another of your devices)")
    p.add_argument("device", nargs="?", help="which of their devices (default: all of them are asked)")
    p.add_argument("--wait", action="store_true", help="answer a verification request instead of sending one")
    p.add_argument("--answer-stdin", action="store_true",
                   help="read the answer to 'do the emoji match?' (yes/no) from stdin instead of the terminal")
    p.set_defaults(handler=cmd_verify)

    p = subparsers.add_parser("devices", help="list a user's devices and whether they are verified",
                              parents=[common])
    p.add_argument("user", nargs="?", help="whose devices (default: your own)")
    p.add_argument("--accept-new-identity", action="store_true",
                   help="accept USER's changed identity (messages to them are refused until then; it is not "
                   "verified by this: run `kumix verify` for that)")
    p.set_defaults(handler=cmd_devices)


def _password_source(ctx: CliContext) -> Any:
    from kumix.cli.matrix_commands import _prompt_secret, _read_stdin_secret

    async def give() -> str | None:
        if ctx.args.password_stdin:
            return _read_stdin_secret("password")
        return _prompt_secret("Matrix password (the homeserver asks for it): ", "password", "--password-stdin")
    return give


def cmd_cross_signing_status(ctx: CliContext) -> int:
    st = ctx.run(lambda k: _enc(k, lambda e: e.cross_signing_status()))
    if ctx.json:
        emit_json(st.to_json())
        return 0
    lines = [f"user: {st.user_id}", f"device: {st.device_id}"]
    if not st.has_identity:
        lines.append("cross-signing: not set up (run `kumix keys cross-signing bootstrap`)")
    else:
        lines.append(f"master key: {st.master_key}")
        lines.append(f"private keys on this device: {', '.join(st.private_keys) or 'none'}")
        lines.append("this device: " + ("verified" if st.device_verified else
                     "NOT verified — verify it from another device (`kumix verify`) or with the recovery key "
                     "(`kumix keys recovery use`)"))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_cross_signing_bootstrap(ctx: CliContext) -> int:
    done, st = ctx.run(lambda k: _enc(k, lambda e: e.bootstrap_cross_signing(_password_source(ctx),
                                                                             reset=ctx.args.reset)))
    if ctx.json:
        emit_json({"signed": done} | st.to_json())
    elif done:
        sys.stdout.write(f"cross-signing ready; this device is {'verified' if st.device_verified else 'signed'}\n")
    else:
        sys.stdout.write("this account already has a cross-signing identity that this device does not hold; "
                         "verify this device (`kumix verify`) or use the recovery key (`kumix keys recovery use`); "
                         "`--reset` replaces the identity\n")
    return 0


def cmd_recovery_setup(ctx: CliContext) -> int:
    # Shown once, here, and kept nowhere: not in the vault, not in a log.
    key = ctx.run(lambda k: _enc(k, lambda e: e.set_up_recovery()))
    if ctx.json:
        emit_json({"recovery_key": key})
    else:
        sys.stdout.write("Your recovery key (write it down and keep it safe; it is not shown again):\n\n"
                         f"    {key}\n\n"
                         "With it, a new device of this account becomes verified: `kumix keys recovery use`.\n")
    return 0


def cmd_recovery_status(ctx: CliContext) -> int:
    st = ctx.run(lambda k: _enc(k, lambda e: e.recovery_status()))
    if ctx.json:
        emit_json(st.to_json())
    elif not st.set_up:
        sys.stdout.write("recovery: not set up (run `kumix keys recovery setup`)\n")
    else:
        sys.stdout.write(f"recovery: set up (key {printable(st.key_id or '', 64)}"
                         f"{', with a passphrase' if st.has_passphrase else ''})\n"
                         f"stored: {', '.join(st.stored_secrets) or 'nothing Kumix knows'}\n")
    return 0


def cmd_recovery_use(ctx: CliContext) -> int:
    from kumix.cli.matrix_commands import _prompt_secret, _read_stdin_secret

    a = ctx.args
    if a.passphrase_stdin:
        secret_args: dict[str, str] = {"passphrase": _read_stdin_secret("passphrase")}
    elif a.recovery_key_stdin:
        secret_args = {"recovery_key": _read_stdin_secret("recovery key")}
    else:
        secret_args = {"recovery_key": _prompt_secret("Recovery key: ", "recovery key", "--recovery-key-stdin")}

    st = ctx.run(lambda k: _enc(k, lambda e: e.use_recovery(**secret_args)))
    if ctx.json:
        emit_json(st.to_json())
    else:
        sys.stdout.write("this device is verified\n" if st.device_verified else
                         "the keys were recovered but this device is not verified yet\n")
    return 0


def cmd_backup_status(ctx: CliContext) -> int:
    st = ctx.run(lambda k: _enc(k, lambda e: e.backup_status()))
    if ctx.json:
        emit_json(st.to_json())
    elif st.version is None:
        sys.stdout.write("key backup: none (run `kumix keys backup enable` or `kumix keys recovery setup`)\n")
    else:
        sys.stdout.write(f"key backup: version {printable(st.version, 40)}, "
                         f"{'trusted' if st.trusted else 'NOT trusted (not signed by a key this device trusts)'}, "
                         f"{'key held' if st.have_key else 'key not held (use the recovery key)'}; "
                         f"{st.uploaded} of {st.held} room keys uploaded from this device\n")
    return 0


def cmd_backup_enable(ctx: CliContext) -> int:
    version = ctx.run(lambda k: _enc(k, lambda e: e.enable_backup()))
    if ctx.json:
        emit_json({"version": version.version})
    else:
        sys.stdout.write(f"key backup version {printable(version.version, 40)} in use\n")
    return 0


def cmd_backup_upload(ctx: CliContext) -> int:
    count = ctx.run(lambda k: _enc(k, lambda e: e.upload_backup()))
    if ctx.json:
        emit_json({"uploaded": count})
    else:
        sys.stdout.write(f"{count} room key(s) uploaded\n")
    return 0


def cmd_backup_restore(ctx: CliContext) -> int:
    result = ctx.run(lambda k: _enc(k, lambda e: e.restore_backup(), refresh=True))
    if ctx.json:
        emit_json(result.to_json())
    else:
        sys.stdout.write(f"{result.imported} of {result.total} room key(s) restored; "
                         f"{result.decrypted_events} held event(s) decrypted\n")
        for r in result.refused:
            sys.stdout.write(f"refused {printable(r['session_id'], 64)} in {printable(r['room_id'], 255)}: "
                             f"{r['code']}: {printable(r['message'], 200)}\n")
    return 0


def _matches(ctx: CliContext) -> bool:
    if ctx.args.answer_stdin:
        answer = sys.stdin.readline().strip().lower()
    elif sys.stdin.isatty():
        answer = input("Do the emoji match on both devices? [y/N] ").strip().lower()
    else:
        from kumix.core.errors import BadRequest

        raise BadRequest("no terminal to ask whether the emoji match: pass --answer-stdin and write yes or no")
    return answer in ("y", "yes")


def cmd_verify(ctx: CliContext) -> int:
    from kumix.cli.context import progress
    from kumix.core.errors import BadRequest, VerificationFailed

    a = ctx.args
    if not a.wait and not a.user:
        raise BadRequest("say whom to verify (USER [DEVICE]), or --wait to answer a request")

    async def go(k: Kumix) -> dict[str, Any]:
        verifier = (await k.encryption()).verifier()
        if a.wait:
            progress("waiting for a verification request…")
            v = await verifier.wait_request(a.user)
        else:
            progress(f"asking {a.user} to verify…")
            v = await verifier.request(a.user, a.device)
        await verifier.wait_for_sas(v)
        emoji = v.emoji()
        # The prompt goes to stderr with the emoji, so stdout stays data (--json).
        sys.stderr.write("Compare these with the other device:\n  " +
                         "  ".join(f"{e} {name}" for e, name in emoji) +
                         f"\n  (or the numbers {' '.join(map(str, v.decimals()))})\n")
        sys.stderr.flush()
        if not _matches(ctx):
            await verifier.mismatch(v)
            raise VerificationFailed("the emoji did not match: verification cancelled; nothing was trusted",
                                     details={"reason": "m.mismatched_sas"})
        await verifier.confirm(v)
        return {"user_id": v.their_user, "device_id": v.their_device, "verified": sorted(v.verified),
                "emoji": [name for _, name in emoji]}

    result = ctx.run(go)
    if ctx.json:
        emit_json(result)
    else:
        sys.stdout.write(f"verified {printable(result['user_id'], 255)} "
                         f"(device {printable(str(result['device_id']), 40)})\n")
    return 0


def cmd_exclude_insecure(ctx: CliContext) -> int:
    value = None if ctx.args.value is None else ctx.args.value == "on"
    on = ctx.local(lambda k: k.exclude_insecure_devices(value))
    if ctx.json:
        emit_json({"exclude_insecure_devices": on})
    else:
        sys.stdout.write(f"exclude insecure devices: {'on' if on else 'off'}\n")
    return 0


def cmd_devices(ctx: CliContext) -> int:
    if ctx.args.accept_new_identity and not ctx.args.user:
        from kumix.core.errors import BadRequest

        raise BadRequest("--accept-new-identity needs the USER whose identity changed")

    listing = ctx.run(lambda k: _enc(k, lambda e: e.devices(ctx.args.user,
                                                              accept_new_identity=ctx.args.accept_new_identity)))
    if ctx.json:
        emit_json(listing.to_json())
        return 0
    shields = {"verified": "verified", "cross_signed_unverified_identity": "identity not verified",
               "not_cross_signed": "NOT cross-signed (insecure)"}
    identity = "verified" if listing.identity_verified else "not verified" if listing.master_key else "none"
    if listing.identity_changed:
        identity = ("CHANGED since you verified it — messages to this user are held back; verify again or "
                    "--accept-new-identity")
    sys.stdout.write(f"{printable(listing.user_id, 255)}: identity {identity}\n")
    emit_table([[printable(d.device_id, 40) + (" (this device)" if d.this_device else ""),
                 printable(d.display_name or "", 40), d.ed25519 or "", shields[d.trust]] for d in listing.devices],
               ["DEVICE", "NAME", "ED25519", "TRUST"])
    return 0


__all__ = ["register"]
