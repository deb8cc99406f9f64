"""Relative moves: "drop 5% vs NQ=F" fires on the move of its own; every price alert shows
its move against a benchmark (NVDA -13% while NQ=F -4.3%: -8.7 points of its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import Engine, EngineConfig
from alerts.models import AlertKind, MarketSession, Quote, Watch
from alerts.rules import ChangeRule, Direction, RuleSyntaxError, parse_rule

T0 = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)  # 04:05 ET, premarket
MIN = timedelta(minutes=1)
PRE = MarketSession.PRE
NQ_CLOSE, NVDA_CLOSE = 21891.25, 142.62


def nq(change: float, at: datetime = T0) -> Quote:
    return Quote("NQ=F", NQ_CLOSE * (1 + change / 100), at, PRE, NQ_CLOSE, exchange="CME")


def es(change: float, at: datetime = T0) -> Quote:
    return Quote("ES=F", 6133.5 * (1 + change / 100), at, PRE, 6133.5, exchange="CME")


def stock(symbol: str, change: float, at: datetime = T0, exchange: str | None = "NMS") -> Quote:
    price = round(NVDA_CLOSE * (1 + change / 100), 4)
    return Quote(symbol, price, at, PRE, NVDA_CLOSE, exchange=exchange)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("drop 5% vs NQ=F", ChangeRule(Direction.DROP, 5.0, benchmark="NQ=F")),
        ("rise 3 versus es=f", ChangeRule(Direction.RISE, 3.0, benchmark="ES=F")),
        (
            "move 4% vs ^ndx for 2m",
            ChangeRule(Direction.MOVE, 4.0, confirm=2 * MIN, benchmark="^NDX"),
        ),
    ],
)
def test_vs_rules_parse_and_round_trip(text: str, rule: ChangeRule) -> None:
    assert parse_rule(text) == rule
    assert parse_rule(rule.canonical) == rule


@pytest.mark.parametrize(
    "text", ["above 150 vs NQ=F", "drop 3% in 15m vs NQ=F", "drop 5% vs NQ=F vs ES=F", "drop 5% vs"]
)
def test_vs_only_goes_with_change_rules(text: str) -> None:
    with pytest.raises(RuleSyntaxError, match="Try for example"):
        parse_rule(text)


def test_a_vs_rule_fires_on_the_move_of_its_own_not_on_the_market() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 5% vs NQ=F", T0)], [])
    assert "NQ=F" in engine.symbols()  # the benchmark's quotes are needed
    # The whole market falls 4.3% and NVDA with it: no move of its own.
    assert engine.on_quotes([nq(-4.3), stock("NVDA", -6.0)], T0).alerts == ()
    # NVDA goes on to -13% while NQ stays: -8.7 points of its own.
    (alert,) = engine.on_quotes([stock("NVDA", -13.0, T0 + MIN)], T0 + MIN).alerts
    assert alert.kind is AlertKind.FIRING
    assert alert.rule_text == "drop 5% vs NQ=F"
    assert alert.change_pct == pytest.approx(-13.0)
    assert (alert.benchmark, alert.benchmark_change_pct) == ("NQ=F", pytest.approx(-4.3))
    assert alert.relative_pct == pytest.approx(-8.7)


def test_the_benchmark_moving_alone_can_make_the_relative_move() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "rise 3% vs NQ=F", T0)], [])
    assert engine.on_quotes([nq(0.0), stock("NVDA", 1.0)], T0).alerts == ()
    # NVDA holds at +1% while the futures fall 2.5%: +3.5 points of its own.
    (alert,) = engine.on_quotes([nq(-2.5, T0 + MIN)], T0 + MIN).alerts
    assert alert.symbol == "NVDA"
    assert alert.relative_pct == pytest.approx(3.5)


def test_without_a_benchmark_quote_a_vs_rule_neither_fires_nor_recovers() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 5% vs NQ=F", T0)], [])
    assert engine.on_quotes([stock("NVDA", -13.0)], T0).alerts == ()
    stale = nq(-1.0, T0 - 2 * timedelta(hours=1))
    assert engine.on_quotes([stale, stock("NVDA", -13.5, T0 + MIN)], T0 + MIN).alerts == ()


def test_every_price_alert_shows_its_move_against_the_default_benchmark() -> None:
    engine = Engine()
    engine.load(
        [
            Watch(1, "c", "NVDA", "drop 10%", T0),  # a Nasdaq listing: NQ=F
            Watch(2, "c", "JPM", "drop 10%", T0),  # NYSE: ES=F
            Watch(3, "c", "NQ=F", "drop 4%", T0),  # a benchmark itself: none
        ],
        [],
    )
    alerts = engine.on_quotes(
        [nq(-4.3), es(-2.0), stock("NVDA", -13.0), stock("JPM", -11.0, exchange="NYQ")], T0
    ).alerts
    by_symbol = {a.symbol: a for a in alerts}
    assert by_symbol["NVDA"].benchmark == "NQ=F"
    assert by_symbol["NVDA"].relative_pct == pytest.approx(-8.7)
    assert by_symbol["JPM"].benchmark == "ES=F"
    assert by_symbol["JPM"].relative_pct == pytest.approx(-9.0)
    assert by_symbol["NQ=F"].benchmark is None
    assert by_symbol["NQ=F"].relative_pct is None


def test_benchmarks_are_configurable_per_symbol_and_by_default() -> None:
    config = EngineConfig(benchmark_other="YM=F", benchmarks={"ASML.AS": "^AEX"})
    engine = Engine(config)
    engine.load(
        [Watch(1, "c", "ASML.AS", "drop 10%", T0), Watch(2, "c", "JPM", "drop 10%", T0)], []
    )
    aex = Quote("^AEX", 891.0, T0, PRE, 900.0)
    ym = Quote("YM=F", 44000.0, T0, PRE, 44670.0)
    alerts = engine.on_quotes(
        [aex, ym, stock("ASML.AS", -10.6, exchange="AMS"), stock("JPM", -11.0, exchange="NYQ")],
        T0,
    ).alerts
    assert {a.symbol: a.benchmark for a in alerts} == {"ASML.AS": "^AEX", "JPM": "YM=F"}


def test_benchmark_settings_reach_the_engine_nested_and_flat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.runner import build_engine
    from bot.settings import load_settings

    monkeypatch.setenv("MARKETBOT_ALERTS__BENCHMARK_OTHER", "YM=F")
    monkeypatch.setenv("MARKETBOT_ALERTS_BENCHMARK_NASDAQ", "")
    monkeypatch.setenv("MARKETBOT_ALERTS_BENCHMARKS", '{"ASML.AS": "^AEX"}')
    config = build_engine(load_settings()).config
    assert config.benchmark_other == "YM=F"
    assert config.benchmark_nasdaq is None  # switched off
    assert dict(config.benchmarks) == {"ASML.AS": "^AEX"}
