"""Chart backfill against the fake Yahoo: the first alert of a storm is charted from 04:00."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from alerts.engine import Engine
from alerts.models import AlertMessage, MarketSession, Quote
from alerts.ports import ManualClock, MessageRef
from bot.chart_backfill import ChartBackfill, day_start
from bot.charts import png_text
from bot.console import ConsolePlatform
from bot.fakes.yahoo_server import FakeYahoo
from bot.market.yahoo_history import YahooHistory
from bot.pipeline import Pipeline
from bot.render.console_text import render_console
from bot.runner import Runtime
from bot.store import SqlStore
from tests.conftest import premarket_quote, run_settings

NY = ZoneInfo("America/New_York")
PREVIOUS_CLOSE = 100.0


class ChartingPlatform:
    """A platform that takes images, as Slack's and Discord's adapters do."""

    name = "console"

    def __init__(self) -> None:
        self.posts: list[AlertMessage] = []
        self.images: list[bytes] = []

    def handles(self, channel: str) -> bool:
        return True

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self.posts.append(message)
        return MessageRef(message.channel, f"m{len(self.posts)}")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> None:
        self.images.append(image)


def _premarket_bars(day: datetime, minutes: int) -> list[tuple[datetime, float, float]]:
    """1-minute bars from 04:00 ET sliding from -2% to -9%, as Yahoo has them."""
    start = day.astimezone(NY).replace(hour=4, minute=0, second=0, microsecond=0)
    return [
        (start + timedelta(minutes=m), PREVIOUS_CLOSE * (1 - (2 + 7 * m / minutes) / 100), 500.0)
        for m in range(minutes)
    ]


def _storm(
    store: SqlStore, clock: ManualClock, fake: FakeYahoo, symbol: str, *, timeout: float = 5.0
) -> tuple[Pipeline, ChartingPlatform, ChartBackfill]:
    fake.set_closes(symbol, [((clock.now() - timedelta(days=3)).date(), PREVIOUS_CLOSE)])
    platform = ChartingPlatform()
    pipeline = Pipeline(store, Engine(), [platform], clock, context_symbols=(), charts=True)
    backfill = ChartBackfill.of(
        pipeline.market, YahooHistory(base_url=fake.base_url, timeout=5), clock
    )
    backfill.timeout = timeout
    pipeline.delivery.chart_paths = backfill.paths
    store.add_watch("console:default", symbol, "drop 10%", now=clock.now())
    pipeline.sync_watches()
    return pipeline, platform, backfill


def _first_quote(pipeline: Pipeline, clock: ManualClock, symbol: str, change: float) -> None:
    """The bot's first sight of ``symbol`` today: already through the rule."""
    price = round(PREVIOUS_CLOSE * (1 + change / 100), 2)
    quote = Quote(symbol, price, clock.now(), MarketSession.PRE, previous_close=PREVIOUS_CLOSE)
    pipeline.ingest_quotes([quote])


def _minute_bar_requests(fake: FakeYahoo, symbol: str) -> list[dict[str, list[str]]]:
    """The 1-minute chart requests (yfinance also asks a daily chart for the exchange zone)."""
    queries = [
        parse_qs(urlsplit(path).query)
        for path in fake.paths
        if f"/v8/finance/chart/{symbol}" in urlsplit(path).path
    ]
    return [query for query in queries if query.get("interval") == ["1m"]]


async def test_the_first_alert_of_a_storm_is_charted_from_yahoos_day_so_far(
    sqlite_store: SqlStore, clock: ManualClock, fake_yahoo: FakeYahoo
) -> None:
    clock.advance(timedelta(minutes=30))  # 04:30 ET: the bot's first quote of NVDA
    fake_yahoo.set_intraday("NVDA", _premarket_bars(clock.now(), 30), interval="1m")
    pipeline, platform, backfill = _storm(sqlite_store, clock, fake_yahoo, "NVDA")
    _first_quote(pipeline, clock, "NVDA", -11)
    clock.advance(timedelta(seconds=3))
    await pipeline.deliver_due()
    assert len(platform.posts) == 1  # the alert first
    [image] = platform.images  # one point seen, yet a chart: Yahoo's 04:00-04:29 came first
    labels = png_text(image)
    assert labels[0] == "04:00"
    assert labels[-1] == "04:35"  # one step past the fire at 04:30, so it is drawn whole
    assert pipeline.stats.charts_sent == 1
    # Yahoo's 1-minute chart with pre-market, through the MARKETBOT_YAHOO__BASE_URL rewrite.
    [request] = _minute_bar_requests(fake_yahoo, "NVDA")
    assert request["includePrePost"] == ["true"]
    # The day's later charts reuse it: Yahoo is asked once per symbol and day.
    clock.advance(timedelta(minutes=10))
    _first_quote(pipeline, clock, "NVDA", -12)
    paths = await backfill.paths(["NVDA"])
    times = [when for when, _ in paths["NVDA"]]
    assert times[0] == datetime(2025, 1, 27, 4, 0, tzinfo=NY)
    assert times == sorted(times)
    assert times[-1] == clock.now()  # then what the bot saw itself
    assert len(_minute_bar_requests(fake_yahoo, "NVDA")) == 1


