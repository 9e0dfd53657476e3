"""The homeserver killed and restarted during sync and during send; a Kumix process
killed mid-send. After recovery every message exists exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.matrix.ack_dropping_proxy import AckDroppingProxy
from tests.matrix.conftest import make_service
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app.matrix_session import MatrixService
from kumix.core.errors import Unavailable
from kumix.store.database import Database
from kumix.store.outbox import Outbox
from kumix.store.timeline import TimelineStore

ROUNDS = 600  # 0.1 s each: a liveness bound for waits, never a timing assertion


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(ROUNDS):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def restart_guard(synapse: SynapseHarness) -> Iterator[SynapseHarness]:
    """Whatever a test does to the server, the next test finds it running."""
    try:
        yield synapse
    finally:
        synapse.server.resume()
        if not synapse.server.is_answering():
            synapse.server.kill()
            synapse.start()


async def _bob_service(synapse: SynapseHarness, bob: TestUser, tmp_path: Path, env: dict[str, str]) -> MatrixService:
    service = make_service(tmp_path / "bob", env)
    await service.login_password(synapse.url, bob.user_id, bob.password)
    return service


async def test_sync_survives_homeserver_kill_and_restart_without_loss_or_duplicates(
    restart_guard: SynapseHarness, alice: MatrixService, bob: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    synapse = restart_guard
    bob_service = await _bob_service(synapse, bob, tmp_path, vault_env)
    retries: list[float] = []
    async with alice.session() as s, bob_service.session() as b:
        await s.sync()
        room_id = await s.create_room(name="Resilience", encrypted=False, invite=(bob.user_id,))
        await b.sync()
        await b.join(room_id)
        runner = asyncio.create_task(s.run(on_retry=lambda exc, delay: retries.append(delay)))
        try:
            await b.send_text(room_id, "before the crash", markdown=False)
            await wait_for(lambda: alice.timeline.count_events(room_id, "before the crash") == 1, "first message")

            synapse.server.kill()  # the long-poll in flight dies with the server
            await wait_for(lambda: len(retries) >= 2, "sync retries with backoff while the server is down")
            synapse.start()

            await b.send_text(room_id, "after the restart", markdown=False)
            await wait_for(lambda: alice.timeline.count_events(room_id, "after the restart") == 1, "second message")
        finally:
            runner.cancel()  # the owner's cancellation is the only stop: no flag to forget
            await asyncio.gather(runner, return_exceptions=True)
        # Ended by that cancellation, not by a failure of either loop.
        assert runner.cancelled()
        await s.sync()
        assert alice.timeline.count_events(room_id, "before the crash") == 1
        assert alice.timeline.count_events(room_id, "after the restart") == 1
    bob_service.db.close()


async def test_message_sent_while_homeserver_down_is_delivered_once_with_same_txn_id(
    restart_guard: SynapseHarness, alice: MatrixService
) -> None:
    synapse = restart_guard
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="Offline send", encrypted=True)
        synapse.server.kill()
        entry = await s.send_text(room_id, "written while offline", markdown=False)
        assert entry.state == "pending"
        assert entry.event_id is None
        with pytest.raises(Unavailable):
            await s.flush_outbox()
        synapse.start()
        delivered = await s.flush_outbox()
        assert [d.txn_id for d in delivered] == [entry.txn_id]
        await s.sync()
        await s.sync()
        assert alice.timeline.count_events(room_id, "written while offline") == 1
        event = alice.timeline.event(delivered[0].event_id or "")
        assert event is not None
        assert event.transaction_id == entry.txn_id


async def test_homeserver_killed_mid_send_then_retry_does_not_duplicate(
    restart_guard: SynapseHarness, alice: MatrixService
) -> None:
    synapse = restart_guard
    async with alice.session() as s:
        await s.sync()
        room_id = await s.create_room(name="Mid-send", encrypted=False)
        synapse.server.pause()  # the request is written to the socket, never answered
        send = asyncio.create_task(s.send_text(room_id, "in flight when the server died", markdown=False))
        await wait_for(lambda: any(e.state == "sending" for e in alice.outbox.open_entries()), "send in flight")
        synapse.server.kill()
        entry = await send
        assert entry.state == "pending"
        synapse.start()
        await s.flush_outbox()
        await s.sync()
        assert alice.timeline.count_events(room_id, "in flight when the server died") == 1


async def kumix(args: list[str], env: dict[str, str], stdin: str | None = None,
                check: bool = True) -> asyncio.subprocess.Process | str:
    """Run the real CLI without blocking the event loop (the proxy lives in it)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")} | env
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kumix", *args, env=full, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if not check:
        return proc
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 180)
    assert proc.returncode == 0, (args, out, err)
    return out.decode()


async def test_kumix_killed_between_send_and_ack_neither_loses_nor_duplicates(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str]
) -> None:
    data = tmp_path / "cli-data"
    env = {**vault_env, "KUMIX_DATA_DIR": str(data)}
    async with AckDroppingProxy(synapse.server.config.port) as proxy:
        await kumix(["login", "--homeserver", proxy.url, "--user", alice_user.user_id, "--password-stdin"], env,
                    alice_user.password + "\n")
        out = await kumix(["create-room", "--name", "Crash test", "--unencrypted", "--json"], env)
        room_id = json.loads(str(out))["room_id"]

        proxy.drop_send_acks = True
        victim = await kumix(["send", room_id, "sent by a process that was killed", "--plain"], env, check=False)
        assert isinstance(victim, asyncio.subprocess.Process)
        await asyncio.wait_for(proxy.ack_dropped.wait(), 120)  # the server created the event
        victim.kill()  # SIGKILL: no cleanup, the outbox row stays "sending"
        await victim.wait()
        proxy.drop_send_acks = False

        db = Database(data / "state.db")
        try:
            outbox = Outbox(db)
            [orphan] = outbox.open_entries()
            assert orphan.state == "sending"
            assert orphan.event_id is None

            await kumix(["send", room_id, "next message", "--plain"], env)
            entry = outbox.get(orphan.txn_id)
            assert entry is not None
            assert entry.state == "sent"
            assert entry.attempts == 2
            await kumix(["rooms"], env)
            timeline = TimelineStore(db)
            assert timeline.count_events(room_id, "sent by a process that was killed") == 1
            assert timeline.count_events(room_id, "next message") == 1
            bodies = [e.body for e in timeline.events(room_id) if e.kind == "text"]
            assert bodies.index("sent by a process that was killed") < bodies.index("next message")
        finally:
            db.close()
