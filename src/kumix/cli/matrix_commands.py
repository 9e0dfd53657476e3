"""Matrix commands: login, logout, whoami, rooms, join, create-room, send, tail, history,
search, keys export|import.

Secrets come from stdin or a terminal prompt, never from argv (visible to every local user
through /proc). Progress of long operations goes to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kumix.cli.context import CliContext
from kumix.cli.output import emit_json, emit_table, printable, usage_error
from kumix.core.errors import BadRequest

if TYPE_CHECKING:
    import signal

    from kumix.app.kumix import Kumix
    from kumix.core.models import Event

T = TypeVar("T")

MAX_LIMIT = 10_000
"""Events or hits one command prints. Without a bound, `--limit -1` meant "no limit" to
SQLite and a number beyond 64 bits ended in an OverflowError instead of a usage error."""


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
        if not minimum <= value <= MAX_LIMIT:
            raise argparse.ArgumentTypeError(f"must be between {minimum} and {MAX_LIMIT}")
        return value

    parse.__name__ = "count"
    return parse

def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("login", help="log in to a Matrix homeserver", parents=[common])
    p.add_argument("--homeserver", required=True, metavar="URL",
                   help="the homeserver's http:// or https:// base URL, e.g. https://matrix.example.org")
    p.add_argument("--user", metavar="USER", help="user id or localpart (not needed with an access token)")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    secret.add_argument("--access-token-stdin", action="store_true", help="read an access token from stdin")
    p.set_defaults(handler=cmd_login)

    p = subparsers.add_parser("logout", help="revoke the session on the server and forget it here", parents=[common])
    p.set_defaults(handler=cmd_logout)

    p = subparsers.add_parser("whoami", help="the logged-in account, as the server sees it", parents=[common])
    p.set_defaults(handler=cmd_whoami)

    p = subparsers.add_parser("rooms", help="joined and invited rooms", parents=[common])
    p.set_defaults(handler=cmd_rooms)

    p = subparsers.add_parser("join", help="join a room by id or alias", parents=[common])
    p.add_argument("room", help="room id (!id:server) or alias (#alias:server)")
    p.set_defaults(handler=cmd_join)

    p = subparsers.add_parser("create-room", help="create a room (encrypted unless --unencrypted)", parents=[common])
    p.add_argument("--name", help="the room's name")
    p.add_argument("--topic", help="the room's topic")
    p.add_argument("--alias", help="local part of a new #alias")
    p.add_argument("--unencrypted", action="store_true", help="no end-to-end encryption")
    p.add_argument("--public", action="store_true", help="anyone on the homeserver may join")
    p.add_argument("--invite", action="append", default=[], metavar="USER",
                   help="invite this user id (@user:server), repeatable")
    p.add_argument("--direct", metavar="USER", help="a direct-message room with USER")
    p.set_defaults(handler=cmd_create_room)

    p = subparsers.add_parser("send", help="send a message (markdown) or a file to a room", parents=[common])
    p.add_argument("room", help="room id or alias")
    p.add_argument("text", nargs="?", default=None, help="the message, markdown unless --plain")
    p.add_argument("--file", type=Path, help="send this file instead (encrypted in encrypted rooms)")
    p.add_argument("--plain", action="store_true", help="no markdown rendering")
    p.add_argument("--reply-to", metavar="EVENT_ID", help="reply to this event of the room")
    p.set_defaults(handler=cmd_send)

    p = subparsers.add_parser("tail", help="follow a room live (Ctrl-C to stop)", parents=[common])
    p.add_argument("room", help="room id or alias")
    p.add_argument("--history", type=_count(0), default=10, metavar="N",
                   help=f"show the last N events first, 0-{MAX_LIMIT} (default 10)")
    p.set_defaults(handler=cmd_tail)

    p = subparsers.add_parser(
        "history", help="the newest events of a room, fetching older ones when needed", parents=[common])
    p.add_argument("room", help="room id or alias")
    p.add_argument("--limit", type=_count(1), default=50, metavar="N",
                   help=f"how many events, 1-{MAX_LIMIT} (default 50)")
    p.set_defaults(handler=cmd_history)

    p = subparsers.add_parser("search", help="full-text search of messages held locally", parents=[common])
    p.add_argument("query", help="words to find (plain words; no search syntax)")
    p.add_argument("--room", help="only in this room (id or alias)")
    p.add_argument("--limit", type=_count(1), default=50, metavar="N",
                   help=f"how many hits, 1-{MAX_LIMIT} (default 50)")
    p.set_defaults(handler=cmd_search)

    keys = subparsers.add_parser("keys", help="export or import end-to-end room keys", parents=[common])
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    for name, handler in (("export", cmd_keys_export), ("import", cmd_keys_import)):
        kp = ksub.add_parser(name, help=f"{name} room keys (file encrypted with a passphrase)", parents=[common])
        kp.add_argument("path", type=Path,
                        help="the key file to write" if name == "export" else "the key file to read")
        kp.add_argument("--passphrase-stdin", action="store_true", help="read the file's passphrase from stdin")
        kp.set_defaults(handler=handler)


# -- plumbing ------------------------------------------------------------------------------


def _read_stdin_secret(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise BadRequest(f"no {what} on stdin")
    return line


def _prompt_secret(prompt: str, what: str, stdin_option: str) -> str:
    """Ask on the terminal. Without one (a script, a pipe), getpass would fall back to
    reading stdin with a warning and end in EOFError: say which option reads stdin instead.
    The rule is the vault's: a prompt only when stdin is a terminal."""
    if not sys.stdin.isatty():
        raise BadRequest(f"no terminal to ask for the {what}: pass {stdin_option} and write it to stdin")
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise BadRequest(f"no {what} given") from None


