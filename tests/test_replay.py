"""The replay market-data adapter over the built-in DeepSeek scenario and small made-up ones."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.models import MarketSession, Quote
from alerts.ports import ManualClock, MarketData, NewsFeed
from alerts.scenario import Scenario, latest_at, load_scenario
from bot.market.replay import ReplayMarketData, ReplayNewsFeed
from bot.scenarios import UnknownScenarioError, open_scenario

DEEPSEEK = "deepseek-2025-01-27"
ET = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def deepseek() -> Scenario:
    return open_scenario(DEEPSEEK)


async def _drain(replay: ReplayMarketData, symbols: list[str]) -> list[list[Quote]]:
    batches = []
    async for batch in replay.stream(symbols):
        # the clock is at the batch's time while the consumer looks at it
        assert {q.time for q in batch} == {replay.clock.now()}
        batches.append(batch)
    return batches


def _tiny(**overrides: Any) -> Scenario:
    doc: dict[str, Any] = {
        "name": "tiny",
        "start": "2025-01-27T04:00:00-05:00",
        "end": "2025-01-27T04:10:00-05:00",
        "reference": {"AAA": {"previous_close": 100.0}, "BBB": {"previous_close": 10.0}},
        "ticks": {"AAA": [[0, 99.0], [120, 95.0], [300, 90.0]], "BBB": [[60, 9.5], [120, 9.0]]},
    }
    doc.update(overrides)
    return load_scenario(doc)


def test_replay_implements_the_ports(deepseek: Scenario) -> None:
    # The annotations are checked by mypy; the asserts by pytest.
    market: MarketData = ReplayMarketData(deepseek)
    news: NewsFeed = ReplayNewsFeed(ReplayMarketData(deepseek))
    assert inspect.iscoroutinefunction(market.poll)
    assert inspect.isasyncgenfunction(market.stream)
    assert inspect.iscoroutinefunction(market.close)
    assert inspect.iscoroutinefunction(news.fetch)


async def test_stream_is_time_ordered_and_moves_the_clock(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    batches = await _drain(replay, list(deepseek.symbols))
    times = [b[0].time for b in batches]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    assert sum(len(b) for b in batches) == sum(len(t) for t in deepseek.ticks.values())
    assert replay.clock.now() == deepseek.end
    assert replay.finished


async def test_final_moves_match_the_derivation_targets(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    last: dict[str, Quote] = {}
    for batch in await _drain(replay, list(deepseek.symbols)):
        last.update({q.symbol: q for q in batch})
    assert deepseek.derivation.targets, "the built-in scenario states what it aims at"
    for target in deepseek.derivation.targets:
        move = last[target.symbol].change_pct()
        assert move is not None
        assert move == pytest.approx(target.change_pct, abs=0.3), target.symbol


async def test_nvda_crosses_minus_ten_percent_before_0410_et(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    crossing = None
    async for batch in replay.stream(["NVDA"]):
        move = batch[0].change_pct()
        if move is not None and move <= -10.0:
            crossing = batch[0]
            break
    assert crossing is not None
    local = crossing.time.astimezone(ET)
    assert local < datetime(2025, 1, 27, 4, 10, tzinfo=ET)
    assert crossing.session is MarketSession.PRE
    assert replay.clock.now() == crossing.time


async def test_quotes_carry_session_reference_and_open(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    replay.clock.set(datetime(2025, 1, 27, 4, 30, tzinfo=ET))
    quotes = {q.symbol: q for q in await replay.poll(["NVDA", "NQ=F", "ASML.AS"])}
    assert quotes["NVDA"].session is MarketSession.PRE
    assert quotes["NVDA"].open is None
    assert quotes["NVDA"].day_volume is not None
    assert quotes["NQ=F"].session is MarketSession.REGULAR
    assert quotes["ASML.AS"].session is MarketSession.REGULAR
    assert quotes["ASML.AS"].open == deepseek.ticks["ASML.AS"][0].price
    assert quotes["ASML.AS"].currency == "EUR"
    for symbol, quote in quotes.items():
        assert quote.previous_close == deepseek.reference[symbol].previous_close
        assert quote.source == "replay"


async def test_poll_answers_the_latest_tick_at_the_clock(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    before_us = await replay.poll(["NVDA", "NQ=F", "NOPE"])
    assert [q.symbol for q in before_us] == ["NQ=F"]  # NVDA starts at 04:00, NOPE never
    when = datetime(2025, 1, 27, 4, 5, 30, tzinfo=ET)
    replay.clock.set(when)
    (nvda,) = await replay.poll(["NVDA"])
    tick = latest_at(deepseek.ticks["NVDA"], when)
    assert tick is not None
    assert (nvda.time, nvda.price) == (tick.time, tick.price)
    assert nvda.time <= when


async def test_stream_filters_symbols_and_starts_at_the_clock() -> None:
    scenario = _tiny()
    clock = ManualClock(datetime(2025, 1, 27, 9, 1, tzinfo=UTC))
    replay = ReplayMarketData(scenario, clock)
    batches = await _drain(replay, ["AAA"])
    assert [[(q.symbol, q.price) for q in b] for b in batches] == [[("AAA", 95.0)], [("AAA", 90.0)]]


async def test_speed_sleeps_scaled_gaps_and_none_never_sleeps() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    scenario = _tiny()
    await _drain(ReplayMarketData(scenario, speed=None, sleep=fake_sleep), ["AAA", "BBB"])
    assert slept == []

    await _drain(ReplayMarketData(scenario, speed=60.0, sleep=fake_sleep), ["AAA", "BBB"])
    # ticks at 0, 60, 120, 300 s, then on to the end at 600 s: gaps / 60
    assert slept == pytest.approx([1.0, 1.0, 3.0, 5.0])
    assert sum(slept) == pytest.approx((scenario.end - scenario.start).total_seconds() / 60.0)


@pytest.mark.parametrize("speed", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplayMarketData(_tiny(), speed=speed)


async def test_close_stops_the_stream() -> None:
    replay = ReplayMarketData(_tiny())
    seen = 0
    async for _ in replay.stream(["AAA", "BBB"]):
        seen += 1
        await replay.close()
    assert seen == 1
    assert not replay.finished


async def test_stream_never_moves_a_shared_clock_back() -> None:
    replay = ReplayMarketData(_tiny())
    async for batch in replay.stream(["AAA", "BBB"]):
        if batch[0].symbol == "BBB":
            # a consumer moves the shared clock beyond the next tick
            replay.clock.advance(timedelta(minutes=3))
    assert replay.clock.now() == datetime(2025, 1, 27, 9, 10, tzinfo=UTC)


async def test_news_in_time_order_and_up_to_now(deepseek: Scenario) -> None:
    replay = ReplayMarketData(deepseek)
    feed = ReplayNewsFeed(replay)
    replay.clock.set(datetime(2025, 1, 27, 4, 2, tzinfo=ET))
    early = await feed.fetch()
    assert early == replay.news_until()
    assert early == [n for n in deepseek.news if n.published <= replay.clock.now()]
    assert any("NVDA" in n.symbols for n in early)
    everything = replay.news_until(deepseek.end)
    assert everything == list(deepseek.news)
    assert len(everything) > len(early)
    later = replay.news_between(replay.clock.now(), deepseek.end)
    assert early + later == everything


def test_open_by_name_and_unknown_name() -> None:
    assert ReplayMarketData.open(DEEPSEEK).scenario.name == DEEPSEEK
    with pytest.raises(UnknownScenarioError, match=DEEPSEEK):
        ReplayMarketData.open("no-such-scenario")
