"""Stopping the market source never hangs, whenever the stop lands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alerts.ports import ManualClock
from bot.market.source import YahooMarketData
from bot.market.yahoo_poll import YahooPoller
from tests.support.runs import SlowToCancel

SATURDAY = datetime(2025, 1, 25, 12, 0, tzinfo=UTC)  # every market closed: the source idles


async def test_a_stop_while_the_poll_loop_puts_its_wait_away_is_not_swallowed() -> None:
    """The idle wait ends (the watches changed) and is cancelling its sleep when the stop
    arrives: taken for the sleep's own cancel, the stop was swallowed, the poll loop went on,
    and close() waited for it forever."""
    slow = SlowToCancel()
    clock = ManualClock(SATURDAY)
    source = YahooMarketData(
        clock=clock,
        poller=YahooPoller(clock=clock, base_url="http://127.0.0.1:9"),
        stream_url=None,
        sleep=slow.sleep,
    )
    source.set_symbols(["NVDA"])
    reader = asyncio.create_task(anext(source.batches()))
    try:
        await asyncio.wait_for(slow.sleeping.wait(), 5)
        source.set_symbols(["NVDA", "AMD"])  # the wait ends; the loop cancels its sleep...
        await asyncio.wait_for(slow.cancelling.wait(), 5)
        closing = asyncio.create_task(source.close())  # ...when the stop arrives
        await asyncio.sleep(0)
        slow.release.set()
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done, "the poll loop swallowed the stop and kept running"
    finally:
        slow.release.set()
        reader.cancel()
        await asyncio.wait({reader}, timeout=5)