async def until_interrupted(work: Awaitable[None]) -> None:
    """Run `work` until Ctrl-C or SIGTERM, which end it by cancellation (not an error: the
    command exits 0, everything it owned closed)."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupted: list[int] = []

    def interrupt(sig: signal.Signals) -> None:
        interrupted.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt, sig)
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise  # cancelled by its owner (a failing background task), not by the user
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


SHIELD_MARKS = {"unverified_identity": "[unverified]", "not_cross_signed": "[not cross-signed]",
                "unknown_device": "[unknown device]", "identity_changed": "[identity changed]",
                "unauthenticated": "[authenticity not guaranteed]"}
"""The short mark after the sender of a decrypted message whose device is not verified
(docs/encryption.md, "What the shields mean"); a verified sender has none."""


WITHHELD_WHY = {"not_cross_signed": "sent from a device its owner has not cross-signed",
                "unknown_device": "sent from an unknown device",
                "identity_changed": "the sender's identity changed since you verified them"}


def _event_line(ev: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.origin_ts / 1000)) if ev.origin_ts else "--:--:--"
    sender = printable(ev.sender, 60)
    if ev.sender_trust in SHIELD_MARKS:
        sender = f"{sender} {SHIELD_MARKS[ev.sender_trust]}"
    # Relation targets are chosen by the sender (the homeserver does not check a redaction's
    # target it has never seen): escape sequences in them must not reach the terminal.
    target = printable(ev.relates_to or "", 100)
    if ev.kind == "text":
        return f"[{stamp}] {sender}: {_message_text(ev.body)}"
    if ev.kind == "edit":
        return f"[{stamp}] {sender} edited {target}: {_message_text(ev.body)}"
    if ev.kind == "file":
        return f"[{stamp}] {sender} sent a file: {printable(ev.body, 200)}"
    if ev.kind == "reaction":
        return f"[{stamp}] {sender} reacted {printable(ev.reaction_key or '', 20)} to {target}"
    if ev.kind == "redaction":
        return f"[{stamp}] {sender} redacted {target}"
    if ev.kind == "undecryptable" and ev.sender_trust in WITHHELD_WHY:
        return f"[{stamp}] {sender}: ** withheld: {WITHHELD_WHY[ev.sender_trust]} (exclude insecure devices is on) **"
    if ev.kind == "undecryptable":
        return f"[{stamp}] {sender}: ** unable to decrypt yet (waiting for the key) **"
    return f"[{stamp}] {sender}: ({ev.kind}) {printable(ev.body, 200)}"


MESSAGE_TEXT_LIMIT = 2000


def _message_text(body: str) -> str:
    """A message's lines, each made printable, continuation lines indented: a multi-line
    message stays readable and still no control character reaches the terminal."""
    lines = body[:MESSAGE_TEXT_LIMIT].replace("\r\n", "\n").split("\n")
    text = "\n    ".join(printable(line, MESSAGE_TEXT_LIMIT) for line in lines)
    return text + ("…" if len(body) > MESSAGE_TEXT_LIMIT else "")


def _print_event(ev: Event, as_json: bool) -> None:
    if as_json:
        # ASCII-only, like every other JSON output (cli.output.emit_json): other people's
        # text may carry C1 controls or bidi overrides, which must not reach a terminal raw.
        sys.stdout.write(json.dumps(ev.to_json(), ensure_ascii=True) + "\n")
    else:
        sys.stdout.write(_event_line(ev) + "\n")
    sys.stdout.flush()


# -- commands ------------------------------------------------------------------------------


def cmd_login(ctx: CliContext) -> int:
    a = ctx.args
    if a.access_token_stdin:
        token = _read_stdin_secret("access token")
        account = ctx.run(lambda k: k.login_token(a.homeserver, token))
    else:
        if not a.user:
            raise BadRequest("--user is needed to log in with a password")
        password = (_read_stdin_secret("password") if a.password_stdin
                    else _prompt_secret("Matrix password: ", "password", "--password-stdin"))
        account = ctx.run(lambda k: k.login_password(a.homeserver, a.user, password))
    if ctx.json:
        emit_json({"user_id": account.user_id, "device_id": account.device_id, "homeserver": account.homeserver})
    else:
        sys.stdout.write(f"logged in as {account.user_id} (device {account.device_id})\n")
    return 0


def cmd_logout(ctx: CliContext) -> int:
    ctx.run(lambda k: k.logout())
    if ctx.json:
        emit_json({"logged_out": True})
    else:
        sys.stdout.write("logged out; the access token is revoked and local session data removed\n")
    return 0


def cmd_whoami(ctx: CliContext) -> int:
    acc = ctx.run(lambda k: k.whoami())
    doc = {"user_id": acc.user_id, "device_id": acc.device_id, "homeserver": acc.homeserver}
    if ctx.json:
        emit_json(doc)
    else:
        sys.stdout.write(f"{printable(doc['user_id'])} (device {printable(doc['device_id'])}) on "
                         f"{printable(doc['homeserver'])}\n")
    return 0


def cmd_rooms(ctx: CliContext) -> int:
    rooms = ctx.run(lambda k: k.rooms())
    if ctx.json:
        emit_json([r.to_json() for r in rooms])
    else:
        emit_table(
            [[printable(r.room_id, 255), printable(r.name, 40), "yes" if r.encrypted else "no", r.membership,
              str(r.unread_count)]
             for r in rooms],
            ["ROOM", "NAME", "ENCRYPTED", "MEMBERSHIP", "UNREAD"],
        )
    return 0


def cmd_join(ctx: CliContext) -> int:
    return _report_room(ctx, "joined", ctx.run(lambda k: k.join(ctx.args.room)))


def _report_room(ctx: CliContext, verb: str, room_id: str) -> int:
    """The room id the homeserver answered; it is the server's text, so printed safely."""
    if ctx.json:
        emit_json({"room_id": room_id})
    else:
        sys.stdout.write(f"{verb} {printable(room_id, 255)}\n")
    return 0


