"""Feed requests per cycle for 100 watched symbols, and CPU seconds per idle hour of news.

marketbot: the live news source (bot.news) with its default feeds against the fake Yahoo:
Yahoo headline feeds batched 60 symbols per request (100 watched symbols + the 6 market
symbols = 2 requests) plus the general market feed; conditional requests every cycle.
Baseline in the same run: one Yahoo headline feed per symbol, fetched whole every cycle and
parsed each time (what a per-symbol RSS reader without ETags does), through the same client.
An idle hour is 30 cycles at the default 120 s interval with no new story; the fake Yahoo
runs in this process, so its CPU counts on both sides.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.ports import ManualClock
from bot.fakes.news_feeds import Story
from bot.fakes.yahoo_server import FakeYahoo
from bot.news.feeds import Feed, feeds_for, yahoo_headline_feeds
from bot.news.fetch import FeedFetcher, FetchStatus
from bot.news.parse import parse_feed
from bot.news.source import NewsSource
from bot.news.store import NewsStore
from bot.settings import NewsSettings
from bot.store import SqlStore

NOW = datetime(2025, 1, 25, 17, 0, tzinfo=UTC)  # a Saturday: nothing new comes in
SYMBOLS = [f"SYM{i:03d}" for i in range(100)]
CYCLES_PER_HOUR = 30  # the default news.poll_interval_seconds = 120
BASELINE_CYCLES = 10  # the baseline's hour is extrapolated from these (it is slow)


def stories() -> list[Story]:
    out = []
    for i, symbol in enumerate(SYMBOLS):
        for j in range(3):
            out.append(
                Story(
                    f"{symbol} headline {j}: quarterly update and analyst notes",
                    NOW - timedelta(hours=1 + i % 20, minutes=j),
                    link=f"https://finance.yahoo.com/news/{symbol.lower()}-{j}.html",
                    guid=f"{symbol}-{j}",
                    symbols=(symbol,),
                )
            )
    out += [Story(f"Market wrap {k}", NOW - timedelta(hours=k), guid=f"mkt-{k}") for k in range(20)]
    return out


async def ours(yahoo: FakeYahoo, store: NewsStore) -> tuple[int, int, float]:
    clock = ManualClock(NOW)
    settings = NewsSettings()
    fetcher = FeedFetcher(clock=clock, yahoo_base_url=yahoo.base_url)
    source = NewsSource(settings, clock=clock, fetcher=fetcher, store=store)
    first = await source.cycle(SYMBOLS)
    cpu0 = time.process_time()
    steady = 0
    for _ in range(CYCLES_PER_HOUR):
        clock.advance(timedelta(seconds=settings.poll_interval_seconds))
        steady = (await source.cycle(SYMBOLS)).requests
    cpu = time.process_time() - cpu0
    await source.close()
    assert len(first.new) == len(stories()), len(first.new)
    return first.requests, steady, cpu


async def baseline(yahoo: FakeYahoo) -> tuple[int, float]:
    clock = ManualClock(NOW)
    feeds: list[Feed] = [f for s in SYMBOLS for f in yahoo_headline_feeds([s], batch_size=1)]
    feeds += [f for f in feeds_for([], yahoo_headlines=False)]  # the general feed too
    cpu0 = time.process_time()
    requests = 0
    for _ in range(BASELINE_CYCLES):
        clock.advance(timedelta(seconds=120))
        fetcher = FeedFetcher(clock=clock, yahoo_base_url=yahoo.base_url)  # no validators kept
        for outcome in await fetcher.fetch_all(feeds):
            requests += 1
            if outcome.status is FetchStatus.BODY:
                parse_feed(outcome.body, source="Yahoo Finance", now=clock.now())
        await fetcher.close()
    per_hour = (time.process_time() - cpu0) * CYCLES_PER_HOUR / BASELINE_CYCLES
    return requests // BASELINE_CYCLES, per_hour


async def main() -> None:
    with FakeYahoo() as yahoo, tempfile.TemporaryDirectory() as tmp:
        for story in stories():
            yahoo.publish(story)
        sql = SqlStore(f"sqlite:///{Path(tmp) / 'news.db'}")
        sql.upgrade()
        first, steady, cpu = await ours(yahoo, NewsStore(sql.engine))
        base_requests, base_cpu = await baseline(yahoo)
        sql.close()
    print(f"feed requests per cycle, 100 symbols: {first} (first), {steady} (steady, 304s)")
    print(f"  baseline (one feed per symbol):      {base_requests}")
    print(f"  ratio: {base_requests / steady:.0f}x fewer requests (target <= 3 per cycle)")
    print(f"CPU per idle hour of news: {cpu:.3f} s ({CYCLES_PER_HOUR} cycles)")
    print(f"  baseline (whole feeds, parsed):  {base_cpu:.3f} s (from {BASELINE_CYCLES} cycles)")
    print(f"  ratio: {base_cpu / cpu:.1f}x less CPU")


if __name__ == "__main__":
    asyncio.run(main())