async def test_yahoo_failing_means_no_chart_one_log_line_and_the_alert_delivered(
    sqlite_store: SqlStore,
    clock: ManualClock,
    fake_yahoo: FakeYahoo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock.advance(timedelta(minutes=31))
    fake_yahoo.set_intraday("AMD", _premarket_bars(clock.now(), 30), interval="1m")
    fake_yahoo.fail("/v8/finance/chart/AMD", status=500, times=-1)
    pipeline, platform, _ = _storm(sqlite_store, clock, fake_yahoo, "AMD")
    _first_quote(pipeline, clock, "AMD", -12)
    clock.advance(timedelta(seconds=3))
    with caplog.at_level(logging.WARNING, logger="bot.chart_backfill"):
        await pipeline.deliver_due()
    assert len(platform.posts) == 1
    assert platform.images == []  # one point and no history: no line to draw
    lines = [r for r in caplog.records if r.name == "bot.chart_backfill"]
    assert len(lines) == 1
    assert "AMD" in lines[0].getMessage()


async def test_a_stalled_yahoo_holds_the_chart_only_for_the_timeout(
    sqlite_store: SqlStore, clock: ManualClock, fake_yahoo: FakeYahoo
) -> None:
    clock.advance(timedelta(minutes=32))
    fake_yahoo.set_intraday("AVGO", _premarket_bars(clock.now(), 30), interval="1m")
    fake_yahoo.fail("/v8/finance/chart/AVGO", "slow", delay=4.0)
    pipeline, platform, _ = _storm(sqlite_store, clock, fake_yahoo, "AVGO", timeout=0.2)
    _first_quote(pipeline, clock, "AVGO", -11)
    clock.advance(timedelta(seconds=3))
    began = time.monotonic()
    await pipeline.deliver_due()
    assert time.monotonic() - began < 3.5  # the lane did not wait for the stalled answer
    assert len(platform.posts) == 1
    assert platform.images == []


async def test_a_chart_source_that_breaks_costs_the_chart_not_the_alert(
    sqlite_store: SqlStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    platform = ChartingPlatform()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=(), charts=True)

    async def broken(symbols: Sequence[str]) -> dict[str, list[tuple[datetime, float]]]:
        raise RuntimeError("chart source bug")

    pipeline.delivery.chart_paths = broken
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    pipeline.sync_watches()
    _first_quote(pipeline, clock, "NVDA", -11)
    clock.advance(timedelta(seconds=3))
    with caplog.at_level(logging.ERROR, logger="bot.pipeline.delivery"):
        await pipeline.deliver_due()
    assert len(platform.posts) == 1
    assert platform.images == []
    assert [r.getMessage() for r in caplog.records] == ["chart for console:default not sent"]
    assert pipeline.stats.messages_sent == 1


def test_the_day_starts_at_midnight_for_stocks_and_at_the_close_for_futures_evenings() -> None:
    monday_0430 = datetime(2025, 1, 27, 4, 30, tzinfo=NY)
    assert day_start("NVDA", monday_0430) == datetime(2025, 1, 27, 0, 0, tzinfo=NY)
    # NQ=F at 19:00 ET trades for Tuesday: its path begins at Monday's close, not tomorrow.
    start = day_start("NQ=F", datetime(2025, 1, 27, 19, 0, tzinfo=NY))
    assert start < datetime(2025, 1, 27, 19, 0, tzinfo=NY)
    assert start.astimezone(NY).date() == monday_0430.date()


async def test_marketbot_run_backfills_the_chart_of_its_first_alert(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    """The whole `run` composition: Yahoo polled for the quote, Yahoo's day for the chart."""
    premarket = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)  # 04:05 ET, the bot just started
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=premarket)
    bars = [(when, price * 1.4262, volume) for when, price, volume in _premarket_bars(premarket, 5)]
    fake_yahoo.set_intraday("NVDA", bars, interval="1m")
    console = ChartingConsole()
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait("/watch nvda\n")
    runtime = Runtime(
        run_settings(tmp_path, fake_yahoo),
        clock=ManualClock(premarket),
        platforms=[console],
        commands_in=queue.get,
    )
    await runtime.start()
    try:
        await asyncio.wait_for(console.charted.wait(), timeout=20)
    finally:
        await runtime.stop()
    [(_, message)] = console.sent
    assert [alert.symbol for alert in message.alerts] == ["NVDA"]
    [image] = console.images
    labels = ["04:00", "04:01", "04:02", "04:03", "04:04", "04:05", "04:06"]
    assert png_text(image) == labels  # from Yahoo's 04:00 bar to past the 04:05 fire
    [request] = _minute_bar_requests(fake_yahoo, "NVDA")
    assert request["includePrePost"] == ["true"]


class ChartingConsole(ConsolePlatform):
    """The real console platform, taking images too and saying when one arrived."""

    def __init__(self) -> None:
        super().__init__(render_console, Console(file=io.StringIO(), width=100))
        self.images: list[bytes] = []
        self.charted = asyncio.Event()

    def reply(self, text: str, *, ok: bool = True) -> None:
        pass

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> None:
        self.images.append(image)
        self.charted.set()
