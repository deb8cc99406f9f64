"""Properties over random multi-symbol price paths: index == naive loop, restart == no restart."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import Engine, EngineConfig, Evaluation
from alerts.lifecycle import RuleState
from alerts.models import AlertKind, MarketSession, Quote, Watch
from benchmarks.naive_engine import NaiveEngine

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SYMBOLS = ["A", "B", "C"]
RULES = [
    "drop 10%",
    "drop 3%",
    "drop 5% for 2m",
    "rise 5%",
    "move 4%",
    "above 110",
    "below 90",
    "drop 2% from open",
    "rise 1% from open",
    "gap 1%",
]
# Rolling windows keep their price history in memory only (a restart refills it), so they
# take part in the index property but not in the restart one.
INDEX_RULES = [*RULES, "drop 3% in 5m", "move 2% in 3m for 1m"]

_price = st.one_of(
    st.floats(min_value=60.0, max_value=140.0),
    st.floats(min_value=60.0, max_value=140.0),
    st.floats(min_value=60.0, max_value=140.0),
    st.sampled_from([math.nan, math.inf, 0.0, -1.0]),
)
_quote = st.tuples(
    st.sampled_from(SYMBOLS),
    _price,
    st.sampled_from([100.0, 100.0, 100.0, 95.0]),  # previous close; 95 starts a "new day"
    st.sampled_from([None, 100.0, 98.0]),  # open
    st.sampled_from(
        [MarketSession.PRE, MarketSession.REGULAR, MarketSession.REGULAR, MarketSession.CLOSED]
    ),
)
_steps = st.lists(st.lists(_quote, max_size=4), min_size=1, max_size=40)
_watches = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(RULES)), min_size=1, max_size=12
)
_index_watches = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(INDEX_RULES)), min_size=1, max_size=12
)


def _quotes(
    step: list[tuple[str, float, float, float | None, MarketSession]], i: int
) -> list[Quote]:
    at = T0 + i * MIN
    return [Quote(s, p, at, sess, prev, open=o) for s, p, prev, o, sess in step]


def _watch_list(specs: list[tuple[str, str]]) -> list[Watch]:
    return [Watch(i + 1, f"ch{i % 2}", s, r, T0) for i, (s, r) in enumerate(specs)]


def _signature(ev: Evaluation) -> tuple[list[tuple[str, str]], list[RuleState]]:
    return (
        sorted((a.key, a.kind.value) for a in ev.alerts),
        sorted(ev.states, key=lambda s: (s.watch_id, s.symbol)),
    )


@settings(max_examples=150, deadline=None)
@given(_index_watches, _steps)
def test_property_index_equals_naive_loop(
    specs: list[tuple[str, str]],
    steps: list[list[tuple[str, float, float, float | None, MarketSession]]],
) -> None:
    watches = _watch_list(specs)
    config = EngineConfig(resolved_notices=True)
    indexed = Engine(config)
    naive = NaiveEngine(EngineConfig(resolved_notices=True))
    indexed.load(watches, [])
    naive.load(watches, [])
    for i, step in enumerate(steps):
        qs = _quotes(step, i)
        a = indexed.on_quotes(qs, T0 + i * MIN)
        b = naive.on_quotes(qs, T0 + i * MIN)
        assert sorted((x.key, x.kind.value) for x in a.alerts) == sorted(
            (x.key, x.kind.value) for x in b.alerts
        ), f"step {i}"
    key = lambda s: (s.watch_id, s.symbol)  # noqa: E731
    assert sorted(indexed.states(), key=key) == sorted(naive.states(), key=key)


@settings(max_examples=150, deadline=None)
@given(_watches, _steps, st.integers(min_value=0, max_value=40))
def test_property_restart_equals_no_restart(
    specs: list[tuple[str, str]],
    steps: list[list[tuple[str, float, float, float | None, MarketSession]]],
    cut: int,
) -> None:
    watches = _watch_list(specs)
    steady = Engine()
    steady.load(watches, [])
    restarted = Engine()
    restarted.load(watches, [])
    for i, step in enumerate(steps):
        if i == cut:
            # Simulated restart: only what the store keeps (JSON state records) survives.
            records = [
                (s.watch_id, s.symbol, json.dumps(s.to_record())) for s in restarted.states()
            ]
            restarted = Engine()
            restarted.load(
                watches,
                [RuleState.from_record(w, sym, json.loads(r)) for w, sym, r in records],
            )
            key = lambda s: (s.watch_id, s.symbol)  # noqa: E731
            assert sorted(restarted.states(), key=key) == sorted(steady.states(), key=key)
        qs = _quotes(step, i)
        a = steady.on_quotes(qs, T0 + i * MIN)
        b = restarted.on_quotes(qs, T0 + i * MIN)
        fires_a = sorted(x.key for x in a.alerts if x.kind is not AlertKind.RECOVERED)
        fires_b = sorted(x.key for x in b.alerts if x.kind is not AlertKind.RECOVERED)
        assert fires_a == fires_b, f"step {i} (restart before step {cut})"


@settings(max_examples=150, deadline=None)
@given(_index_watches, _steps)
def test_property_keys_are_unique_over_a_run(
    specs: list[tuple[str, str]],
    steps: list[list[tuple[str, float, float, float | None, MarketSession]]],
) -> None:
    engine = Engine(EngineConfig(resolved_notices=True, repeat_interval=3 * MIN))
    engine.load(_watch_list(specs), [])
    seen: set[str] = set()
    for i, step in enumerate(steps):
        for a in engine.on_quotes(_quotes(step, i), T0 + i * MIN).alerts:
            assert a.key not in seen, a.key
            seen.add(a.key)


# Prices from a handful of levels, so that a symbol often gets the same quote again while its
# rules are firing, pending or cooling down: the index skips such symbols unless time alone
# can move one of their rules (a confirmation, a cooldown, a repeat).
_still_quote = st.tuples(
    st.sampled_from(SYMBOLS[:2]),
    st.sampled_from([100.0, 94.0, 89.0, 111.0]),
    st.sampled_from([100.0, 100.0, 100.0, 100.0, 95.0]),
    st.just(100.0),
    st.sampled_from([MarketSession.REGULAR] * 4 + [MarketSession.PRE]),
)
_still_steps = st.lists(st.lists(_still_quote, min_size=1, max_size=3), min_size=1, max_size=40)
_time_configs = st.sampled_from(
    [
        EngineConfig(resolved_notices=True),
        EngineConfig(cooldown=3 * MIN),
        EngineConfig(repeat_interval=2 * MIN),
        EngineConfig(cooldown=2 * MIN, repeat_interval=3 * MIN, resolved_notices=True),
    ]
)


@settings(max_examples=200, deadline=None)
@given(_index_watches, _still_steps, _time_configs)
def test_property_index_equals_naive_loop_on_prices_that_stand_still(
    specs: list[tuple[str, str]],
    steps: list[list[tuple[str, float, float, float | None, MarketSession]]],
    config: EngineConfig,
) -> None:
    watches = _watch_list(specs)
    indexed, naive = Engine(config), NaiveEngine(config)
    indexed.load(watches, [])
    naive.load(watches, [])
    for i, step in enumerate(steps):
        qs = _quotes(step, i)
        a = indexed.on_quotes(qs, T0 + i * MIN)
        b = naive.on_quotes(qs, T0 + i * MIN)
        assert _signature(a)[0] == _signature(b)[0], f"step {i}"
    key = lambda s: (s.watch_id, s.symbol)  # noqa: E731
    assert sorted(indexed.states(), key=key) == sorted(naive.states(), key=key)