def cmd_create_room(ctx: CliContext) -> int:
    a = ctx.args
    room_id = ctx.run(lambda k: k.create_room(name=a.name, topic=a.topic, alias=a.alias, encrypted=not a.unencrypted,
                                              invite=tuple(a.invite), public=a.public, direct_with=a.direct))
    return _report_room(ctx, "created", room_id)


def cmd_send(ctx: CliContext) -> int:
    a = ctx.args
    if (a.text is None) == (a.file is None):
        return usage_error("kumix send", "give either TEXT or --file PATH", as_json=ctx.json)

    async def use(k: Kumix) -> dict[str, object]:
        if a.file is not None:
            result = await k.send_file(a.room, a.file)
        else:
            result = await k.send_text(a.room, a.text, markdown=not a.plain, reply_to=a.reply_to)
        doc = result.to_json()
        doc["_sent"] = result.sent
        doc["_handed"] = result.handed_to is not None
        return doc

    doc = ctx.run(use)
    sent, handed = doc.pop("_sent"), doc.pop("_handed")
    if ctx.json:
        emit_json(doc)
    elif sent:
        sys.stdout.write(f"sent {doc['event_id']}\n")
    elif handed:
        sys.stdout.write(f"queued for the Kumix process holding the device (or the next kumix run): {doc['txn_id']}\n")
    else:
        sys.stdout.write(f"queued (homeserver unreachable); it goes out on the next kumix run: {doc['txn_id']}\n")
    return 0


