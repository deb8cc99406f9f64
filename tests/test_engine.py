"""Engine features past the basic lifecycle: windows, open, gap, volume, baskets, news, restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.engine import Engine, EngineConfig, VolumeProfile, build_volume_profile
from alerts.lifecycle import RuleState, RuleStatus
from alerts.models import AlertKind, MarketSession, NewsItem, Quote, Watch

T0 = datetime(2025, 1, 27, 15, 0, tzinfo=UTC)  # 10:00 ET, regular session
MIN = timedelta(minutes=1)


def q(
    symbol: str,
    price: float,
    i: int,
    *,
    prev: float = 100.0,
    open_: float | None = None,
    volume: float | None = None,
    session: MarketSession = MarketSession.REGULAR,
) -> Quote:
    return Quote(symbol, price, T0 + i * MIN, session, prev, open=open_, day_volume=volume)


def engine_with(*watches: tuple[str, str], config: EngineConfig | None = None) -> Engine:
    engine = Engine(config or EngineConfig())
    engine.load([Watch(i + 1, "c", t, r, T0) for i, (t, r) in enumerate(watches)], [])
    return engine


def kinds(engine: Engine, quotes: list[Quote], i: int) -> list[str]:
    return [f"{a.symbol}:{a.kind.value}" for a in engine.on_quotes(quotes, T0 + i * MIN).alerts]


def test_rolling_window_drop() -> None:
    e = engine_with(("NVDA", "drop 3% in 15m"))
    path = [100, 101, 100.5, 98.5, 97.9, 97.5]  # 97.9 is 3.07% below the 101 high
    got = [kinds(e, [q("NVDA", p, i)], i) for i, p in enumerate(path)]
    assert got == [[], [], [], [], ["NVDA:firing"], []]
    # The window slides: once the 101 high is older than 15m, the drop is measured from lower.
    later = [kinds(e, [q("NVDA", 97.5, 20 + i)], 20 + i) for i in range(3)]
    assert later == [[], [], []]
    st = e.state(1, "NVDA")
    assert st is not None
    assert st.status is RuleStatus.ARMED
    alert = e.on_quotes([q("NVDA", 94.0, 24)], T0 + 24 * MIN).alerts[0]
    assert alert.reference_price == pytest.approx(97.5)
    assert alert.change_pct == pytest.approx(-3.59, abs=0.01)


def test_window_rise_and_move() -> None:
    e = engine_with(("AMD", "rise 2% in 5m"), ("AMD", "move 2% in 5m"))
    assert kinds(e, [q("AMD", 100, 0)], 0) == []
    assert kinds(e, [q("AMD", 102.5, 1)], 1) == ["AMD:firing", "AMD:firing"]


def test_from_open() -> None:
    e = engine_with(("NVDA", "drop 5% from open"))
    assert kinds(e, [q("NVDA", 100, 0, prev=120, open_=104)], 0) == []
    assert kinds(e, [q("NVDA", 98.7, 1, prev=120, open_=104)], 1) == ["NVDA:firing"]
    alert = e.on_quotes([q("NVDA", 93, 2, prev=120, open_=104)], T0 + 2 * MIN).alerts[0]
    assert alert.kind is AlertKind.ESCALATED
    assert alert.reference_price == 104


def test_from_open_waits_for_an_open() -> None:
    e = engine_with(("NVDA", "drop 5% from open"))
    pre = q("NVDA", 80, 0, open_=None, session=MarketSession.PRE)
    assert kinds(e, [pre], 0) == []


def test_gap_fires_once_per_day() -> None:
    e = engine_with(("NVDA", "gap down 4%"), ("AMD", "gap 4%"))
    assert kinds(e, [q("NVDA", 95, 0, open_=95.5), q("AMD", 100, 0, open_=103)], 0) == [
        "NVDA:firing"
    ]
    assert kinds(e, [q("NVDA", 99, 1, open_=95.5)], 1) == []
    next_day = q("NVDA", 90, 2, prev=99, open_=94.8)
    assert kinds(e, [next_day], 2) == ["NVDA:firing"]


def test_gap_ignores_premarket() -> None:
    e = engine_with(("NVDA", "gap 4%"))
    assert kinds(e, [q("NVDA", 80, 0, open_=80, session=MarketSession.PRE)], 0) == []


def test_volume_against_time_of_day_profile() -> None:
    e = engine_with(("NVDA", "volume 3x"))
    # 09:30 ET open, 30-minute buckets: 20M by 10:00, 30M by 10:30 on average.
    profile = VolumeProfile("America/New_York", time(9, 30), 30, (20e6, 30e6, 38e6))
    e.set_volume_profile("NVDA", profile)
    assert profile.expected(T0) == 20e6
    assert profile.expected(T0 - 31 * MIN) is None  # before the first bucket ended
    assert kinds(e, [q("NVDA", 100, 0, volume=50e6)], 0) == []
    assert kinds(e, [q("NVDA", 100, 1, volume=61e6)], 1) == ["NVDA:firing"]
    assert kinds(e, [q("NVDA", 100, 2, volume=70e6)], 2) == []


def test_volume_without_profile_is_silent() -> None:
    e = engine_with(("NVDA", "volume 2x"))
    assert kinds(e, [q("NVDA", 100, 0, volume=1e12)], 0) == []


AI = ("NVDA", "AMD", "AVGO", "MSFT", "GOOGL", "META", "ASML", "TSM")


def test_basket_average_and_members() -> None:
    e = engine_with(("basket:ai", "drop 5%"))
    assert e.symbols() == frozenset(AI)
    quotes = [q(s, 97, 0) for s in AI[:3]]
    assert kinds(e, quotes, 0) == []
    # Four of eight quoted (coverage reached): average of -3,-3,-3,-12 = -5.25.
    got = kinds(e, [q("MSFT", 88, 1)], 1)
    assert got == ["MSFT:firing", "basket:ai:firing"]
    avg = e.state(1, "basket:ai")
    assert avg is not None
    assert avg.status is RuleStatus.FIRING


def test_basket_needs_coverage() -> None:
    e = engine_with(("basket:ai", "drop 5%"))
    assert kinds(e, [q("NVDA", 80, 0)], 0) == ["NVDA:firing"]  # no average from one name


def test_breadth() -> None:
    e = engine_with(("basket:ai", "breadth 3 of 8 drop 5%"))
    got = [kinds(e, [q(s, 94, i)], i) for i, s in enumerate(AI[:4])]
    assert got == [[], [], ["basket:ai:firing"], []]
    # Recovery: breadth measured with the band (still 3 within 3% of the threshold): no re-arm.
    e.on_quotes([q("NVDA", 96.5, 5)], T0 + 5 * MIN)
    e.on_quotes([q("AMD", 96.5, 6)], T0 + 6 * MIN)
    st = e.state(1, "basket:ai")
    assert st is not None
    assert st.status is RuleStatus.FIRING
    e.on_quotes([q("AVGO", 99, 7), q("MSFT", 99, 7)], T0 + 7 * MIN)
    st = e.state(1, "basket:ai")
    assert st is not None
    assert st.status is RuleStatus.ARMED


def test_breadth_on_a_plain_symbol_is_ignored() -> None:
    e = engine_with(("NVDA", "breadth 3 drop 5%"))
    assert e.symbols() == frozenset()


def test_channel_basket_overrides_builtin_and_rebinds() -> None:
    e = Engine()
    e.load([Watch(1, "c", "basket:ai", "drop 5%", T0)], [], {"c": {"ai": ["NVDA", "AMD"]}})
    assert e.symbols() == frozenset({"NVDA", "AMD"})
    e.on_quotes([q("NVDA", 90, 0)], T0)
    e.set_baskets("c", {"ai": ["NVDA", "TSM"]})
    assert e.symbols() == frozenset({"NVDA", "TSM"})
    st = e.state(1, "NVDA")
    assert st is not None
    assert st.status is RuleStatus.FIRING  # kept: NVDA stayed in the basket
    assert kinds(e, [q("NVDA", 89.5, 1)], 1) == []


def test_news_rule_once_per_story() -> None:
    e = engine_with(("news", "news deepseek"), ("NVDA", "news export"))
    items = [
        NewsItem("a", "DeepSeek R1 rattles Nvidia", T0 - 10 * MIN, symbols=("NVDA",)),
        NewsItem("b", "Deepseeking alpha", T0 - 10 * MIN),  # not the whole word
        NewsItem("c", "Chip export rules tighten", T0 - 10 * MIN, symbols=("AMD",)),
        NewsItem("d", "New export curbs hit Nvidia", T0 - 10 * MIN, symbols=("NVDA",)),
        NewsItem("e", "DeepSeek, last week", T0 - timedelta(days=3)),  # too old
    ]
    ev = e.on_news(items, T0)
    assert sorted((a.watch_id, a.headline) for a in ev.alerts) == [
        (1, "DeepSeek R1 rattles Nvidia"),
        (2, "New export curbs hit Nvidia"),
    ]
    assert all(a.kind is AlertKind.NEWS for a in ev.alerts)
    assert e.on_news(items, T0 + MIN).alerts == ()
    st = e.state(1, "news")
    assert st is not None
    assert st.seen == ("a",)
    assert "news" not in e.symbols()


def test_restart_never_refires_and_keeps_pending() -> None:
    watches = [Watch(1, "c", "NVDA", "drop 10%", T0), Watch(2, "c", "AMD", "drop 5% for 2m", T0)]
    first = Engine()
    first.load(watches, [])
    first.on_quotes([q("NVDA", 85, 0), q("AMD", 94, 0)], T0)
    records = [(s.watch_id, s.symbol, json.dumps(s.to_record())) for s in first.states()]
    second = Engine()
    second.load(watches, [RuleState.from_record(w, sym, json.loads(r)) for w, sym, r in records])
    assert sorted(second.states(), key=lambda s: s.watch_id) == sorted(
        first.states(), key=lambda s: s.watch_id
    )
    ev = second.on_quotes([q("NVDA", 84.5, 1), q("AMD", 94, 1)], T0 + MIN)
    assert ev.alerts == ()  # NVDA already fired; AMD still pending
    ev = second.on_quotes([q("NVDA", 84.5, 2), q("AMD", 94, 2)], T0 + 2 * MIN)
    assert [(a.symbol, a.kind) for a in ev.alerts] == [("AMD", AlertKind.FIRING)]
    assert ev.alerts[0].key == f"2:AMD:{T0.isoformat()}:firing:0"


def test_restart_during_outage_sends_no_second_degraded() -> None:
    watches = [Watch(1, "c", "NVDA", "drop 10%", T0)]
    first = Engine()
    first.load(watches, [])
    assert len(first.mark_nodata(["NVDA"], "unreachable", T0).alerts) == 1
    second = Engine()
    second.load(watches, first.states())
    assert second.mark_nodata(["NVDA"], "unreachable", T0 + MIN).alerts == ()
    back = second.on_quotes([q("NVDA", 99, 2)], T0 + 2 * MIN).alerts
    assert [(a.kind, a.key) for a in back] == [
        (AlertKind.RECOVERED, f"recovered:c:{T0.isoformat()}")
    ]


def test_upsert_with_new_rule_resets_state() -> None:
    e = engine_with(("NVDA", "drop 10%"))
    e.on_quotes([q("NVDA", 85, 0)], T0)
    e.upsert_watch(Watch(1, "c", "NVDA", "drop 20%", T0))
    assert e.state(1, "NVDA") is None
    assert kinds(e, [q("NVDA", 79, 1)], 1) == ["NVDA:firing"]


def test_unparseable_rule_is_reported_not_raised() -> None:
    e = engine_with(("NVDA", "dorp 10%"))
    assert 1 in e.rejected
    assert "dorp" in e.rejected[1]
    assert e.symbols() == frozenset()


def test_mark_nodata_ignores_unwatched_symbols() -> None:
    e = engine_with(("NVDA", "drop 10%"))
    assert e.mark_nodata(["XYZ"], "unreachable", T0) == e.mark_nodata([], "x", T0)


def test_resolved_notice_per_channel() -> None:
    e = Engine()
    e.load([Watch(1, "a", "NVDA", "drop 10%", T0), Watch(2, "b", "NVDA", "drop 10%", T0)], [])
    e.set_resolved_notices("b", True)
    e.on_quotes([q("NVDA", 85, 0)], T0)
    ev = e.on_quotes([q("NVDA", 99, 1)], T0 + MIN)
    assert [(a.channel, a.kind) for a in ev.alerts] == [("b", AlertKind.RESOLVED)]


def test_build_volume_profile_from_bars() -> None:
    ny = ZoneInfo("America/New_York")
    bars = []
    for day, scale in ((20, 1.0), (21, 3.0), (22, 2.0)):
        opened = datetime(2025, 1, day, 9, 30, tzinfo=ny)
        bars.append((opened - timedelta(minutes=30), 9e9))  # premarket: ignored
        for k in range(3):
            bars.append((opened + k * 5 * MIN, scale * (k + 1) * 1e6))
    profile = build_volume_profile(bars, tz="America/New_York", bucket_minutes=5, sessions=2)
    assert profile is not None
    # Last two sessions (scale 3 and 2): cumulative 1,3,6 M times the average scale 2.5.
    assert profile.cumulative == pytest.approx((2.5e6, 7.5e6, 15e6))
    assert profile.expected(datetime(2025, 1, 23, 9, 40, tzinfo=ny)) == pytest.approx(7.5e6)
    assert build_volume_profile([], tz="America/New_York") is None
