"""The combined source: stream first, polling for the gaps, idle while every market is closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import yfinance as yf

from alerts.engine import Engine
from alerts.models import Alert, AlertKind, Watch
from alerts.ports import ManualClock
from alerts.quality import QuoteBatch
from bot.fakes.yahoo_server import FakeYahoo
from bot.fakes.yahoo_streamer import PRE_MARKET, FakeStreamer
from bot.market.source import YahooMarketData
from bot.market.timer import VirtualSleeper
from bot.market.yahoo_poll import YahooPoller

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # Monday 04:00 ET, the DeepSeek premarket
NVDA_CLOSE = 142.62
AMD_CLOSE = 125.0


@pytest.fixture(autouse=True, scope="module")
def _yf_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yf-cache")))


@pytest.fixture
def rest() -> Iterator[FakeYahoo]:
    with FakeYahoo() as f:
        yield f


@pytest.fixture
async def streamer() -> AsyncIterator[FakeStreamer]:
    fake = FakeStreamer()
    await fake.start()
    yield fake
    await fake.stop()


class Pipeline:
    """The source feeding the real engine, the way ``marketbot run`` wires them."""

    def __init__(self, rest: FakeYahoo, stream_url: str | None, start: datetime = T0) -> None:
        self.clock = ManualClock(start)
        self.sleeper = VirtualSleeper(self.clock)
        self.poller = YahooPoller(clock=self.clock, base_url=rest.base_url, timeout=5)
        self.md = YahooMarketData(
            clock=self.clock,
            poller=self.poller,
            stream_url=stream_url,
            poll_interval=15,
            stream_stale_after=60,
            silence_timeout=30,
            sleep=self.sleeper.sleep,
        )
        self.engine = Engine()
        self.engine.load(
            [
                Watch(1, "console:default", "NVDA", "drop 10%", T0),
                Watch(2, "console:default", "AMD", "drop 10%", T0),
            ],
            [],
        )
        self.batches: list[QuoteBatch] = []
        self.alerts: list[Alert] = []
        self.new_batch = asyncio.Event()
        self.cursor = 0
        self.task: asyncio.Task[None] | None = None

    async def _consume(self, symbols: list[str]) -> None:
        async for batch in self.md.batches(symbols):
            now = self.clock.now()
            by_reason: dict[str, list[str]] = {}
            for sym, why in batch.unavailable.items():
                by_reason.setdefault(why, []).append(sym)
            for why, syms in by_reason.items():
                self.alerts.extend(self.engine.mark_nodata(syms, why, now).alerts)
            if batch.quotes:
                self.alerts.extend(self.engine.on_quotes(batch.quotes, now).alerts)
            self.batches.append(batch)
            self.new_batch.set()

    def start(self, symbols: list[str]) -> None:
        self.task = asyncio.create_task(self._consume(symbols))

    async def next_batch(self, source: str | None = None) -> QuoteBatch:
        """The next batch not yet looked at (from ``source``), waiting for one if needed."""
        while True:
            while self.cursor < len(self.batches):
                b = self.batches[self.cursor]
                self.cursor += 1
                if source is None or b.source == source:
                    return b
            self.new_batch.clear()
            await asyncio.wait_for(self.new_batch.wait(), 5)

    async def tick(self, delta: timedelta) -> None:
        """Let the poll loop park on its timer, then move simulated time."""
        await asyncio.wait_for(self.md.parked.wait(), 5)
        await self.sleeper.advance(delta)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.md.close()

    def fired(self, symbol: str) -> list[Alert]:
        return [a for a in self.alerts if a.symbol == symbol and a.kind is AlertKind.FIRING]


def polled_symbols(rest: FakeYahoo) -> list[set[str]]:
    out = []
    for p in rest.paths:
        if "/v7/finance/quote" in p:
            out.append(set(parse_qs(urlsplit(p).query)["symbols"][0].split(",")))
    return out


def set_rest(rest: FakeYahoo, clock: ManualClock, nvda: float, amd: float) -> None:
    at = clock.now()
    rest.set_quote(
        "NVDA",
        price=NVDA_CLOSE,
        previous_close=147.0,
        market_state="PRE",
        at=at - timedelta(days=3),
        pre_price=nvda,
        pre_time=at,
    )
    rest.set_quote(
        "AMD",
        price=AMD_CLOSE,
        previous_close=126.0,
        market_state="PRE",
        at=at - timedelta(days=3),
        pre_price=amd,
        pre_time=at,
    )


async def test_stream_drop_mid_premarket_polling_covers_the_gap(
    rest: FakeYahoo, streamer: FakeStreamer
) -> None:
    p = Pipeline(rest, streamer.url)
    set_rest(rest, p.clock, nvda=139.0, amd=123.0)
    p.start(["NVDA", "AMD"])
    # Before the stream is healthy, both symbols are polled in one request.
    first = await p.next_batch("poll")
    assert {q.symbol for q in first.quotes} == {"NVDA", "AMD"}
    assert polled_symbols(rest) == [{"NVDA", "AMD"}]
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA", "AMD"})

    # The stream takes over NVDA; AMD never ticks on the stream so polling keeps it.
    await streamer.push(
        "NVDA", 138.0, p.clock.now(), market_hours=PRE_MARKET, previous_close=NVDA_CLOSE
    )
    live = await p.next_batch("stream")
    assert [q.price for q in live.quotes] == [pytest.approx(138.0)]
    set_rest(rest, p.clock, nvda=138.0, amd=122.5)
    await p.tick(timedelta(seconds=15))
    await p.next_batch("poll")
    assert polled_symbols(rest)[-1] == {"AMD"}

    # The stream drops; the crossing happens during the gap and polling sees it.
    await streamer.drop_all()
    await streamer.wait_for(lambda f: f.open_connections == 0)
    live = p.md.live
    assert live is not None
    async with asyncio.timeout(5):
        while live.healthy:
            live.health_changed.clear()
            await live.health_changed.wait()
    set_rest(rest, p.clock, nvda=127.5, amd=122.0)  # NVDA -10.6% vs Friday's close
    await p.tick(timedelta(seconds=15))
    gap = await p.next_batch("poll")
    assert polled_symbols(rest)[-1] == {"NVDA", "AMD"}
    assert {q.symbol: q.price for q in gap.quotes}["NVDA"] == 127.5
    assert len(p.fired("NVDA")) == 1
    assert p.fired("NVDA")[0].price == 127.5

    # The stream comes back (after its jittered backoff) and is resubscribed.
    await p.tick(timedelta(seconds=2))
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA", "AMD"} and f.connections_total == 2)
    await streamer.push(
        "NVDA", 127.0, p.clock.now(), market_hours=PRE_MARKET, previous_close=NVDA_CLOSE
    )
    await p.next_batch("stream")
    set_rest(rest, p.clock, nvda=127.0, amd=122.0)
    await p.tick(timedelta(seconds=15))
    await p.next_batch("poll")
    assert polled_symbols(rest)[-1] == {"AMD"}

    # One crossing, one alert: no repeat from the stream/poll overlap, nothing false for AMD.
    assert len(p.fired("NVDA")) == 1
    assert p.fired("AMD") == []
    assert not [a for a in p.alerts if a.kind is AlertKind.DEGRADED]
    await p.stop()


async def test_bad_data_is_nodata_then_recovery_resumes_evaluation(rest: FakeYahoo) -> None:
    p = Pipeline(rest, stream_url=None)
    set_rest(rest, p.clock, nvda=139.0, amd=123.0)
    p.start(["NVDA", "AMD"])
    await p.next_batch("poll")
    # Yahoo serves a previous close of ~0 for NVDA (yfinance #2704 style) and rate limits.
    rest.set_quote(
        "NVDA",
        price=0.0001,
        previous_close=147.0,
        market_state="PRE",
        at=p.clock.now(),
        pre_price=120.0,
        pre_time=p.clock.now(),
    )
    await p.tick(timedelta(seconds=15))
    bad = await p.next_batch("poll")
    assert "NVDA" in bad.unavailable
    assert "previous close" in bad.unavailable["NVDA"]
    assert p.fired("NVDA") == []  # -99.99% is not a crossing
    degraded = [a for a in p.alerts if a.kind is AlertKind.DEGRADED]
    assert [a.symbol for a in degraded] == ["NVDA"]

    rest.fail("/v7/finance/quote", status=429, times=2)
    await p.tick(timedelta(seconds=15))
    limited = await p.next_batch("poll")
    assert set(limited.unavailable) == {"NVDA", "AMD"}
    assert p.poller.errors["rate_limited"] == 1
    # Still one notice for NVDA's outage, however many polls fail.
    assert len([a for a in p.alerts if a.kind is AlertKind.DEGRADED and a.symbol == "NVDA"]) == 1

    # AMD comes back at an unchanged price: that alone must end its NoData.
    set_rest(rest, p.clock, nvda=127.0, amd=123.0)
    await p.tick(timedelta(seconds=15))
    good = await p.next_batch("poll")
    assert {q.symbol for q in good.quotes} == {"NVDA", "AMD"}
    # One outage of the channel (NVDA, then both during the 429): one notice each way.
    notices = [a.kind for a in p.alerts if a.kind in (AlertKind.DEGRADED, AlertKind.RECOVERED)]
    assert notices == [AlertKind.DEGRADED, AlertKind.RECOVERED]
    assert len(p.fired("NVDA")) == 1
    await p.stop()


async def test_idle_when_every_market_is_closed(rest: FakeYahoo, streamer: FakeStreamer) -> None:
    saturday = datetime(2025, 1, 25, 17, 0, tzinfo=UTC)  # 12:00 ET
    p = Pipeline(rest, streamer.url, start=saturday)
    set_rest(rest, p.clock, nvda=139.0, amd=123.0)
    p.start(["NVDA", "AMD", "NQ=F"])
    await p.tick(timedelta(hours=20))
    assert rest.counts.total() == 0
    assert streamer.connections_total == 0
    assert p.batches == []
    # Sunday 18:00 ET (23:00 UTC) the futures open: only NQ=F is subscribed/polled.
    await p.tick(timedelta(hours=9, minutes=59))
    assert streamer.connections_total == 0
    await p.tick(timedelta(minutes=2))
    await streamer.wait_for(lambda f: f.subscribed == {"NQ=F"})
    assert all(s == {"NQ=F"} for s in polled_symbols(rest))
    await p.stop()


async def test_watch_changes_reach_the_stream(rest: FakeYahoo, streamer: FakeStreamer) -> None:
    before_open = datetime(2025, 1, 27, 14, 29, 40, tzinfo=UTC)  # 09:29:40 ET
    p = Pipeline(rest, streamer.url, start=before_open)
    set_rest(rest, p.clock, nvda=139.0, amd=123.0)
    p.start(["NVDA"])
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA"})
    p.md.set_symbols(["NVDA", "AMD", "^GSPC"])  # the index has no premarket
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA", "AMD"})
    await p.tick(timedelta(seconds=15))
    assert "^GSPC" not in streamer.subscribed
    await p.tick(timedelta(seconds=15))
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA", "AMD", "^GSPC"})
    p.md.set_symbols(["AMD"])
    await streamer.wait_for(lambda f: f.subscribed == {"AMD"})
    assert streamer.connections_total == 1
    await p.stop()


async def test_stream_without_previous_close_is_backfilled_from_the_chart_once(
    rest: FakeYahoo, streamer: FakeStreamer
) -> None:
    from datetime import date

    p = Pipeline(rest, streamer.url)
    # No REST quote for NVDA: only the chart endpoint knows Friday's close.
    rest.set_closes("NVDA", [(date(2025, 1, 23), 147.22), (date(2025, 1, 24), NVDA_CLOSE)])
    p.start(["NVDA"])
    first = await p.next_batch("poll")
    assert "NVDA" in first.unavailable
    await streamer.wait_for(lambda f: f.subscribed == {"NVDA"})
    await streamer.push("NVDA", 130.0, p.clock.now(), market_hours=PRE_MARKET)
    early = await p.next_batch("stream")
    assert "previous close" in early.unavailable["NVDA"]
    async with asyncio.timeout(5):
        await p.md.backfilled()  # a worker thread fetched the chart
    assert p.md.counters["backfills"] == 1
    charts = rest.counts["chart"]
    for price in (129.0, 127.0):
        await streamer.push("NVDA", price, p.clock.now(), market_hours=PRE_MARKET)
        batch = await p.next_batch("stream")
        assert [(q.price, q.previous_close) for q in batch.quotes] == [(price, NVDA_CLOSE)]
    assert rest.counts["chart"] == charts  # cached for the trading day
    assert len(p.fired("NVDA")) == 1  # 127.0 is -10.95% against Friday
    await p.stop()


async def test_port_poll_returns_gated_quotes_and_raises_when_yahoo_fails(
    rest: FakeYahoo,
) -> None:
    from alerts.ports import MarketDataError

    p = Pipeline(rest, stream_url=None)
    set_rest(rest, p.clock, nvda=139.0, amd=float("nan"))
    quotes = await p.md.poll(["NVDA", "AMD"])
    assert [q.symbol for q in quotes] == ["NVDA"]
    rest.fail("/v7/finance/quote", status=500, times=2)
    with pytest.raises(MarketDataError, match="server error"):
        await p.md.poll(["NVDA", "AMD"])
    assert p.poller.errors["server_error"] == 1
    await p.md.close()
