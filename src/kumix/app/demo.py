"""The demo use case: a local homeserver, two users (alice and a bot), seeded rooms, and a
bot that answers in the encrypted demo room.

Everything lives under `<data dir>/demo/`: the Synapse directory (SQLite, loopback only),
each user's data directory, the users' passwords and a generated vault passphrase file
(all 0600). A second run reuses all of it, including each user's device: when the old
port cannot be bound again the same homeserver runs on a new one and the stored sessions
are pointed at the new address (`Kumix.relocate`); a device's keys are never discarded.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumix.app.kumix import Kumix, Notice
from kumix.app.settings import Settings
from kumix.core.errors import BadRequest, StateCorrupt
from kumix.core.models import TimelineUpdate
from kumix.fs.private_file import write_private
from kumix.matrix.homeserver import Homeserver, HomeserverConfig, free_port
from kumix.store.vault import ENV_PASSPHRASE_FILE

DEMO_ROOM = "Kumix demo"
SEED_MESSAGES = (
    "Welcome to **Kumix**! This room is *end-to-end encrypted*.",
    "Markdown works: `inline code`, [links](https://matrix.org) and lists:\n\n- one\n- two",
    "Type in another client, or run `kumix send`, and the bot answers.",
)
GREETING = "Hello bot, are you there?"
USERS = ("alice", "bot")
PASSPHRASE_FILE_VARIABLE = ENV_PASSPHRASE_FILE
DemoServer = Homeserver
"""The local homeserver a demo runs (`kumix.matrix.homeserver.Homeserver`)."""


class DemoState:
    """seed.json: demo users' passwords, the port, and which rooms were seeded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "seed.json"
        self.doc: dict[str, Any] = {}
        fix = f"remove {root} to start the demo afresh"
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StateCorrupt(f"demo state {self.path} is unreadable ({exc}); {fix}") from None
            if not isinstance(doc, dict):
                raise StateCorrupt(f"demo state {self.path} is not a JSON object; {fix}")
            self.doc = doc

    @property
    def seeded(self) -> bool:
        return bool(self.doc.get("seeded"))

    def save(self) -> None:
        write_private(self.path, json.dumps(self.doc, indent=2))

    def vault_env(self) -> dict[str, str]:
        # Demo data is throwaway, so its vaults use a generated passphrase file; a real
        # account uses the keyring or the user's own passphrase (see docs/matrix.md).
        passfile = self.root / "vault-passphrase"
        if not passfile.exists():
            write_private(passfile, secrets.token_urlsafe(24) + "\n")
        return {ENV_PASSPHRASE_FILE: str(passfile)}

    def user_dir(self, name: str) -> Path:
        return self.root / f"kumix-{name}"


def prepare(settings: Settings, port: int | None) -> tuple[DemoState, Homeserver]:
    """The demo directory, its state and the (not yet started) homeserver. The port is the
    one asked for, else the last one used (kept, so nothing has to move), else a free one."""
    settings.ensure_data_dir()
    root = settings.data_dir / "demo"
    try:
        root.mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BadRequest(f"demo directory {str(root)!r} cannot be used: {exc.strerror}") from None
    state = DemoState(root)
    last = int(state.doc.get("port", 0))
    chosen = port or (_port_if_bindable(last) if last else free_port())
    return state, Homeserver(HomeserverConfig(root / "homeserver", chosen))


def _port_if_bindable(port: int) -> int:
    """The last port again if a listener can have it. SO_REUSEADDR as Synapse's own listener
    sets it: a port whose old connections linger in TIME_WAIT (a rerun seconds after Ctrl-C)
    is free for it, and must not count as taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def register_users(state: DemoState, hs: Homeserver) -> None:
    state.doc["port"] = hs.config.port
    users = state.doc.setdefault("users", {})
    for name in USERS:
        if name not in users:
            password = secrets.token_urlsafe(16)
            users[name] = {"user_id": hs.register(name, password), "password": password}
    state.save()


@asynccontextmanager
async def open_user(state: DemoState, name: str, hs: Homeserver, settings: Settings,
                    notice: Notice | None = None) -> AsyncIterator[Kumix]:
    """A demo user's `Kumix`, logged in: its stored device when it has one (pointed at the
    homeserver's current address), else a first login."""
    data = state.user_dir(name)
    data.mkdir(exist_ok=True, mode=0o700)
    user_settings = Settings(data_dir=data, policy=settings.policy, extension_roots=settings.extension_roots)
    async with Kumix.open(user_settings, env=state.vault_env(), interactive=False, notice=notice,
                          command="kumix demo") as k:
        if k.has_account():
            k.relocate(hs.url)
        else:
            user = state.doc["users"][name]
            await k.login_password(hs.url, user["user_id"], user["password"])
        yield k


@dataclass(frozen=True)
class DemoRooms:
    demo: str
    general: str
    direct: str


async def seed(alice: Kumix, bot: Kumix, state: DemoState) -> DemoRooms:
    """Create the rooms and first messages once; later runs find them in the state."""
    if state.seeded:
        rooms = state.doc["rooms"]
        return DemoRooms(rooms["demo"], rooms["general"], rooms["direct"])
    bot_id = state.doc["users"]["bot"]["user_id"]
    demo = await alice.create_room(name=DEMO_ROOM, topic="Talk to the bot (encrypted)", encrypted=True,
                                   invite=(bot_id,))
    general = await alice.create_room(name="General", topic="An unencrypted room", encrypted=False,
                                      invite=(bot_id,))
    direct = await alice.create_room(direct_with=bot_id)
    await bot.rooms()
    for room_id in (demo, general, direct):
        await bot.join(room_id)
    await alice.rooms()
    for text in SEED_MESSAGES:
        await alice.send_text(demo, text)
    await bot.send_text(general, "Hello from the **General** room.")
    state.doc["rooms"] = {"demo": demo, "general": general, "direct": direct}
    state.doc["seeded"] = True
    state.save()
    return DemoRooms(demo, general, direct)


def answer_to(text: str) -> str:
    return f"🤖 You said: *{text[:200]}*"


async def run_bot(bot: Kumix, room_id: str, *, started: Callable[[], None] | None = None) -> None:
    """Answer every text message another user writes in the demo room after the bot
    started (by the homeserver's timestamp): what was written before — the seed, earlier
    runs — is history, not a question, whichever sync happens to deliver it. Runs until
    cancelled."""
    me = bot.account().user_id
    since_ms = int(time.time() * 1000)
    answered: set[str] = set()
    async with bot.subscribe(rooms={room_id}) as updates:
        if started is not None:
            started()
        async for update in updates:
            if not isinstance(update, TimelineUpdate):
                continue
            ev = update.event
            if ev.kind != "text" or ev.sender == me or ev.origin_ts < since_ms or ev.event_id in answered:
                continue
            answered.add(ev.event_id)  # an edit or a late decryption updates it again
            await bot.send_text(room_id, answer_to(ev.body), notice=True)
