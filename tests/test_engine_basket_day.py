"""Basket rules and the trading day: a basket episode ends when New York's day (04:00 ET) does."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.engine import Engine, EngineConfig
from alerts.lifecycle import RuleState, RuleStatus
from alerts.models import Alert, AlertKind, MarketSession, Quote, Watch

NY = ZoneInfo("America/New_York")
FRIDAY, MONDAY, TUESDAY = 24, 27, 28  # January 2025
BASKET = {"c": {"x": ["A", "B", "C", "D"]}}


def et(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, minute, tzinfo=NY)


def q(symbol: str, change_pct: float, at: datetime, prev: float = 100.0) -> Quote:
    session = MarketSession.REGULAR if 9 <= at.astimezone(NY).hour < 16 else MarketSession.PRE
    return Quote(symbol, prev * (1 + change_pct / 100), at, session, prev)


def all_four(change_pct: float, at: datetime) -> list[Quote]:
    return [q(s, change_pct, at) for s in "ABCD"]


def basket_alerts(engine: Engine, quotes: list[Quote], now: datetime) -> list[Alert]:
    return [a for a in engine.on_quotes(quotes, now).alerts if a.symbol == "basket:x"]


def kinds(alerts: list[Alert]) -> list[AlertKind]:
    return [a.kind for a in alerts]


def engine_for(rule: str, *, resolved_notices: bool = True) -> Engine:
    engine = Engine(EngineConfig(resolved_notices=resolved_notices))
    engine.load([Watch(1, "c", "basket:x", rule, et(FRIDAY, 8))], [], BASKET)
    return engine


def fired_friday(rule: str) -> tuple[Engine, Alert]:
    engine = engine_for(rule)
    (fired,) = basket_alerts(engine, all_four(-7.0, et(FRIDAY, 10)), et(FRIDAY, 10))
    assert fired.kind is AlertKind.FIRING
    # Still down at the close: the basket never recovers past the -3% re-arm line.
    assert basket_alerts(engine, all_four(-6.5, et(FRIDAY, 15, 59)), et(FRIDAY, 15, 59)) == []
    return engine, fired


RULES = ["drop 5%", "breadth 2 of 4 drop 5%"]


@pytest.mark.parametrize("rule", RULES)
def test_a_basket_that_fired_friday_fires_again_on_mondays_crossing(rule: str) -> None:
    engine, friday = fired_friday(rule)
    # Monday's premarket opens at -4%: neither a crossing nor a recovery past the band, but
    # a new trading day. Friday's episode ends silently (no "resolved").
    assert basket_alerts(engine, all_four(-4.0, et(MONDAY, 4, 5)), et(MONDAY, 4, 5)) == []
    st = engine.state(1, "basket:x")
    assert st is not None
    assert st.status is RuleStatus.ARMED
    # Monday's own crossing fires, once, under a key of its own.
    crossed = et(MONDAY, 4, 20)
    monday = basket_alerts(engine, all_four(-6.0, crossed), crossed)
    assert kinds(monday) == [AlertKind.FIRING]
    assert monday[0].key != friday.key
    assert monday[0].key == f"1:basket:x:{crossed.astimezone(UTC).isoformat()}:firing:0"
    assert basket_alerts(engine, all_four(-6.5, et(MONDAY, 4, 30)), et(MONDAY, 4, 30)) == []
    assert basket_alerts(engine, all_four(-6.0, et(MONDAY, 9, 45)), et(MONDAY, 9, 45)) == []
    st = engine.state(1, "basket:x")
    assert st is not None
    assert st.day == date(2025, 1, MONDAY)


@pytest.mark.parametrize("rule", RULES)
def test_the_day_change_itself_neither_fires_nor_resolves(rule: str) -> None:
    # Friday closed with every name down 6.5%. At 04:01 ET Monday only A has a Monday
    # quote; B, C and D still show Friday's -6.5%. Mixing them in would fire again at once.
    engine, _ = fired_friday(rule)
    got: list[Alert] = []
    for i, symbol in enumerate("ABCD"):
        at = et(MONDAY, 4, 1 + i)
        got += basket_alerts(engine, [q(symbol, -1.0, at)], at)
    assert got == []
    st = engine.state(1, "basket:x")
    assert st is not None
    assert st.status is RuleStatus.ARMED


def test_before_four_am_new_york_it_is_still_the_previous_trading_day() -> None:
    engine, _ = fired_friday("drop 5%")
    # 03:59 ET Monday still belongs to Friday's trading day (a weekend is not a trading
    # day of its own): nothing resets, so a deeper fall is no new fire.
    early = et(MONDAY, 3, 59)
    assert basket_alerts(engine, all_four(-9.0, early), early) == []
    st = engine.state(1, "basket:x")
    assert st is not None
    assert st.status is RuleStatus.FIRING


@pytest.mark.parametrize("rule", RULES)
def test_a_restart_mid_day_keeps_the_basket_quiet(rule: str) -> None:
    engine = engine_for(rule)
    fired = et(MONDAY, 10)
    assert kinds(basket_alerts(engine, all_four(-7.0, fired), fired)) == [AlertKind.FIRING]
    records = [(s.watch_id, s.symbol, json.dumps(s.to_record())) for s in engine.states()]
    restored = [RuleState.from_record(w, s, json.loads(r)) for w, s, r in records]
    (basket,) = [s for s in restored if s.symbol == "basket:x"]
    assert basket.day == date(2025, 1, MONDAY)
    assert basket == engine.state(1, "basket:x")

    again = Engine(EngineConfig(resolved_notices=True))
    again.load([Watch(1, "c", "basket:x", rule, et(FRIDAY, 8))], restored, BASKET)
    for minute in (5, 10, 15):
        at = et(MONDAY, 10, minute)
        assert basket_alerts(again, all_four(-7.5, at), at) == []
    st = again.state(1, "basket:x")
    assert st is not None
    assert (st.status, st.episode) == (RuleStatus.FIRING, basket.episode)
    # ... and the restored marker still ends the episode on Tuesday.
    tuesday = et(TUESDAY, 4, 30)
    assert kinds(basket_alerts(again, all_four(-7.5, tuesday), tuesday)) == [AlertKind.FIRING]


def test_a_record_written_before_the_day_marker_still_loads_and_behaves() -> None:
    engine, friday = fired_friday("drop 5%")
    st = engine.state(1, "basket:x")
    assert st is not None
    record = st.to_record()
    assert record.pop("day") == "2025-01-24"
    legacy = RuleState.from_record(1, "basket:x", json.loads(json.dumps(record)))
    assert legacy.day is None
    assert legacy.status is RuleStatus.FIRING

    # The same day after a restart: no reset, no second fire.
    same_day = Engine(EngineConfig(resolved_notices=True))
    same_day.load([Watch(1, "c", "basket:x", "drop 5%", et(FRIDAY, 8))], [legacy], BASKET)
    late = et(FRIDAY, 15, 59)
    assert basket_alerts(same_day, all_four(-7.0, late), late) == []

    # On Monday the old episode (it started on Friday) ends silently; Monday's crossing fires.
    monday = Engine(EngineConfig(resolved_notices=True))
    monday.load([Watch(1, "c", "basket:x", "drop 5%", et(FRIDAY, 8))], [legacy], BASKET)
    assert basket_alerts(monday, all_four(-4.0, et(MONDAY, 4, 5)), et(MONDAY, 4, 5)) == []
    crossed = basket_alerts(monday, all_four(-6.0, et(MONDAY, 4, 20)), et(MONDAY, 4, 20))
    assert kinds(crossed) == [AlertKind.FIRING]
    assert crossed[0].key != friday.key


def test_a_members_friday_only_quote_is_left_out_of_mondays_average() -> None:
    engine = engine_for("drop 7%")
    # Friday: D fell 20%, the others 1%: an average of -5.75%, no fire.
    assert basket_alerts(engine, all_four(-1.0, et(FRIDAY, 10)), et(FRIDAY, 10)) == []
    assert basket_alerts(engine, [q("D", -20.0, et(FRIDAY, 15))], et(FRIDAY, 15)) == []
    # Monday: A, B and C are down 4%; D has no Monday quote yet. With Friday's D the
    # average would be -8% and fire on a figure that belongs to no single day.
    at = et(MONDAY, 5)
    monday = [q(s, -4.0, at) for s in "ABC"]
    assert basket_alerts(engine, monday, at) == []
    # Once Monday's figures do cross, it fires.
    at = et(MONDAY, 5, 10)
    assert kinds(basket_alerts(engine, all_four(-8.0, at), at)) == [AlertKind.FIRING]


def test_a_members_friday_only_quote_is_left_out_of_mondays_breadth() -> None:
    engine = engine_for("breadth 2 of 4 drop 10%")
    assert basket_alerts(engine, [q("D", -20.0, et(FRIDAY, 15))], et(FRIDAY, 15)) == []
    at = et(MONDAY, 5)
    # A alone is one name past 10% on Monday; Friday's D is not a second.
    assert basket_alerts(engine, [q("A", -12.0, at)], at) == []
    at = et(MONDAY, 5, 5)
    assert kinds(basket_alerts(engine, [q("B", -12.0, at)], at)) == [AlertKind.FIRING]


def test_a_basket_across_amsterdam_and_new_york_fires_once_per_new_york_day() -> None:
    # ASML.AS starts a new session (a new previous close) at 09:00 CET, 03:00 ET: still
    # Monday's New York trading day. Only 04:00 ET starts Tuesday for the basket.
    engine = Engine(EngineConfig(resolved_notices=True))
    baskets = {"c": {"chips": ["ASML.AS", "NVDA"]}}
    engine.load([Watch(1, "c", "basket:chips", "drop 5%", et(FRIDAY, 8))], [], baskets)

    def asml(price: float, prev: float, at: datetime) -> Quote:
        return Quote("ASML.AS", price, at, MarketSession.REGULAR, prev, exchange="AMS")

    def nvda(price: float, prev: float, at: datetime, session: MarketSession) -> Quote:
        return Quote("NVDA", price, at, session, prev)

    pre, regular, post = MarketSession.PRE, MarketSession.REGULAR, MarketSession.POST
    steps = [
        # Monday 04:30 ET: NVDA -13% in premarket, ASML -6.8% in Amsterdam: fire.
        (et(MONDAY, 4, 30), [nvda(124.0, 142.62, et(MONDAY, 4, 30), pre)]),
        (et(MONDAY, 4, 30), [asml(690.0, 740.0, et(MONDAY, 4, 30))]),
        (et(MONDAY, 11, 29), [asml(680.0, 740.0, et(MONDAY, 11, 29))]),
        (et(MONDAY, 15, 59), [nvda(118.42, 142.62, et(MONDAY, 15, 59), regular)]),
        (et(MONDAY, 19, 59), [nvda(119.0, 142.62, et(MONDAY, 19, 59), post)]),
        # Tuesday 03:05 ET: Amsterdam's new session, a new previous close for ASML. Still
        # Monday in New York: no reset, no second fire.
        (et(TUESDAY, 3, 5), [asml(640.0, 680.0, et(TUESDAY, 3, 5))]),
        (et(TUESDAY, 3, 50), [asml(638.0, 680.0, et(TUESDAY, 3, 50))]),
        # Tuesday 04:30 ET: New York's new day, both down again: Tuesday's fire.
        (
            et(TUESDAY, 4, 30),
            [
                nvda(112.0, 118.42, et(TUESDAY, 4, 30), pre),
                asml(636.0, 680.0, et(TUESDAY, 4, 30)),
            ],
        ),
        (et(TUESDAY, 4, 45), [asml(630.0, 680.0, et(TUESDAY, 4, 45))]),
    ]
    fires: list[tuple[datetime, Alert]] = []
    for now, quotes in steps:
        # (A basket "drop" rule also watches each member on its own: those are not counted.)
        fires += [
            (now, a) for a in engine.on_quotes(quotes, now).alerts if a.symbol == "basket:chips"
        ]
    assert [(now, a.kind) for now, a in fires] == [
        (et(MONDAY, 4, 30), AlertKind.FIRING),
        (et(TUESDAY, 4, 30), AlertKind.FIRING),
    ]
    assert fires[0][1].key != fires[1][1].key


def test_amsterdams_monday_open_does_not_start_a_day_before_new_yorks() -> None:
    # Fired on Friday. ASML.AS opens at 03:00 ET Monday, down again against its new previous
    # close, while NVDA's last quote is Friday's: that is not a Monday fire of ASML alone,
    # followed by a second one once New York's premarket opens.
    engine = Engine()
    engine.load(
        [Watch(1, "c", "basket:chips", "drop 5%", et(FRIDAY, 8))],
        [],
        {"c": {"chips": ["ASML.AS", "NVDA"]}},
    )

    def basket(quotes: list[Quote], now: datetime) -> list[AlertKind]:
        return [a.kind for a in engine.on_quotes(quotes, now).alerts if a.symbol == "basket:chips"]

    friday = et(FRIDAY, 10)
    fri = [
        Quote("ASML.AS", 690.0, friday, MarketSession.REGULAR, 740.0),
        Quote("NVDA", 130.0, friday, MarketSession.REGULAR, 142.0),
    ]
    assert basket(fri, friday) == [AlertKind.FIRING]
    for minute in (5, 30, 59):
        early = et(MONDAY, 3, minute)
        asml = Quote("ASML.AS", 640.0 - minute / 10, early, MarketSession.REGULAR, 680.0)
        assert basket([asml], early) == []
    opened = et(MONDAY, 4, 30)
    monday = [
        Quote("ASML.AS", 630.0, opened, MarketSession.REGULAR, 680.0),
        Quote("NVDA", 120.0, opened, MarketSession.PRE, 131.0),
    ]
    assert basket(monday, opened) == [AlertKind.FIRING]
