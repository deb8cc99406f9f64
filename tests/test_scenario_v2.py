"""Scenario format 2: closes per trading day, halts, gaps, bad ticks, news before the start.

Every feature is checked where it matters: through the replay source and the data-quality
gate (and for halts the engine), not only in the loaded values. Version-1 documents keep
loading unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from alerts.engine import Engine
from alerts.models import Quote, Watch
from alerts.quality import QualityGate, Verdict
from alerts.scenario import Scenario, ScenarioError, load_scenario
from bot.market.replay import ReplayMarketData
from bot.replay import REPLAY_TICK_INTERVAL, run_replay
from bot.settings import Settings

MINUTE = timedelta(minutes=1)


def _two_days() -> dict[str, Any]:
    """Monday and Tuesday 2025-01-27/28, NVDA regular session plus NQ=F from Sunday 18:00."""
    return {
        "format": 2,
        "name": "two-days",
        "start": "2025-01-26T18:00:00-05:00",
        "end": "2025-01-28T16:00:00-05:00",
        "reference": {
            "NVDA": {"previous_closes": {"2025-01-27": 142.62, "2025-01-28": 118.42}},
            "NQ=F": {"previous_closes": {"2025-01-27": 21891.25, "2025-01-28": 21002.0}},
        },
        "ticks": {
            "NVDA": [
                ["2025-01-27T09:30:00-05:00", 124.0],
                ["2025-01-27T09:31:00-05:00", 123.0],
                ["2025-01-27T09:35:00-05:00", 122.0],
                ["2025-01-27T09:36:00-05:00", 121.5],
                ["2025-01-28T09:30:00-05:00", 120.0],
                ["2025-01-28T09:31:00-05:00", 121.0],
            ],
            "NQ=F": [
                ["2025-01-26T18:00:00-05:00", 21500.0],
                ["2025-01-27T09:30:00-05:00", 20950.0],
                ["2025-01-27T09:31:00-05:00", 20940.0],
                ["2025-01-27T09:32:00-05:00", 20930.0],
                ["2025-01-27T09:33:00-05:00", 20920.0],
                ["2025-01-27T09:34:00-05:00", 20910.0],
                ["2025-01-27T09:35:00-05:00", 20900.0],
                ["2025-01-27T18:00:00-05:00", 21010.0],
                ["2025-01-28T09:30:00-05:00", 21100.0],
            ],
        },
        "halts": [
            {
                "symbol": "NVDA",
                "start": "2025-01-28T09:30:30-05:00",
                "end": "2025-01-28T09:40:00-05:00",
                "reason": "LULD pause",
            }
        ],
        "gaps": [
            {
                "symbol": "NVDA",
                "start": "2025-01-27T09:32:00-05:00",
                "end": "2025-01-27T09:35:00-05:00",
            }
        ],
        "bad_ticks": [
            {"symbol": "NQ=F", "time": "2025-01-27T09:36:00-05:00", "price": 0},
            {"symbol": "NQ=F", "time": "2025-01-27T09:37:00-05:00", "price": "NaN"},
            {"symbol": "NQ=F", "time": "2025-01-27T09:38:00-05:00", "price": -1.5},
            {"symbol": "NQ=F", "time": "2025-01-27T09:39:00-05:00", "price": None},
        ],
        "news": [
            {
                "time": "2025-01-25T11:00:00-05:00",
                "title": "Saturday: DeepSeek R1 tops the app store",
            },
            {"time": "2025-01-26T17:00:00-05:00", "title": "Sunday: DeepSeek R1 rattles AI stocks"},
            {"time": "2025-01-27T09:31:00-05:00", "title": "Nvidia falls", "symbols": ["NVDA"]},
        ],
    }


@pytest.fixture
def two_days() -> Scenario:
    return load_scenario(_two_days())


def _quote_at(replay: ReplayMarketData, symbol: str, when: str) -> Quote:
    """The quote ``poll`` gives at ``when``, from a fresh replay of the same scenario."""
    moment = datetime.fromisoformat(when)
    fresh = ReplayMarketData(replay.scenario)
    fresh.clock.set(moment.astimezone(UTC))
    [quote] = asyncio.run(fresh.poll([symbol]))
    assert quote.time == moment
    return quote


# --- version 1 keeps loading ---------------------------------------------------------------


def test_version_1_documents_load_as_before() -> None:
    doc = {
        "name": "v1",
        "start": "2025-01-27T04:00:00-05:00",
        "end": "2025-01-27T05:00:00-05:00",
        "reference": {"AAA": {"previous_close": 100.0}},
        "ticks": {"AAA": [[0, 99.0], [60, 98.0]]},
    }
    for version in (None, 1):
        document = dict(doc) if version is None else {**doc, "format": version}
        scenario = load_scenario(document)
        assert scenario.format == 1
        ref = scenario.reference["AAA"]
        assert ref.previous_close == 100.0
        assert ref.previous_close_on(date(2030, 1, 1)) == 100.0
        assert scenario.halts == ()
        assert scenario.gaps == ()
        assert scenario.bad_ticks == ()


@pytest.mark.parametrize("field", ["halts", "gaps", "bad_ticks"])
def test_a_version_1_file_using_a_version_2_field_is_told_so(field: str) -> None:
    doc = _two_days()
    doc["format"] = 1
    doc["reference"] = {"NVDA": {"previous_close": 142.62}, "NQ=F": {"previous_close": 21891.25}}
    for other in ("halts", "gaps", "bad_ticks"):
        if other != field:
            del doc[other]
    with pytest.raises(ScenarioError, match=rf"'{field}': needs \"format\": 2"):
        load_scenario(doc)


def test_previous_closes_need_format_2() -> None:
    doc = _two_days()
    doc["format"] = 1
    for key in ("halts", "gaps", "bad_ticks"):
        del doc[key]
    with pytest.raises(ScenarioError, match=r"'previous_closes' needs \"format\": 2"):
        load_scenario(doc)


# --- previous closes per trading day -------------------------------------------------------


def test_each_trading_day_is_measured_against_its_own_previous_close(two_days: Scenario) -> None:
    replay = ReplayMarketData(two_days)
    monday = _quote_at(replay, "NVDA", "2025-01-27T09:30:00-05:00")
    tuesday = _quote_at(replay, "NVDA", "2025-01-28T09:30:00-05:00")
    assert monday.previous_close == 142.62
    assert tuesday.previous_close == 118.42
    assert tuesday.change_pct() == pytest.approx((120.0 / 118.42 - 1) * 100)
    # CME's Sunday and Monday 18:00 opens belong to the next trading day.
    sunday_open = _quote_at(replay, "NQ=F", "2025-01-26T18:00:00-05:00")
    monday_evening = _quote_at(replay, "NQ=F", "2025-01-27T18:00:00-05:00")
    assert sunday_open.previous_close == 21891.25
    assert monday_evening.previous_close == 21002.0
    assert two_days.reference["NQ=F"].previous_close == 21891.25  # the first day's


def test_a_tick_on_a_day_without_a_close_names_the_tick() -> None:
    doc = _two_days()
    doc["reference"]["NVDA"]["previous_closes"] = {"2025-01-28": 118.42}
    with pytest.raises(
        ScenarioError, match=r"ticks\.NVDA\[0\]: no previous close for trading day 2025-01-27"
    ):
        load_scenario(doc)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"previous_close": 1.0, "previous_closes": {"2025-01-27": 1.0}}, "not both"),
        ({"previous_closes": {"Monday": 1.0}}, r"'Monday' is not a trading day"),
        ({"previous_closes": {"2025-01-27": 0}}, r"previous_closes\.2025-01-27: must be positive"),
        ({"previous_closes": {}}, "needs at least one"),
    ],
)
def test_bad_previous_closes_are_refused(edit: dict[str, Any], message: str) -> None:
    doc = _two_days()
    doc["reference"]["NVDA"] = edit
    with pytest.raises(ScenarioError, match=message):
        load_scenario(doc)


# --- halts ----------------------------------------------------------------------------------


def test_quotes_inside_a_halt_are_halted_and_the_halt_start_has_its_own(two_days: Scenario) -> None:
    replay = ReplayMarketData(two_days)
    start = _quote_at(replay, "NVDA", "2025-01-28T09:30:30-05:00")
    assert start.halted
    assert start.price == 120.0  # the last price, at the halt's start
    assert _quote_at(replay, "NVDA", "2025-01-28T09:31:00-05:00").halted
    assert not _quote_at(replay, "NVDA", "2025-01-28T09:30:00-05:00").halted
    assert not _quote_at(replay, "NVDA", "2025-01-27T09:30:00-05:00").halted


async def test_a_halted_quote_fires_no_price_rule(two_days: Scenario) -> None:
    doc = _two_days()
    doc["ticks"]["NVDA"][-1] = ["2025-01-28T09:31:00-05:00", 100.0]  # -15.6% while halted
    replay = ReplayMarketData(load_scenario(doc))
    engine = Engine()
    engine.upsert_watch(Watch(1, "c", "NVDA", "drop 10%", datetime(2025, 1, 1, tzinfo=UTC)))
    replay.clock.set(datetime(2025, 1, 28, 14, 30, tzinfo=UTC))
    fired = []
    async for batch in replay.stream(["NVDA"]):
        fired += engine.on_quotes(batch, replay.clock.now()).alerts
    assert fired == []


# --- gaps -----------------------------------------------------------------------------------


async def test_a_gap_in_the_regular_session_turns_stale(two_days: Scenario) -> None:
    replay = ReplayMarketData(two_days)
    gate = QualityGate()
    replay.clock.set(datetime(2025, 1, 27, 14, 30, tzinfo=UTC))
    verdicts: list[tuple[datetime, Verdict, str | None]] = []
    async for batch in replay.stream(["NVDA"]):
        now = replay.clock.now()
        if now.date() != date(2025, 1, 27):
            break
        for quote in batch:
            v = gate.check("NVDA", quote, now=now, expected_interval=REPLAY_TICK_INTERVAL)
            verdicts.append((now, v.verdict, v.reason))
    at = {
        now.astimezone(UTC).strftime("%H:%M"): (verdict, reason)
        for now, verdict, reason in verdicts
    }
    assert at["14:31"][0] is Verdict.OK
    # 09:32 ET: the 09:31 quote is one minute old, then it ages past two tick intervals.
    assert at["14:32"][0] is Verdict.OK
    assert at["14:34"] == (Verdict.NODATA, "stale: 180 s old")
    assert at["14:35"][0] is Verdict.OK  # ticks resume when the gap ends
    # Ticks inside the gap were withheld; poll serves the old quote meanwhile.
    fresh = ReplayMarketData(two_days)
    fresh.clock.set(datetime(2025, 1, 27, 14, 34, tzinfo=UTC))
    [polled] = await fresh.poll(["NVDA"])
    assert polled.time == datetime(2025, 1, 27, 14, 31, tzinfo=UTC)


def test_ticks_inside_a_gap_are_withheld() -> None:
    doc = _two_days()
    doc["ticks"]["NVDA"].insert(2, ["2025-01-27T09:33:00-05:00", 50.0])
    replay = ReplayMarketData(load_scenario(doc))
    replay.clock.set(datetime(2025, 1, 27, 14, 33, 30, tzinfo=UTC))
    [quote] = asyncio.run(replay.poll(["NVDA"]))
    assert (quote.price, quote.time) == (123.0, datetime(2025, 1, 27, 14, 31, tzinfo=UTC))


# --- bad ticks ------------------------------------------------------------------------------


def test_bad_ticks_reach_the_gate_and_are_refused(two_days: Scenario) -> None:
    replay = ReplayMarketData(two_days)
    gate = QualityGate()
    reasons = []
    for when in ("09:36", "09:37", "09:38", "09:39"):
        quote = _quote_at(replay, "NQ=F", f"2025-01-27T{when}:00-05:00")
        verdict = gate.check("NQ=F", quote, now=quote.time, expected_interval=MINUTE)
        assert verdict.verdict is Verdict.NODATA
        reasons.append(verdict.reason)
    assert reasons[0] == "bad price 0.0"
    assert "nan" in str(reasons[1])
    assert reasons[2] == "bad price -1.5"
    assert reasons[3] == "bad price None"
    nan_quote = _quote_at(replay, "NQ=F", "2025-01-27T09:37:00-05:00")
    assert nan_quote.price is not None
    assert math.isnan(nan_quote.price)


@pytest.mark.parametrize(
    ("tick", "message"),
    [
        ({"symbol": "NQ=F", "time": "2025-01-27T09:40:00-05:00", "price": 5.0}, "is a good price"),
        ({"symbol": "NQ=F", "time": "2025-01-27T09:30:00-05:00", "price": 0}, "already has a tick"),
        ({"symbol": "ZZZ", "time": "2025-01-27T09:40:00-05:00", "price": 0}, "unknown symbol"),
        ({"symbol": "NQ=F", "time": "2030-01-01T00:00:00Z", "price": 0}, "outside start..end"),
        ({"symbol": "NQ=F", "time": 60, "price": "zero"}, "expected a number"),
    ],
)
def test_bad_bad_ticks_are_refused(tick: dict[str, Any], message: str) -> None:
    doc = _two_days()
    doc["bad_ticks"] = [tick]
    with pytest.raises(ScenarioError, match=message):
        load_scenario(doc)


@pytest.mark.parametrize("field", ["halts", "gaps"])
def test_spans_must_end_after_they_start(field: str) -> None:
    doc = copy.deepcopy(_two_days())
    doc[field][0]["end"] = doc[field][0]["start"]
    with pytest.raises(ScenarioError, match=rf"{field}\[0\]: end .* must be after start"):
        load_scenario(doc)


# --- news before the start, replay over a kept database -----------------------------------


async def test_news_before_the_start_is_the_backlog_and_db_continues(tmp_path: Path) -> None:
    doc = _two_days()
    # Ten simulated minutes are enough: the replay's jobs run every simulated minute.
    doc["end"] = "2025-01-26T18:10:00-05:00"
    doc["ticks"] = {"NQ=F": [[0, 21500.0], [300, 21450.0]]}
    doc["reference"] = {"NQ=F": doc["reference"]["NQ=F"]}
    doc["news"] = [n for n in doc["news"] if not n.get("symbols")]
    for key in ("halts", "gaps", "bad_ticks"):
        del doc[key]
    path = tmp_path / "sunday.json"
    path.write_text(json.dumps(doc))
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    out = Console(file=io.StringIO(), width=120, color_system=None)
    first = await run_replay(
        Settings(), str(path), commands=["/watch news deepseek"], console=out, database_url=url
    )
    titles = [a.headline for _, m in first.messages for a in m.alerts]
    # Published an hour before the start; Saturday's story is older than news rules look back.
    assert titles == ["Sunday: DeepSeek R1 rattles AI stocks"]
    # The same file again over the kept database: the watch is still there and the story,
    # already alerted, is not alerted twice.
    second = await run_replay(
        Settings(), str(path), commands=["/watchlist"], console=out, database_url=url
    )
    assert "news" in second.replies[0]
    assert second.messages == []
