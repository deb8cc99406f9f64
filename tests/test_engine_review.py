"""Review findings: engine behaviours a user would hit, each pinned by a test."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import Engine, EngineConfig
from alerts.models import AlertKind, MarketSession, Quote, Watch

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def quote(symbol: str, price: float, i: int, prev: float = 100.0) -> Quote:
    return Quote(symbol, price, T0 + i * MIN, MarketSession.PRE, prev)


def kinds_at(engine: Engine, quotes: list[Quote], i: int) -> list[AlertKind]:
    return [a.kind for a in engine.on_quotes(quotes, T0 + i * MIN).alerts]


def test_cooldown_also_holds_back_a_rule_with_confirmation() -> None:
    # "drop 10% for 1m" fires, recovers and crosses again two minutes later: the 10-minute
    # cooldown must delay that second fire just as it does for a rule without "for".
    engine = Engine(EngineConfig(cooldown=10 * MIN))
    engine.load([Watch(1, "c", "NVDA", "drop 10% for 1m", T0)], [])
    path = [89, 89, 95, 89, 89, 89]
    got = [kinds_at(engine, [quote("NVDA", p, i)], i) for i, p in enumerate(path)]
    assert got == [[], [AlertKind.FIRING], [], [], [], []]
    # Once the cooldown is over, the crossing still has to hold for its minute.
    assert kinds_at(engine, [quote("NVDA", 89, 12)], 12) == []
    assert kinds_at(engine, [quote("NVDA", 89, 13)], 13) == [AlertKind.FIRING]


def test_rebinding_baskets_keeps_the_channel_outage_open_until_data_is_back() -> None:
    # The pipeline re-applies a channel's baskets after every command. Doing so while a
    # member is in NoData must not forget the outage: the channel was told "degraded" and
    # must hear "recovered" once the data is back, not silence.
    baskets = {"x": ["A", "B"]}
    engine = Engine()
    engine.load([Watch(1, "c", "basket:x", "drop 10%", T0)], [], {"c": baskets})
    assert kinds_at(engine, [quote("A", 99, 0), quote("B", 99, 0)], 0) == []
    assert kinds_at(engine, [quote("A", math.nan, 1)], 1) == [AlertKind.DEGRADED]
    engine.set_baskets("c", baskets)
    # A second bad name during the same outage is not a second "degraded" notice.
    assert kinds_at(engine, [quote("B", math.nan, 2)], 2) == []
    assert kinds_at(engine, [quote("A", 99, 3)], 3) == []
    (back,) = engine.on_quotes([quote("B", 99, 4)], T0 + 4 * MIN).alerts
    assert back.kind is AlertKind.RECOVERED
    assert back.key == f"recovered:c:{(T0 + MIN).isoformat()}"


def test_replacing_a_watch_keeps_the_channel_outage_open() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    assert kinds_at(engine, [quote("NVDA", math.nan, 0)], 0) == [AlertKind.DEGRADED]
    engine.upsert_watch(Watch(1, "c", "NVDA", "drop 10%", T0, note="core position"))
    assert kinds_at(engine, [quote("NVDA", 99, 1)], 1) == [AlertKind.RECOVERED]


BASKET = {"c": {"x": ["A", "B", "C", "D"]}}


def _crashing_basket(rule: str) -> Engine:
    engine = Engine(EngineConfig(resolved_notices=True))
    engine.load([Watch(1, "c", "basket:x", rule, T0)], [], BASKET)
    # A is down 20%, B 6%, C and D 1%: the average is -7%, two names are past 5%.
    ev = engine.on_quotes([quote("A", 80, 0), quote("B", 94, 0), quote("C", 99, 0)], T0)
    ev2 = engine.on_quotes([quote("D", 99, 0)], T0)
    fired = [a for a in (*ev.alerts, *ev2.alerts) if a.symbol == "basket:x"]
    assert [a.kind for a in fired] == [AlertKind.FIRING]
    return engine


def _basket_kinds(engine: Engine, quotes: list[Quote], i: int) -> list[AlertKind]:
    ev = engine.on_quotes(quotes, T0 + i * MIN)
    return [a.kind for a in ev.alerts if a.symbol == "basket:x"]


@pytest.mark.parametrize("rule", ["drop 5%", "breadth 2 of 4 drop 5%"])
def test_a_basket_member_in_nodata_neither_resolves_nor_refires_the_basket(rule: str) -> None:
    engine = _crashing_basket(rule)
    # One bad tick on the biggest loser: without it the average is -2.7% (past the
    # -3% re-arm line) and one name is down 3% or more, but NoData is never a recovery
    assert _basket_kinds(engine, [quote("A", math.nan, 1)], 1) == []
    assert _basket_kinds(engine, [quote("C", 99, 2)], 2) == []
    # ... and its return is not a fresh crossing: the basket fired once.
    assert _basket_kinds(engine, [quote("A", 80, 3)], 3) == []
    st = engine.state(1, "basket:x")
    assert st is not None
    assert st.episode == T0.isoformat()


def test_a_halted_basket_member_neither_resolves_nor_refires_the_basket() -> None:
    engine = _crashing_basket("drop 5%")
    halted = Quote("A", 80, T0 + MIN, MarketSession.REGULAR, 100.0, halted=True)
    assert _basket_kinds(engine, [halted], 1) == []
    assert _basket_kinds(engine, [quote("C", 99, 2)], 2) == []
    assert _basket_kinds(engine, [quote("A", 80, 3)], 3) == []


def test_from_open_rules_ignore_the_previous_sessions_open_in_premarket() -> None:
    # In premarket Yahoo's quote still carries the previous session's open (148.87 on
    # Friday 2025-01-24): "from open" must wait for today's open, not fire against Friday's.
    engine = Engine()
    engine.load(
        [
            Watch(1, "c", "NVDA", "drop 5% from open", T0),
            Watch(2, "c", "basket:x", "drop 5% from open", T0),
        ],
        [],
        {"c": {"x": ["NVDA"]}},
    )
    pre = Quote("NVDA", 124.0, T0, MarketSession.PRE, 142.62, open=148.87)
    assert engine.on_quotes([pre], T0).alerts == ()
    opened = T0 + 330 * MIN  # 14:30 UTC, 09:30 ET
    regular = Quote("NVDA", 117.5, opened, MarketSession.REGULAR, 142.62, open=124.0)
    alerts = engine.on_quotes([regular], opened).alerts
    assert sorted((a.symbol, a.kind) for a in alerts) == [
        ("NVDA", AlertKind.FIRING),
        ("NVDA", AlertKind.FIRING),
        ("basket:x", AlertKind.FIRING),
    ]
    assert {a.reference_price for a in alerts if a.symbol == "NVDA"} == {124.0}
