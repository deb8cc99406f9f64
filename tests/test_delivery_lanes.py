"""Delivery lanes end as soon as their channel is empty (storm throughput, latency)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import AlertMessage, MarketSession, Quote
from alerts.ports import ManualClock, MessageRef
from bot.pipeline import Pipeline
from bot.store import SqlStore

CHANNEL = "console:paced"
PACE = 30.0  # seconds between two messages of one channel


class PacedRecorder:
    """A platform with a per-channel pace (as Slack's one message a second), recording posts."""

    name = "console"
    per_channel_interval = PACE

    def __init__(self) -> None:
        self.posts: list[AlertMessage] = []
        self.posted = asyncio.Event()

    def handles(self, channel: str) -> bool:
        return channel.startswith("console:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self.posts.append(message)
        self.posted.set()
        return MessageRef(message.channel, f"m{len(self.posts)}")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref


async def _next_post(platform: PacedRecorder, within: float) -> None:
    await asyncio.wait_for(platform.posted.wait(), within)
    platform.posted.clear()


async def test_an_emptied_paced_lane_does_not_hold_the_channel(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = PacedRecorder()
    pipeline = Pipeline(
        sqlite_store,
        Engine(),
        [platform],
        clock,
        grouping=GroupingConfig(group_wait=timedelta(0)),
        context_symbols=(),
    )
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
