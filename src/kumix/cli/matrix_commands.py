"""Matrix commands: login, logout, whoami, rooms, join, create-room, send, tail, history,
search, keys export|import.

Secrets come from stdin or a terminal prompt, never from argv (visible to every local user
through /proc). Progress of long operations goes to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from kumix.app.markdown import extension_renderer
from kumix.app.matrix_session import MatrixService, Session
from kumix.cli.context import CliContext
from kumix.cli.output import emit_json, emit_table, printable, usage_error
from kumix.core.errors import ALL_ERRORS, BadRequest, KumixError, NotFound, StateBusy, Unavailable
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


def _progress(message: str) -> None:
    sys.stderr.write(f"kumix: {message}\n")
    sys.stderr.flush()


def _service(ctx: CliContext) -> MatrixService:
    ctx.settings.ensure_data_dir()
    return MatrixService(ctx.settings.data_dir, ctx.database, progress=_progress,
                         command=f"kumix {ctx.args.command}")


def _run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


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
        raise BadRequest(f"no {what} entered") from None


@contextlib.asynccontextmanager
async def _session(ctx: CliContext, *, markdown: bool = False) -> AsyncIterator[Session]:
    service = _service(ctx)
    # The device first: when another process holds it, no extension host is started for nothing.
    async with service.session() as session:
        if markdown:
            async with extension_renderer(ctx.extensions_if_loadable(), ctx.settings) as renderer:
                service.renderer = renderer
                yield session
        else:
            yield session


HANDOFF_WAIT_SECONDS = 30.0
"""How long `send` waits for the process holding the device to deliver a handed-over message."""


def _busy_note(busy: StateBusy, doing: str) -> dict[str, Any]:
    """Say on stderr who holds the device and what this command does instead. A `state_busy`
    that is not the device lock (a database lock timeout) is raised as it is."""
    if "holder" not in busy.details:
        raise busy
    holder: dict[str, Any] = busy.details["holder"] or {}
    who = f"pid {holder['pid']}, {printable(str(holder['command']), 60)}" if holder else "another process"
    _progress(f"another Kumix process ({who}) is using this account's device; {doing}")
    return holder


async def _hand_off(ctx: CliContext) -> dict[str, Any]:
    """Put a text message in the outbox for the process that holds the device: its outbox
    loop polls the shared table and sends it, encrypted with its own keys. Waits a while
    to report the event id."""
    a = ctx.args
    service = _service(ctx)
    room_id = service.known_room(a.room)
    if a.plain:
        content = await service.text_content(a.text, markdown=False, reply_to=a.reply_to)
    else:
        async with extension_renderer(ctx.extensions_if_loadable(), ctx.settings) as renderer:
            service.renderer = renderer
            content = await service.text_content(a.text, reply_to=a.reply_to)
    entry = service.outbox.enqueue(room_id, "m.room.message", content)
    deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
    while True:
        got = service.outbox.get(entry.txn_id)
        assert got is not None
        if got.state in ("sent", "failed") or time.monotonic() >= deadline:
            return got.to_json()
        await asyncio.sleep(0.1)


def _event_line(ev: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.origin_ts / 1000)) if ev.origin_ts else "--:--:--"
    sender = printable(ev.sender, 60)
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
    service = _service(ctx)
    if a.access_token_stdin:
        token = _read_stdin_secret("access token")
        account = _run(service.login_token(a.homeserver, token))
    else:
        if not a.user:
            raise BadRequest("--user is needed to log in with a password")
        password = (_read_stdin_secret("password") if a.password_stdin
                    else _prompt_secret("Matrix password: ", "password", "--password-stdin"))
        account = _run(service.login_password(a.homeserver, a.user, password))
    if ctx.json:
        emit_json({"user_id": account.user_id, "device_id": account.device_id, "homeserver": account.homeserver})
    else:
        sys.stdout.write(f"logged in as {account.user_id} (device {account.device_id})\n")
    return 0


def cmd_logout(ctx: CliContext) -> int:
    _run(_service(ctx).logout())
    if ctx.json:
        emit_json({"logged_out": True})
    else:
        sys.stdout.write("logged out; the access token is revoked and local session data removed\n")
    return 0


def cmd_whoami(ctx: CliContext) -> int:
    async def go() -> dict[str, str]:
        async with _session(ctx) as s:
            acc = await s.client.whoami()
            return {"user_id": acc.user_id, "device_id": acc.device_id, "homeserver": acc.homeserver}

    try:
        doc = _run(go())
    except StateBusy as busy:
        _busy_note(busy, "answering from local state")
        acc = _service(ctx).account()
        doc = {"user_id": acc.user_id, "device_id": acc.device_id, "homeserver": acc.homeserver}
    if ctx.json:
        emit_json(doc)
    else:
        sys.stdout.write(f"{printable(doc['user_id'])} (device {printable(doc['device_id'])}) on "
                         f"{printable(doc['homeserver'])}\n")
    return 0


async def _sync_or_cached(s: Session) -> bool:
    """Bring the cache up to date; offline, the cache still answers (said on stderr)."""
    try:
        await s.sync()
        return True
    except Unavailable as exc:
        _progress(f"homeserver unreachable ({exc.message}); showing cached data")
        return False


def cmd_rooms(ctx: CliContext) -> int:
    async def go() -> list[Any]:
        async with _session(ctx) as s:
            await _sync_or_cached(s)
            return s.rooms()

    try:
        rooms = _run(go())
    except StateBusy as busy:
        _busy_note(busy, "showing the local state it keeps up to date")
        rooms = _service(ctx).timeline.rooms()
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
    async def go() -> str:
        async with _session(ctx) as s:
            await s.sync()
            return await s.join(ctx.args.room)

    return _report_room(ctx, "joined", _run(go()))


def _report_room(ctx: CliContext, verb: str, room_id: str) -> int:
    """The room id the homeserver answered; it is the server's text, so printed safely."""
    if ctx.json:
        emit_json({"room_id": room_id})
    else:
        sys.stdout.write(f"{verb} {printable(room_id, 255)}\n")
    return 0


