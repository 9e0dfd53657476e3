"""Use cases run in-process against `Kumix`, with the real Synapse, real SQLite and the
real markdown worker: what a front end (the CLI, the web server) gets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tests.synapse_harness import SynapseHarness

from kumix.app.kumix import Kumix
from kumix.app.matrix_session import MatrixService
from kumix.app.settings import Settings
from kumix.core.errors import KumixError, NotFound, StateBusy, Unauthorized
from kumix.core.models import Resync, Room, TimelineUpdate

UPDATE_WAIT_S = 60.0
"""Bound on waiting for an update that must come (a failure, not a timing assertion)."""


def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir)


async def next_text(events: object, body: str) -> TimelineUpdate:
    from kumix.app.events import Subscription

    assert isinstance(events, Subscription)
    async with asyncio.timeout(UPDATE_WAIT_S):
        while True:
            update = await events.get()
            if isinstance(update, TimelineUpdate) and update.event.body == body:
                return update


async def test_rooms_send_history_search_and_subscribe_with_replay_from_a_cursor(
    synapse: SynapseHarness, alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    async with Kumix.open(settings(data_dir), env=vault_env, interactive=False) as k:
        room_id = await k.create_room(name="core", encrypted=True)
        assert room_id in {r.room_id for r in await k.rooms()}
        assert isinstance(await k.room(room_id), Room)
        start = k.cursor()
        async with k.subscribe(rooms={room_id}) as events:
            await k.start_live()
            sent = await k.send_text(room_id, "hello **core**")
            assert sent.sent
            assert sent.handed_to is None
            got = await next_text(events, "hello **core**")
        assert got.cursor > start
        assert got.event.event_id == sent.entry.event_id
        assert got.event.formatted_html == "<p>hello <strong>core</strong></p>"  # rendered by the worker
        # A client that reconnects with its last cursor gets what it missed, from the store.
        async with k.subscribe(rooms={room_id}, since=start) as replay:
            assert (await next_text(replay, "hello **core**")).cursor == got.cursor
        assert [e.body for e in await k.history(room_id, limit=5)][-1] == "hello **core**"
        assert [h.event_id for h in await k.search("core")] == [got.event.event_id]
        page = await k.timeline(room_id, limit=50)
        assert page.events[-1].event_id == got.event.event_id
        with pytest.raises(NotFound):
            await k.room("!not-mine:localhost")


async def test_a_second_kumix_on_a_held_device_hands_text_over_and_reads_local_state(
    synapse: SynapseHarness, alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    notices: list[str] = []
    async with Kumix.open(settings(data_dir), env=vault_env, interactive=False) as holder:
        room_id = await holder.create_room(name="handoff", encrypted=True)
        async with holder.subscribe(rooms={room_id}) as events:
            await holder.start_live()
            async with Kumix.open(settings(data_dir), env=vault_env, interactive=False,
                                  notice=notices.append, command="second") as other:
                result = await other.send_text(room_id, "handed over", markdown=False)
                assert result.handed_to is not None
                assert result.handed_to.pid == os.getpid()
                assert room_id in {r.room_id for r in await other.rooms()}  # from local state
                with pytest.raises(StateBusy):
                    await other.send_file(room_id, data_dir / "state.db")  # needs the keys
            delivered = await next_text(events, "handed over")
        assert delivered.event.sender == alice.account().user_id
        assert any("is using this account's device" in n for n in notices), notices


async def test_a_failing_task_cancels_the_block_and_comes_out_as_itself(data_dir: Path) -> None:
    async def fails() -> None:
        raise Unauthorized("the token was revoked")

    body_cancelled = False
    with pytest.raises(Unauthorized, match="revoked"):
        async with Kumix.open(settings(data_dir)) as k:
            k.spawn(fails(), name="failing")
            try:
                await asyncio.sleep(UPDATE_WAIT_S)
            except asyncio.CancelledError:
                body_cancelled = True
                raise
    assert body_cancelled


async def test_leaving_the_block_cancels_every_task(data_dir: Path) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(UPDATE_WAIT_S)
        finally:
            cancelled.set()

    async with Kumix.open(settings(data_dir)) as k:
        k.spawn(forever(), name="forever")
        await started.wait()
    assert cancelled.is_set()


async def test_not_logged_in_is_unauthorized_and_says_so_without_a_command(data_dir: Path) -> None:
    async with Kumix.open(settings(data_dir)) as k:
        with pytest.raises(Unauthorized) as info:
            await k.rooms()
    assert "kumix" not in info.value.message
    assert isinstance(info.value, KumixError)


async def test_overflowing_subscriber_gets_a_resync_it_can_replay_from(
    synapse: SynapseHarness, alice: MatrixService, data_dir: Path, vault_env: dict[str, str]
) -> None:
    async with Kumix.open(settings(data_dir), env=vault_env, interactive=False) as k:
        room_id = await k.create_room(name="overflow", encrypted=False)
        async with k.subscribe(rooms={room_id}, maxsize=1) as slow:
            for n in range(3):
                await k.send_text(room_id, f"m{n}", markdown=False)
            await k.rooms()  # a sync: the echoes arrive while nobody reads
            delivered: list[TimelineUpdate] = []
            while not isinstance(update := await slow.get(), Resync):
                if isinstance(update, TimelineUpdate):
                    delivered.append(update)
        assert slow.dropped > 0
        assert update.cursor == max((u.cursor for u in delivered), default=0)
        async with k.subscribe(rooms={room_id}, since=update.cursor) as replay:
            replayed = []
            while (u := replay.get_nowait()) is not None:
                assert isinstance(u, TimelineUpdate)
                replayed.append(u.event.body)
        # Nothing is lost: what was delivered plus what the store replays is every message.
        assert {"m0", "m1", "m2"} <= {u.event.body for u in delivered} | set(replayed)


async def test_a_room_created_while_live_needs_no_further_batch_when_the_loop_applied_it_first(
    synapse: SynapseHarness, alice: MatrixService, data_dir: Path, vault_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The homeserver answers the live loop's long poll as soon as the room exists, so the loop
    may apply the batch that brings the room before `create_room` looks. It must then return
    at once, not wait for the loop's next batch (which comes only with the next event or the
    long poll's end: a room creation that took 30 s, and a web request timing out)."""
    from kumix.app import matrix_session
    from kumix.matrix.client import MatrixClient

    applied: list[int] = []
    real_apply = matrix_session.Session.apply

    async def counting_apply(self: matrix_session.Session, batch: object) -> None:
        await real_apply(self, batch)  # type: ignore[arg-type]
        applied.append(len(applied))

    monkeypatch.setattr(matrix_session.Session, "apply", counting_apply)
    async with Kumix.open(settings(data_dir), env=vault_env, interactive=False) as k:
        await k.start_live()
        real_create = MatrixClient.create_room
        seen_at: list[int] = []

        async def create_then_let_the_loop_apply_it(self: MatrixClient, **kwargs: object) -> str:
            room_id: str = await real_create(self, **kwargs)  # type: ignore[arg-type]
            # The order that loses the race: the loop's batch with the room is applied first.
            async with asyncio.timeout(UPDATE_WAIT_S):
                while (room := k._matrix().timeline.room(room_id)) is None or room.membership != "join":
                    await asyncio.sleep(0.02)
            seen_at.append(len(applied))
            return room_id

        monkeypatch.setattr(MatrixClient, "create_room", create_then_let_the_loop_apply_it)
        room_id = await k.create_room(name="raced", encrypted=False)
        assert room_id in {r.room_id for r in await k.rooms()}
        assert len(applied) == seen_at[0], "returned without waiting for another batch of the loop"