def cmd_tail(ctx: CliContext) -> int:
    as_json = ctx.json

    async def use(k: Kumix) -> None:
        from kumix.core.models import Resync, TimelineUpdate

        room = await k.room(ctx.args.room)
        for ev in await k.history(room.room_id, limit=max(1, ctx.args.history)) if ctx.args.history else []:
            _print_event(ev, as_json)
        async with k.subscribe(rooms={room.room_id}) as updates:
            await k.start_live()
            async for update in updates:
                if isinstance(update, TimelineUpdate):
                    _print_event(update.event, as_json)
                elif isinstance(update, Resync):
                    for u in (await k.timeline(room.room_id, after=None)).updates:
                        if u.cursor > update.cursor:
                            _print_event(u.event, as_json)

    ctx.run(lambda k: until_interrupted(use(k)))
    return 0


def cmd_history(ctx: CliContext) -> int:
    events = ctx.run(lambda k: k.history(ctx.args.room, limit=ctx.args.limit))
    if ctx.json:
        emit_json([e.to_json() for e in events])
    else:
        for ev in events:
            _print_event(ev, False)
    return 0


def cmd_search(ctx: CliContext) -> int:
    hits = ctx.run(lambda k: k.search(ctx.args.query, room=ctx.args.room, limit=ctx.args.limit))
    if ctx.json:
        emit_json([h.to_json() for h in hits])
    else:
        emit_table([[printable(h.room_id, 255), printable(h.sender, 40), printable(h.snippet, 80)] for h in hits],
                   ["ROOM", "SENDER", "MATCH"])
    return 0


def _key_file_passphrase(ctx: CliContext, confirm: bool) -> str:
    if ctx.args.passphrase_stdin:
        return _read_stdin_secret("passphrase")
    first = _prompt_secret("Key file passphrase: ", "key file passphrase", "--passphrase-stdin")
    if confirm and _prompt_secret("Repeat: ", "key file passphrase", "--passphrase-stdin") != first:
        raise BadRequest("the two passphrases differ")
    if not first:
        raise BadRequest("an empty key file passphrase is not accepted")
    return first


def cmd_keys_export(ctx: CliContext) -> int:
    passphrase = _key_file_passphrase(ctx, confirm=True)
    ctx.run(lambda k: k.export_keys(ctx.args.path, passphrase))
    if ctx.json:
        emit_json({"exported": str(ctx.args.path)})
    else:
        sys.stdout.write(f"room keys exported to {ctx.args.path}\n")
    return 0


def cmd_keys_import(ctx: CliContext) -> int:
    passphrase = _key_file_passphrase(ctx, confirm=False)
    recovered = ctx.run(lambda k: k.import_keys(ctx.args.path, passphrase))
    if ctx.json:
        emit_json({"imported": str(ctx.args.path), "decrypted_events": recovered})
    else:
        sys.stdout.write(f"room keys imported; {recovered} held event(s) decrypted\n")
    return 0


__all__ = ["register"]
