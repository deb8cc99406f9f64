"""CPU seconds per idle hour with every needed market closed, on a simulated clock.

marketbot: YahooMarketData watching 500 US stocks plus NQ=F on Saturday 2025-01-25 noon ET,
with the fake Yahoo REST and fake streamer up; one simulated hour is run in one-minute
steps. Baseline in the same run: a plain poll-every-minute loop (what per-alert pollers do)
over the same symbols and the same simulated hour, through the same batched poller.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta

import yfinance as yf

from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.fakes.yahoo_streamer import FakeStreamer
from bot.market.source import YahooMarketData
from bot.market.timer import VirtualSleeper
from bot.market.yahoo_poll import YahooPoller

SATURDAY = datetime(2025, 1, 25, 17, 0, tzinfo=UTC)  # 12:00 ET, every market closed
SYMBOLS = [f"SYM{i:03d}" for i in range(500)] + ["NQ=F"]
STEPS = 60


async def ours(rest: FakeYahoo) -> tuple[float, int, int, int]:
    streamer = FakeStreamer()
    await streamer.start()
    clock = ManualClock(SATURDAY)
    sleeper = VirtualSleeper(clock)
    md = YahooMarketData(
        clock=clock,
        poller=YahooPoller(clock=clock, base_url=rest.base_url),
        stream_url=streamer.url,
        poll_interval=60,
        sleep=sleeper.sleep,
    )
    batches = 0

    async def consume() -> None:
        nonlocal batches
        async for _ in md.batches(SYMBOLS):
            batches += 1

    task = asyncio.create_task(consume())
    await asyncio.wait_for(md.parked.wait(), 10)  # settled into idle
    rest.reset_counts()
    cpu0 = time.process_time()
    for _ in range(STEPS):
        await sleeper.advance(timedelta(minutes=1), settle_rounds=2)
    cpu = time.process_time() - cpu0
    requests = rest.counts.total()
    connections = streamer.connections_total
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await md.close()
    await streamer.stop()
    return cpu, requests, connections, batches


def baseline(rest: FakeYahoo) -> tuple[float, int]:
    clock = ManualClock(SATURDAY)
    poller = YahooPoller(clock=clock, base_url=rest.base_url)
    poller.fetch_quotes_sync(SYMBOLS)  # warm
    rest.reset_counts()
    cpu0 = time.process_time()
    for _ in range(STEPS):
        poller.fetch_quotes_sync(SYMBOLS)
        clock.advance(timedelta(minutes=1))
    cpu = time.process_time() - cpu0
    poller.close()
    return cpu, rest.counts.total()


def main() -> None:
    warnings.filterwarnings("ignore")
    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yf-bench-"))
    with FakeYahoo() as rest:
        for s in SYMBOLS:
            rest.set_quote(
                s,
                price=100.0,
                previous_close=101.0,
                market_state="CLOSED",
                at=SATURDAY - timedelta(hours=20),
            )
        cpu, requests, connections, batches = asyncio.run(ours(rest))
        base_cpu, base_requests = baseline(rest)
    print(f"simulated idle hour, {len(SYMBOLS)} symbols, every market closed")
    print(
        f"marketbot:            {cpu:8.4f} CPU s/h  {requests:4d} HTTP requests"
        f"  {connections} stream connections  {batches} batches"
    )
    print(f"poll-every-minute:    {base_cpu:8.4f} CPU s/h  {base_requests:4d} HTTP requests")
    print(f"ratio marketbot/baseline CPU: {cpu / base_cpu:.4f}x (target ~0)")


if __name__ == "__main__":
    main()