def cmd_create_room(ctx: CliContext) -> int:
    a = ctx.args

    async def go() -> str:
        async with _session(ctx) as s:
            await s.sync()
            if a.direct:
                return await s.create_direct(a.direct, encrypted=not a.unencrypted)
            return await s.create_room(name=a.name, topic=a.topic, alias=a.alias, encrypted=not a.unencrypted,
                                       invite=tuple(a.invite), public=a.public)

    return _report_room(ctx, "created", _run(go()))


def cmd_send(ctx: CliContext) -> int:
    a = ctx.args
    if (a.text is None) == (a.file is None):
        return usage_error("kumix send", "give either TEXT or --file PATH", as_json=ctx.json)

    async def go() -> dict[str, Any]:
        async with _session(ctx, markdown=not a.plain) as s:
            online = await _sync_or_cached(s)
            room_id = await s.resolve(a.room)
            if a.file is not None:
                entry = await s.send_file(room_id, a.file)
            else:
                entry = await s.send_text(room_id, a.text, markdown=not a.plain, reply_to=a.reply_to,
                                          deliver=online)
            if online:
                # Earlier messages still queued from an offline run go out too, in order.
                with contextlib.suppress(Unavailable):
                    await s.flush_outbox()
            final = s.outbox.get(entry.txn_id)
            assert final is not None
            return final.to_json()

    holder: dict[str, Any] | None = None
    try:
        doc = _run(go())
    except StateBusy as busy:
        if a.file is not None:
            # A file is encrypted and uploaded with the device's keys: only its holder can.
            raise
        holder = _busy_note(busy, "handing the message to it")
        doc = _run(_hand_off(ctx))
        doc["handed_to"] = holder
    if doc["state"] == "failed":
        # A failure is reported like every other one (`{"error": {code, message}}` with
        # --json, exit 1), with the outbox entry in the details.
        code, _, message = str(doc["error"] or "internal: unknown failure").partition(": ")
        error_class = {cls.code: cls for cls in ALL_ERRORS}.get(code, KumixError)
        raise error_class(f"not sent: {message or code}", details={"outbox": doc})
    if ctx.json:
        emit_json(doc)
    elif doc["state"] == "sent":
        sys.stdout.write(f"sent {doc['event_id']}\n")
    elif holder is not None:
        sys.stdout.write(f"queued for the Kumix process holding the device (or the next kumix run): {doc['txn_id']}\n")
    else:
        sys.stdout.write(f"queued (homeserver unreachable); it goes out on the next kumix run: {doc['txn_id']}\n")
    return 0


