"""Lifecycle per (watch, symbol): table tests of every transition, and properties over paths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import Engine, EngineConfig
from alerts.lifecycle import RuleState, RuleStatus
from alerts.models import AlertKind, MarketSession, Quote, Severity, Watch

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
PREV = 100.0


@dataclass(frozen=True)
class Bad:
    """A quote the engine must treat as NoData."""

    price: float | None
    prev: float | None = PREV


@dataclass(frozen=True)
class NewDay:
    """A quote after the previous close moved to ``prev``."""

    price: float
    prev: float


@dataclass(frozen=True)
class Closed:
    price: float


@dataclass(frozen=True)
class Halted:
    price: float


Step = float | Bad | NewDay | Closed | Halted


def quote_for(step: Step, i: int, symbol: str = "NVDA") -> Quote:
    at = T0 + i * MIN
    if isinstance(step, Bad):
        return Quote(symbol, step.price, at, MarketSession.PRE, step.prev)
    if isinstance(step, NewDay):
        return Quote(symbol, step.price, at, MarketSession.PRE, step.prev)
    if isinstance(step, Closed):
        return Quote(symbol, step.price, at, MarketSession.CLOSED, PREV)
    if isinstance(step, Halted):
        return Quote(symbol, step.price, at, MarketSession.REGULAR, PREV, halted=True)
    return Quote(symbol, step, at, MarketSession.PRE, PREV)


def run(
    rule: str, steps: list[Step], config: EngineConfig | None = None, target: str = "NVDA"
) -> list[list[tuple[str, int]]]:
    engine = Engine(config or EngineConfig())
    engine.load([Watch(1, "c", target, rule, T0)], [])
    out = []
    for i, step in enumerate(steps):
        ev = engine.on_quotes([quote_for(step, i)], T0 + i * MIN)
        out.append([(a.kind.value, a.tier) for a in ev.alerts])
    return out


F, E, R = "firing", "escalated", "resolved"
DEG, REC, REP = "degraded", "recovered", "repeat"
RESOLVING = EngineConfig(resolved_notices=True)

TABLE: list[tuple[str, str, list[Step], list[list[tuple[str, int]]], EngineConfig | None]] = [
    ("no crossing", "drop 10%", [99, 95, 91], [[], [], []], None),
    ("fires once per crossing", "drop 10%", [95, 89.9, 89, 88.5], [[], [(F, 0)], [], []], None),
    ("exactly at the threshold fires", "drop 10%", [90.0], [[(F, 0)]], None),
    (
        "inside the hysteresis band does not re-arm",
        "drop 10%",
        [89, 91, 91.9, 89],
        [[(F, 0)], [], [], []],
        None,
    ),
    (
        "past the band re-arms, then fires again",
        "drop 10%",
        [89, 92.5, 89],
        [[(F, 0)], [], [(F, 0)]],
        None,
    ),
    (
        "resolved notice when the channel wants it",
        "drop 10%",
        [89, 92.5],
        [[(F, 0)], [(R, 0)]],
        RESOLVING,
    ),
    (
        "escalation tiers at -15 and -20",
        "drop 10%",
        [89, 85, 84, 79.5, 75.1],
        [[(F, 0)], [(E, 1)], [], [(E, 2)], []],
        None,
    ),
    ("a gap through two tiers fires at the deeper tier", "drop 10%", [84], [[(F, 1)]], None),
    ("escalation never repeats a tier", "drop 10%", [84, 86, 84], [[(F, 1)], [], []], None),
    ("rise", "rise 5%", [104, 105.5, 103.5, 102.9, 106], [[], [(F, 0)], [], [], [(F, 0)]], None),
    ("move fires both ways", "move 5%", [94, 98, 106], [[(F, 0)], [], [(F, 0)]], None),
    ("above", "above 150", [149, 151, 149, 146, 151], [[], [(F, 0)], [], [], [(F, 0)]], None),
    ("below", "below 90", [91, 89, 91, 92, 89], [[], [(F, 0)], [], [], [(F, 0)]], None),
    (
        "NoData is never a crossing: NaN, inf, zero, negative, missing, bad close",
        "drop 10%",
        [
            Bad(math.nan),
            Bad(math.inf),
            Bad(0.0),
            Bad(-5.0),
            Bad(None),
            Bad(50.0, 0.0),
            Bad(50.0, None),
            Bad(50.0, math.nan),
        ],
        [[(DEG, 0)], [], [], [], [], [], [], []],
        None,
    ),
    (
        "NoData is never a recovery, and recovery is one notice",
        "drop 10%",
        [89, Bad(math.nan), Bad(None), 89.5, 99],
        [[(F, 0)], [(DEG, 0)], [], [(REC, 0)], []],
        None,
    ),
    (
        "the same price before and after an outage still ends the outage",
        "drop 10%",
        [95, Bad(math.nan), 95, 89],
        [[], [(DEG, 0)], [(REC, 0)], [(F, 0)]],
        None,
    ),
    (
        "a bad tick far from the close is NoData, not a crash",
        "drop 10%",
        [Bad(1.0)],
        [[(DEG, 0)]],
        None,
    ),
    (
        "a new trading day is not a recovery",
        "drop 10%",
        [89, NewDay(89.5, 89.0), NewDay(80.0, 89.0)],
        [[(F, 0)], [], [(F, 0)]],
        RESOLVING,
    ),
    (
        "a new day that opens far below the new close is a fresh crossing",
        "drop 10%",
        [89, NewDay(70, 89.0)],
        [[(F, 0)], [(F, 2)]],
        None,
    ),
    (
        "inhibited when the market is closed or the symbol halted",
        "drop 10%",
        [Closed(80), Halted(80), 95, 89],
        [[], [], [], [(F, 0)]],
        None,
    ),
    (
        "confirmation: must hold for 2m",
        "drop 10% for 2m",
        [89, 89, 88.5, 88],
        [[], [], [(F, 0)], []],
        None,
    ),
    (
        "confirmation: a blip does not fire",
        "drop 10% for 2m",
        [89, 95, 89, 89],
        [[], [], [], []],
        None,
    ),
    (
        "repeat interval while still firing",
        "drop 10%",
        [89, 89, 89, 89, 89],
        [[(F, 0)], [], [(REP, 0)], [], [(REP, 0)]],
        EngineConfig(repeat_interval=2 * MIN),
    ),
    (
        "cooldown delays a fresh crossing",
        "drop 10%",
        [89, 95, 89, 89, 89],
        [[(F, 0)], [], [], [(F, 0)], []],
        EngineConfig(cooldown=3 * MIN),
    ),
]


@pytest.mark.parametrize(
    ("rule", "steps", "expected", "config"),
    [pytest.param(r, s, e, c, id=name) for name, r, s, e, c in TABLE],
)
def test_transitions(
    rule: str,
    steps: list[Step],
    expected: list[list[tuple[str, int]]],
    config: EngineConfig | None,
) -> None:
    assert run(rule, steps, config) == expected


def test_alert_fields_and_severity() -> None:
    engine = Engine()
    engine.load([Watch(7, "c", "NVDA", "DROP 10", T0, note="core position")], [])
    q = Quote("NVDA", 124.0, T0, MarketSession.PRE, 142.62)
    (alert,) = engine.on_quotes([q], T0).alerts
    assert alert.kind is AlertKind.FIRING
    assert alert.severity is Severity.WARNING
    assert alert.rule_text == "drop 10%"
    assert alert.price == 124.0
    assert alert.reference_price == 142.62
    assert alert.change_pct == pytest.approx(-13.0555, abs=1e-3)
    assert alert.session is MarketSession.PRE
    assert alert.note == "core position"
    assert alert.watch_id == 7
    assert alert.key == f"7:NVDA:{T0.isoformat()}:firing:0"
    (escalated,) = engine.on_quotes(
        [Quote("NVDA", 120.0, T0 + MIN, MarketSession.PRE, 142.62)], T0 + MIN
    ).alerts
    assert escalated.kind is AlertKind.ESCALATED
    assert escalated.severity is Severity.CRITICAL
    assert escalated.key == f"7:NVDA:{T0.isoformat()}:escalated:1"


def test_double_threshold_is_critical() -> None:
    engine = Engine(EngineConfig(escalation_step_pct=50))
    engine.load([Watch(1, "c", "AMD", "drop 3%", T0)], [])
    (alert,) = engine.on_quotes([Quote("AMD", 93.5, T0, MarketSession.PRE, 100.0)], T0).alerts
    assert alert.severity is Severity.CRITICAL


def test_degraded_once_per_channel_per_outage() -> None:
    engine = Engine()
    watches = [
        Watch(1, "a", "NVDA", "drop 10%", T0),
        Watch(2, "a", "AMD", "drop 10%", T0),
        Watch(3, "a", "NVDA", "rise 10%", T0),
        Watch(4, "b", "NVDA", "drop 5%", T0),
    ]
    engine.load(watches, [])
    ev = engine.mark_nodata(["NVDA", "AMD"], "unreachable", T0)
    assert sorted((a.channel, a.kind.value) for a in ev.alerts) == [
        ("a", "degraded"),
        ("b", "degraded"),
    ]
    assert {(s.watch_id, s.symbol) for s in ev.states if s.nodata} == {
        (1, "NVDA"),
        (2, "AMD"),
        (3, "NVDA"),
        (4, "NVDA"),
    }
    for i in range(1, 4):  # still out on every poll: no more notices
        assert engine.mark_nodata(["NVDA", "AMD"], "unreachable", T0 + i * MIN).alerts == ()
    back = engine.on_quotes(
        [Quote("NVDA", 99.0, T0 + 5 * MIN, MarketSession.PRE, 100.0)], T0 + 5 * MIN
    )
    # channel b only watched NVDA: recovered; channel a still misses AMD.
    assert [(a.channel, a.kind.value) for a in back.alerts] == [("b", "recovered")]
    back2 = engine.on_quotes(
        [Quote("AMD", 99.0, T0 + 6 * MIN, MarketSession.PRE, 100.0)], T0 + 6 * MIN
    )
    assert [(a.channel, a.kind.value) for a in back2.alerts] == [("a", "recovered")]
    keys = {a.key for a in ev.alerts + back.alerts + back2.alerts}
    assert len(keys) == 4


def test_stale_regular_quote_is_nodata_but_old_premarket_is_not() -> None:
    engine = Engine(EngineConfig(stale_after=timedelta(minutes=5)))
    engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    old = T0 - timedelta(minutes=30)
    ev = engine.on_quotes([Quote("NVDA", 80.0, old, MarketSession.REGULAR, 100.0)], T0)
    assert [a.kind for a in ev.alerts] == [AlertKind.DEGRADED]
    assert engine.nodata_symbols() == {"NVDA": "stale"}
    engine2 = Engine(EngineConfig(stale_after=timedelta(minutes=5)))
    engine2.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    ev2 = engine2.on_quotes([Quote("NVDA", 80.0, old, MarketSession.PRE, 100.0)], T0)
    assert [a.kind for a in ev2.alerts] == [AlertKind.FIRING]


def test_out_of_order_quote_is_ignored() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    engine.on_quotes([Quote("NVDA", 99.0, T0 + MIN, MarketSession.PRE, 100.0)], T0 + MIN)
    ev = engine.on_quotes([Quote("NVDA", 80.0, T0, MarketSession.PRE, 100.0)], T0 + MIN)
    assert ev.alerts == ()


def test_new_watch_already_past_its_level_fires_on_next_quote() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    engine.on_quotes([Quote("NVDA", 85.0, T0, MarketSession.PRE, 100.0)], T0)
    engine.upsert_watch(Watch(2, "c", "NVDA", "drop 5%", T0))
    ev = engine.on_quotes([Quote("NVDA", 85.5, T0 + MIN, MarketSession.PRE, 100.0)], T0 + MIN)
    assert [(a.watch_id, a.kind) for a in ev.alerts] == [(2, AlertKind.FIRING)]


def test_removed_watch_forgets_its_state() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
    engine.on_quotes([Quote("NVDA", 85.0, T0, MarketSession.PRE, 100.0)], T0)
    engine.remove_watch(1)
    assert engine.states() == []
    assert engine.symbols() == frozenset()


# ---------------------------------------------------------------- properties

_good = st.floats(min_value=60.0, max_value=140.0)
_bad = st.sampled_from(
    [Bad(math.nan), Bad(math.inf), Bad(0.0), Bad(-1.0), Bad(None), Bad(90.0, 0.0), Bad(90.0, None)]
)
_paths = st.lists(st.one_of(_good, _good, _good, _bad), min_size=1, max_size=60)
_rule_texts = st.sampled_from(
    ["drop 10%", "drop 3%", "rise 5%", "move 4%", "above 110", "below 90", "drop 5% for 2m"]
)


def _rearm_level(rule: str) -> tuple[str, float]:
    kind, value = rule.split()[0], float(rule.split()[1].rstrip("%"))
    return kind, value


@settings(max_examples=200, deadline=None)
@given(_rule_texts, _paths)
def test_property_no_second_fire_without_rearm(rule: str, path: list[Step]) -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", rule, T0)], [])
    fired_since_rearm = False
    for i, step in enumerate(path):
        ev = engine.on_quotes([quote_for(step, i)], T0 + i * MIN)
        for s in ev.states:
            if s.status is RuleStatus.ARMED and not s.nodata:
                fired_since_rearm = False
        fires = [a for a in ev.alerts if a.kind is AlertKind.FIRING]
        assert len(fires) <= 1
        if fires:
            assert not fired_since_rearm, f"second fire without re-arm at step {i}"
            fired_since_rearm = True
        state = engine.state(1, "NVDA")
        if state is not None and state.status is RuleStatus.FIRING:
            assert fired_since_rearm


@settings(max_examples=200, deadline=None)
@given(_rule_texts, _paths)
def test_property_never_fire_or_recover_on_nodata(rule: str, path: list[Step]) -> None:
    engine = Engine(EngineConfig(resolved_notices=True))
    engine.load([Watch(1, "c", "NVDA", rule, T0)], [])
    for i, step in enumerate(path):
        before = engine.state(1, "NVDA")
        ev = engine.on_quotes([quote_for(step, i)], T0 + i * MIN)
        if isinstance(step, Bad):
            kinds = {a.kind for a in ev.alerts}
            assert kinds <= {AlertKind.DEGRADED}
            after = engine.state(1, "NVDA")
            assert after is not None
            assert after.nodata
            if before is not None:
                assert (after.status, after.tier, after.episode) == (
                    before.status,
                    before.tier,
                    before.episode,
                )


@settings(max_examples=200, deadline=None)
@given(_rule_texts, _paths)
def test_property_state_record_round_trip(rule: str, path: list[Step]) -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "NVDA", rule, T0)], [])
    for i, step in enumerate(path):
        engine.on_quotes([quote_for(step, i)], T0 + i * MIN)
        for s in engine.states():
            record = s.to_record()
            import json

            again = RuleState.from_record(s.watch_id, s.symbol, json.loads(json.dumps(record)))
            assert again == s


def test_keys_do_not_depend_on_the_sources_time_zone() -> None:
    from zoneinfo import ZoneInfo

    keys = []
    for at in (T0, T0.astimezone(ZoneInfo("America/New_York"))):
        engine = Engine()
        engine.load([Watch(1, "c", "NVDA", "drop 10%", T0)], [])
        (alert,) = engine.on_quotes([Quote("NVDA", 89.0, at, MarketSession.PRE, 100.0)], at).alerts
        keys.append(alert.key)
    assert keys[0] == keys[1] == f"1:NVDA:{T0.isoformat()}:firing:0"
