"""The scenario format: the built-in DeepSeek file, validation errors, session hours, lookup."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.models import MarketSession
from alerts.scenario import (
    CME_FUTURES_HOURS,
    US_EQUITY_HOURS,
    Scenario,
    ScenarioError,
    change_pct,
    latest_at,
    load_scenario,
)
from bot.scenarios import (
    UnknownScenarioError,
    builtin_scenarios,
    open_scenario,
    read_scenario,
    resolve_scenario,
)

ROOT = Path(__file__).resolve().parent.parent
DEEPSEEK = "deepseek-2025-01-27"
ET = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_deepseek_scenario", ROOT / "tools" / "make_deepseek_scenario.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def deepseek() -> Scenario:
    return open_scenario(DEEPSEEK)


# --- the built-in scenario -----------------------------------------------------------------


def test_deepseek_is_builtin_and_small() -> None:
    assert DEEPSEEK in builtin_scenarios()
    assert resolve_scenario(DEEPSEEK).stat().st_size < 200 * 1024


def test_deepseek_file_is_what_the_generator_produces() -> None:
    gen = _generator()
    assert resolve_scenario(DEEPSEEK).read_text(encoding="utf-8") == gen.render(gen.document())


def test_deepseek_covers_the_article_symbols(deepseek: Scenario) -> None:
    wanted = {"NQ=F", "ES=F", "YM=F", "NVDA", "AVGO", "AMD", "MSFT", "GOOGL", "META", "ASML"}
    # ^VIX (reconstructed, not in the article) is there for the digest.
    assert wanted | {"ASML.AS", "^VIX"} == set(deepseek.symbols)
    assert set(deepseek.context_symbols) == {"NQ=F", "ES=F", "YM=F"}
    assert {t.symbol for t in deepseek.derivation.targets} == set(deepseek.symbols)
    assert deepseek.format == 2
    assert deepseek.default_watches[-1] == "/digest on 08:00"
    assert all(w.startswith("/watch ") for w in deepseek.default_watches[:-1])
    assert deepseek.derivation.summary
    assert deepseek.derivation.notes


def test_deepseek_reaches_each_target_when_it_says(deepseek: Scenario) -> None:
    for target in deepseek.derivation.targets:
        assert target.by is not None
        tick = latest_at(deepseek.ticks[target.symbol], target.by)
        assert tick is not None, target.symbol
        close = deepseek.reference[target.symbol].previous_close
        assert change_pct(tick.price, close) == pytest.approx(target.change_pct, abs=0.3), (
            target.symbol
        )


def test_deepseek_reported_levels(deepseek: Scenario) -> None:
    # The article gives two price levels besides percentages: NVDA "to $124", NQ "to 20,950".
    assert deepseek.ticks["NVDA"][-1].price == pytest.approx(124.0, abs=0.5)
    assert deepseek.ticks["NQ=F"][-1].price == pytest.approx(20950.0, abs=25.0)


def test_deepseek_asml_amsterdam_move_within_two_hours_of_open(deepseek: Scenario) -> None:
    ticks = deepseek.ticks["ASML.AS"]
    hours = deepseek.reference["ASML.AS"].session_hours
    assert hours.session_at(ticks[0].time) is MarketSession.REGULAR
    assert ticks[0].time.astimezone(AMS).time().strftime("%H:%M") == "09:00"
    target = deepseek.derivation.target("ASML.AS")
    assert target is not None
    assert target.by is not None
    assert target.by - ticks[0].time <= timedelta(hours=2)


def test_deepseek_us_symbols_start_at_the_premarket_open(deepseek: Scenario) -> None:
    for symbol in ("NVDA", "AVGO", "AMD", "MSFT", "GOOGL", "META", "ASML"):
        first = deepseek.ticks[symbol][0].time.astimezone(ET)
        assert (first.hour, first.minute) == (4, 0), symbol
        assert deepseek.reference[symbol].session_hours.session_at(first) is MarketSession.PRE


def test_deepseek_news_is_ordered_and_explains_the_first_alerts(deepseek: Scenario) -> None:
    times = [n.published for n in deepseek.news]
    assert times == sorted(times)
    assert len({n.key for n in deepseek.news}) == len(deepseek.news)
    first_us_tick = deepseek.ticks["NVDA"][0].time
    assert any("NVDA" in n.symbols and n.published <= first_us_tick for n in deepseek.news)


# --- validation ----------------------------------------------------------------------------


def _minimal() -> dict[str, Any]:
    return {
        "name": "tiny",
        "start": "2025-01-27T04:00:00-05:00",
        "end": "2025-01-27T05:00:00-05:00",
        "reference": {"AAA": {"previous_close": 100.0}, "BB=F": {"previous_close": 50.0}},
        "ticks": {
            "AAA": [[0, 99.0], [60, 98.0, 1000], ["2025-01-27T04:05:00-05:00", 90.0, 1500]],
            "BB=F": [[0, 49.0]],
        },
        "news": [
            {"time": 120, "title": "later", "symbols": ["AAA"]},
            {"time": "2025-01-26T12:00:00-05:00", "title": "earlier", "symbols": []},
        ],
        "default_watches": ["/watch AAA drop 5%"],
        "context_symbols": ["BB=F"],
        "derivation": {"summary": "made up", "targets": {"AAA": {"change_pct": -10, "by": 300}}},
    }


def test_minimal_scenario_loads_offsets_and_iso_times() -> None:
    s = load_scenario(_minimal())
    start = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
    assert [t.time for t in s.ticks["AAA"]] == [
        start,
        start + timedelta(minutes=1),
        start + timedelta(minutes=5),
    ]
    assert [t.volume for t in s.ticks["AAA"]] == [None, 1000.0, 1500.0]
    assert [n.title for n in s.news] == ["earlier", "later"]
    assert s.news[1].symbols == ("AAA",)
    assert s.reference["AAA"].session_hours == US_EQUITY_HOURS
    assert s.reference["BB=F"].session_hours == CME_FUTURES_HOURS
    target = s.derivation.target("AAA")
    assert target is not None
    assert target.by == start + timedelta(minutes=5)


def test_news_keys_are_stable_and_distinct() -> None:
    a, b = load_scenario(_minimal()), load_scenario(_minimal())
    assert [n.key for n in a.news] == [n.key for n in b.news]
    assert len({n.key for n in a.news}) == 2


def _parent(doc: dict[str, Any], path: str) -> tuple[Any, Any]:
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node, int(last) if isinstance(node, list) else last


def _drop(path: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        del node[key]

    return edit


def _set(path: str, value: object) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        node[key] = value

    return edit


BAD = [
    ("missing start", _drop("start"), r"^start: missing required field"),
    ("missing name", _drop("name"), r"^name: missing required field"),
    ("missing close", _drop("reference.AAA.previous_close"), r"reference\.AAA\.previous_close"),
    ("missing ticks", _drop("ticks"), r"^ticks: missing"),
    (
        "non-monotonic",
        _set("ticks.AAA.1", [-0.0, 98.0]),
        r"ticks\.AAA\[1\]: time .* is not after the previous",
    ),
    (
        "negative price",
        _set("ticks.AAA.1", [60, -98.0]),
        r"ticks\.AAA\[1\] price: must be positive",
    ),
    ("zero price", _set("ticks.AAA.1", [60, 0]), r"ticks\.AAA\[1\] price: must be positive"),
    ("nan price", _set("ticks.AAA.1", [60, float("nan")]), r"ticks\.AAA\[1\] price: .*finite"),
    ("bool price", _set("ticks.AAA.1", [60, True]), r"ticks\.AAA\[1\] price: expected a number"),
    ("text price", _set("ticks.AAA.1", [60, "98"]), r"ticks\.AAA\[1\] price: expected a number"),
    ("short point", _set("ticks.AAA.1", [60]), r"ticks\.AAA\[1\]: expected \[time, price\]"),
    ("negative vol", _set("ticks.AAA.1", [60, 98.0, -1]), r"ticks\.AAA\[1\] volume"),
    ("falling vol", _set("ticks.AAA.2", [300, 90.0, 10]), r"ticks\.AAA\[2\]: volume .* below"),
    ("after end", _set("ticks.AAA.2", [3601, 90.0]), r"ticks\.AAA\[2\]: .* outside start\.\.end"),
    ("before start", _set("ticks.BB=F.0", [-1, 49.0]), r"ticks\.BB=F\[0\]: .* outside"),
    ("empty series", _set("ticks.BB=F", []), r"ticks\.BB=F: expected a non-empty list"),
    (
        "tick for unknown",
        _set("ticks.ZZZ", [[0, 1.0]]),
        r"ticks\.ZZZ: unknown symbol 'ZZZ'.*known: AAA, BB=F",
    ),
    ("reference w/o ticks", _set("reference.CCC", {"previous_close": 1}), r"no points for CCC"),
    ("news unknown", _set("news.0.symbols", ["ZZZ"]), r"news\[0\]\.symbols\[0\]: unknown symbol"),
    ("news no title", _drop("news.0.title"), r"news\[0\]\.title: missing required field"),
    ("news bad time", _set("news.1.time", "Sunday"), r"news\[1\]\.time: 'Sunday' is not an ISO"),
    ("naive time", _set("start", "2025-01-27T04:00:00"), r"^start: .* has no UTC offset"),
    ("end first", _set("end", "2025-01-27T03:00:00-05:00"), r"^end .* must be after start"),
    ("bad symbol", _set("reference.aaa", {"previous_close": 1}), r"reference\.aaa: 'aaa' is not"),
    ("unknown field", _set("tickz", {}), r"unknown top-level field\(s\) 'tickz'"),
    ("bad format", _set("format", 3), r"^format: versions 1 and 2 are understood, got 3"),
    ("context unknown", _set("context_symbols", ["NQ=F"]), r"context_symbols\[0\]: unknown"),
    ("watch not text", _set("default_watches", [3]), r"default_watches\[0\]: expected a string"),
    ("target unknown", _set("derivation.targets.ZZZ", {"change_pct": 1}), r"targets\.ZZZ"),
    (
        "bad window",
        _set("reference.AAA.session_hours", {"timezone": "UTC", "regular": "9-16"}),
        r"reference\.AAA\.session_hours\.regular: expected 'HH:MM-HH:MM'",
    ),
    (
        "bad zone",
        _set("reference.AAA.session_hours", {"timezone": "Mars/Olympus", "regular": "09:00-17:00"}),
        r"session_hours\.timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        "bad days",
        _set(
            "reference.AAA.session_hours",
            {"timezone": "UTC", "regular": "09:00-17:00", "days": "fri-mon"},
        ),
        r"session_hours\.days: range 'fri-mon' runs backwards",
    ),
]


@pytest.mark.parametrize(("edit", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_scenarios_name_the_problem(edit: Any, message: str) -> None:
    doc = copy.deepcopy(_minimal())
    load_scenario(doc)  # the untouched document is valid, so the edit is what breaks it
    edit(doc)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(doc)


_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(
        ["name", "start", "end", "reference", "ticks", "news", "derivation", "context_symbols"]
    ),
    value=_json,
)
def test_any_garbage_in_a_field_is_a_scenario_error(field: str, value: object) -> None:
    doc = _minimal()
    doc[field] = value
    # ScenarioError is the only failure a caller has to handle; anything else fails the test.
    with contextlib.suppress(ScenarioError):
        load_scenario(doc)


# --- session hours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2025-01-27T03:59", MarketSession.CLOSED),
        ("2025-01-27T04:00", MarketSession.PRE),
        ("2025-01-27T09:29", MarketSession.PRE),
        ("2025-01-27T09:30", MarketSession.REGULAR),
        ("2025-01-27T16:00", MarketSession.POST),
        ("2025-01-27T20:00", MarketSession.CLOSED),
        ("2025-01-25T10:00", MarketSession.CLOSED),  # Saturday
    ],
)
def test_us_equity_hours(local: str, expected: MarketSession) -> None:
    when = datetime.fromisoformat(local).replace(tzinfo=ET)
    assert US_EQUITY_HOURS.session_at(when) is expected


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2025-01-26T17:59", MarketSession.CLOSED),  # Sunday before the Globex open
        ("2025-01-26T18:00", MarketSession.REGULAR),  # Sunday evening = Monday's session
        ("2025-01-27T04:00", MarketSession.REGULAR),
        ("2025-01-27T17:30", MarketSession.CLOSED),  # daily maintenance break
        ("2025-01-31T18:30", MarketSession.CLOSED),  # Friday evening: Saturday does not trade
    ],
)
def test_futures_hours_wrap_midnight(local: str, expected: MarketSession) -> None:
    when = datetime.fromisoformat(local).replace(tzinfo=ET)
    assert CME_FUTURES_HOURS.session_at(when) is expected


def test_amsterdam_hours_from_the_builtin(deepseek: Scenario) -> None:
    hours = deepseek.reference["ASML.AS"].session_hours
    at = datetime(2025, 1, 27, tzinfo=AMS)
    assert hours.session_at(at.replace(hour=8, minute=59)) is MarketSession.CLOSED
    assert hours.session_at(at.replace(hour=9)) is MarketSession.REGULAR
    assert hours.session_at(at.replace(hour=17, minute=30)) is MarketSession.CLOSED


# --- finding scenario files ----------------------------------------------------------------


def test_resolve_by_name_with_suffix_and_by_path(tmp_path: Path) -> None:
    builtin = resolve_scenario(DEEPSEEK)
    assert builtin.name == f"{DEEPSEEK}.json"
    assert resolve_scenario(f"{DEEPSEEK}.json") == builtin
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(_minimal()), encoding="utf-8")
    assert resolve_scenario(str(mine)) == mine
    assert open_scenario(str(mine)).name == "tiny"


def test_unknown_scenario_lists_builtins() -> None:
    with pytest.raises(
        UnknownScenarioError, match=rf"'nope' not found.*built-in scenarios: .*{DEEPSEEK}"
    ):
        resolve_scenario("nope")


def test_unreadable_files_name_file_and_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n  oops}', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.json: not valid JSON \(line 2"):
        read_scenario(broken)
    invalid = tmp_path / "invalid.json"
    doc = _minimal()
    doc["ticks"]["AAA"][1][1] = -5
    invalid.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"^invalid\.json: ticks\.AAA\[1\] price"):
        read_scenario(invalid)


def test_deepseek_default_watches_cross_together_early(deepseek: Scenario) -> None:
    # The demo's promise: the default watches fire at 04:0x ET, so they land in one message.
    crossings = []
    for line in (w for w in deepseek.default_watches if w.startswith("/watch ")):
        match = re.fullmatch(r"/watch (\S+) drop (\d+(?:\.\d+)?)%", line)
        assert match is not None, line
        symbol, threshold = match[1], -float(match[2])
        close = deepseek.reference[symbol].previous_close
        first = next(t for t in deepseek.ticks[symbol] if change_pct(t.price, close) <= threshold)
        crossings.append(first.time)
    assert crossings
    assert max(crossings) < datetime(2025, 1, 27, 4, 10, tzinfo=ET)
    assert max(crossings) - min(crossings) <= timedelta(minutes=2)