def cmd_tail(ctx: CliContext) -> int:
    as_json = ctx.json

    async def go() -> None:
        async with _session(ctx, markdown=True) as s:
            online = await _sync_or_cached(s)
            room_id = await s.resolve(ctx.args.room) if online else ctx.args.room
            if s.timeline.room(room_id) is None:
                raise NotFound(f"not a room of this account: {room_id}")
            for ev in s.timeline.events(room_id, limit=max(0, ctx.args.history)):
                _print_event(ev, as_json)

            def show(ev: Event) -> None:
                if ev.room_id == room_id:
                    _print_event(ev, as_json)

            s.add_listener(show)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await s.run(stop, on_retry=lambda exc, d: _progress(f"{exc.message}; retrying in {d:.1f} s"))
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    _run(go())
    return 0


def cmd_history(ctx: CliContext) -> int:
    async def go() -> list[Event]:
        async with _session(ctx) as s:
            await s.sync()
            room_id = await s.resolve(ctx.args.room)
            # Like tail: a room that is not ours is an error, not an empty history.
            if s.timeline.room(room_id) is None:
                raise NotFound(f"not a room of this account: {room_id}")
            limit = ctx.args.limit
            # The newest `limit` events: what the cache holds, topped up from the server by
            # backward pagination when the cache has fewer.
            missing = limit - len(s.service.timeline.events(room_id, limit=limit))
            if missing > 0:
                await s.paginate(room_id, missing)
            return s.service.timeline.events(room_id, limit=limit)

    try:
        events = _run(go())
    except StateBusy as busy:
        _busy_note(busy, "showing the local state it keeps up to date")
        service = _service(ctx)
        events = service.timeline.events(service.known_room(ctx.args.room), limit=ctx.args.limit)
    if ctx.json:
        emit_json([e.to_json() for e in events])
    else:
        for ev in events:
            _print_event(ev, False)
    return 0


def cmd_search(ctx: CliContext) -> int:
    async def go() -> list[Any]:
        async with _session(ctx) as s:
            await _sync_or_cached(s)
            room_id = await s.resolve(ctx.args.room) if ctx.args.room else None
            # Like history and tail: a room that is not ours is an error, not "no hits".
            if room_id is not None and s.timeline.room(room_id) is None:
                raise NotFound(f"not a room of this account: {room_id}")
            return s.search(ctx.args.query, room_id=room_id, limit=ctx.args.limit)

    try:
        hits = _run(go())
    except StateBusy as busy:
        _busy_note(busy, "searching the local state it keeps up to date")
        service = _service(ctx)
        room_id = service.known_room(ctx.args.room) if ctx.args.room else None
        hits = service.search_index.search(ctx.args.query, room_id=room_id, limit=ctx.args.limit)
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

    async def go() -> None:
        async with _session(ctx) as s:
            _progress("exporting room keys…")
            await s.export_keys(ctx.args.path, passphrase)

    _run(go())
    if ctx.json:
        emit_json({"exported": str(ctx.args.path)})
    else:
        sys.stdout.write(f"room keys exported to {ctx.args.path}\n")
    return 0


def cmd_keys_import(ctx: CliContext) -> int:
    passphrase = _key_file_passphrase(ctx, confirm=False)

    async def go() -> int:
        async with _session(ctx) as s:
            await _sync_or_cached(s)
            return await s.import_keys(ctx.args.path, passphrase)

    recovered = _run(go())
    if ctx.json:
        emit_json({"imported": str(ctx.args.path), "decrypted_events": recovered})
    else:
        sys.stdout.write(f"room keys imported; {recovered} held event(s) decrypted\n")
    return 0


__all__ = ["register"]
