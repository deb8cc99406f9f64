"""Delivery lanes end as soon as their channel is empty (storm throughput, latency)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import AlertMessage, MarketSession, Quote
from alerts.ports import ManualClock, MessageRef
from bot.pipeline import Pipeline
from bot.pipeline.delivery import START_BATCH
from bot.pipeline.lane_starts import LaneStarts
from bot.store import Delivery, SqlStore

CHANNEL = "console:paced"
PACE = 30.0  # seconds between two messages of one channel


class PacedRecorder:
    """A platform with a per-channel pace (as Slack's one message a second), recording posts."""

    name = "console"
    per_channel_interval = PACE

    def __init__(self, store: SqlStore | None = None) -> None:
        self.posts: list[AlertMessage] = []
        self.posted = asyncio.Event()
        self.store = store
        self.claims_at_send: list[int] = []  # the store's claim count as each post went out

    def handles(self, channel: str) -> bool:
        return channel.startswith("console:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self.posts.append(message)
        if isinstance(self.store, CountingStore):
            self.claims_at_send.append(self.store.claims)
        self.posted.set()
        return MessageRef(message.channel, f"m{len(self.posts)}")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref


def _pipeline(
    store: SqlStore, platform: PacedRecorder, clock: ManualClock, *, charts: bool = False
) -> Pipeline:
    """A pipeline with no group wait and no context symbols: a crossing is due at once."""
    return Pipeline(
        store,
        Engine(),
        [platform],
        clock,
        grouping=GroupingConfig(group_wait=timedelta(0)),
        context_symbols=(),
        charts=charts,
    )


async def _next_post(platform: PacedRecorder, within: float) -> None:
    await asyncio.wait_for(platform.posted.wait(), within)
    platform.posted.clear()


async def test_an_emptied_paced_lane_does_not_hold_the_channel(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = PacedRecorder()
    pipeline = _pipeline(sqlite_store, platform, clock)
    for symbol in ("NVDA", "AMD"):
        sqlite_store.add_watch(CHANNEL, symbol, "drop 10%", now=clock.now())
    pipeline.load()
    delivery = asyncio.create_task(pipeline.run_delivery())
    try:
        crash = Quote("NVDA", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
        assert pipeline.ingest_quotes([crash])
        await _next_post(platform, 5.0)
        # Past the pace and the group interval: the next crossing is a new message, due now.
        clock.advance(timedelta(seconds=2 * PACE + 1))
        crash = Quote("AMD", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
        assert pipeline.ingest_quotes([crash])
        # A lane that sat out its pace with nothing left to send kept the channel for PACE
        # seconds of wall time, and the new message waited for it.
        await _next_post(platform, 5.0)
        assert [a.symbol for m in platform.posts for a in m.alerts] == ["NVDA", "AMD"]
    finally:
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)


class CountingStore(SqlStore):
    """The store, counting claims: each is a query over every open lane."""

    claims = 0

    def claim(self, *args: Any, **kwargs: Any) -> list[Delivery]:
        self.claims += 1
        return super().claim(*args, **kwargs)


async def test_an_emptied_lane_costs_the_dispatcher_no_claim(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = CountingStore(f"sqlite:///{tmp_path / 'lanes.db'}")
    store.upgrade()
    platform = PacedRecorder(store)
    pipeline = _pipeline(store, platform, clock)
    store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    pipeline.load()
    delivery = asyncio.create_task(pipeline.run_delivery())
    try:
        crash = Quote("NVDA", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
        assert pipeline.ingest_quotes([crash])
        await _next_post(platform, 5.0)
        await asyncio.sleep(0.2)
        await pipeline.delivery.settled()
        # The lane ended on an empty channel: nothing for the dispatcher to look for (a storm
        # of a thousand lanes woke it a thousand times, each a claim over every open lane).
        assert store.claims == platform.claims_at_send[0]
        assert not store.undelivered_alerts()
    finally:
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)
        store.close()


class ChartingRecorder(PacedRecorder):
    """Unpaced, with charts: records edits and the chart uploads."""

    per_channel_interval = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.edits: list[AlertMessage] = []
        self.edited = asyncio.Event()
        self.uploads = 0

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        self.edits.append(message)
        self.edited.set()
        return ref

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> None:
        self.uploads += 1


async def test_a_slow_chart_does_not_hold_the_channels_next_message(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = ChartingRecorder()
    pipeline = _pipeline(sqlite_store, platform, clock, charts=True)
    asked, release = asyncio.Event(), asyncio.Event()

    async def slow_paths(symbols: Sequence[str]) -> dict[str, list[tuple[datetime, float]]]:
        asked.set()
        await release.wait()  # a first backfill from Yahoo, a loaded machine
        return {}

    pipeline.delivery.chart_paths = slow_paths
    for symbol in ("NVDA", "AMD"):
        sqlite_store.add_watch(CHANNEL, symbol, "drop 10%", now=clock.now())
    pipeline.load()
    delivery = asyncio.create_task(pipeline.run_delivery())
    try:
        crash = Quote("NVDA", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
        assert pipeline.ingest_quotes([crash])
        await _next_post(platform, 5.0)
        await asyncio.wait_for(asked.wait(), 5.0)  # the chart of the post is being drawn
        clock.advance(timedelta(seconds=5))
        crash = Quote("AMD", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
        assert pipeline.ingest_quotes([crash])  # joins the group: an edit of the post
        # The edit goes out while the chart still waits (it waited for the chart before).
        await asyncio.wait_for(platform.edited.wait(), 5.0)
        assert {a.symbol for a in platform.edits[-1].alerts} == {"NVDA", "AMD"}
        release.set()
        await pipeline.delivery.settled()
        assert not sqlite_store.undelivered_alerts()
    finally:
        release.set()
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)


class IterationCounter:
    """Counts event-loop iterations: a callback that puts itself back with ``call_soon``
    runs once per iteration."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def __enter__(self) -> IterationCounter:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.cancel()


class IterationRecorder(PacedRecorder):
    """Unpaced; records the loop iteration each post's request left on, and the claims made
    by then."""

    per_channel_interval = 0.0

    def __init__(self, store: SqlStore, counter: IterationCounter) -> None:
        super().__init__(store)
        self.counter = counter
        self.sent_on: list[int] = []

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self.sent_on.append(self.counter.count)
        return await super().send(message, idempotency_key=idempotency_key)


async def test_a_storms_lanes_put_their_requests_out_on_loop_iterations_of_their_own(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Lanes started together rendered in one loop iteration, and the loop read no socket
    until all had: the storm benchmark's Discord burst took 0.3 s to reach the wire. And the
    dispatcher claims its next batch once the batch it started has had its turns, not on
    every iteration meanwhile (a claim each)."""
    store = CountingStore(f"sqlite:///{tmp_path / 'lanes.db'}")
    store.upgrade()
    channels = [f"console:c{n:02d}" for n in range(START_BATCH + 5)]
    with IterationCounter() as counter:
        platform = IterationRecorder(store, counter)
        pipeline = _pipeline(store, platform, clock)
        for channel in channels:
            store.add_watch(channel, "NVDA", "drop 10%", now=clock.now())
        pipeline.load()
        delivery = asyncio.create_task(pipeline.run_delivery())
        try:
            crash = Quote("NVDA", 88.0, clock.now(), MarketSession.PRE, previous_close=100.0)
            assert pipeline.ingest_quotes([crash])
            async with asyncio.timeout(10):
                while len(platform.posts) < len(channels):
                    await _next_post(platform, 10.0)
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
            store.close()
    first_batch = platform.sent_on[:START_BATCH]
    # One request a loop iteration, in the order the lanes were claimed.
    assert first_batch == sorted(set(first_batch)), platform.sent_on
    # No claim between the first batch's requests: the next came after its last turn.
    assert len(set(platform.claims_at_send[:START_BATCH])) == 1, platform.claims_at_send
    assert platform.claims_at_send[START_BATCH] > platform.claims_at_send[0]


async def test_a_lane_stopped_while_it_waits_its_turn_gives_its_turn_to_the_next() -> None:
    starts = LaneStarts()
    went: list[str] = []

    async def lane(name: str, turn: asyncio.Future[None]) -> None:
        await turn
        went.append(name)

    turns = {name: starts.queue() for name in "abc"}
    lanes = {name: asyncio.create_task(lane(name, turn)) for name, turn in turns.items()}
    lanes["b"].cancel()  # a stop reaches b before its turn
    async with asyncio.timeout(5):
        await starts.drained()
        await asyncio.gather(*lanes.values(), return_exceptions=True)
    assert went == ["a", "c"]
    assert lanes["b"].cancelled()
