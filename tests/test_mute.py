"""Mutes: scope matching, time bounds, and the summary of what a channel missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.baskets import BUILTIN_BASKETS
from alerts.engine import Engine
from alerts.models import Alert, AlertKind, MarketSession, Mute, Quote, Severity
from alerts.mute import is_muted, summarize_missed
from alerts.ports import ManualClock
from bot.pipeline import Pipeline
from bot.store import SqlStore

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def alert(symbol: str, channel: str = "c", **kw: object) -> Alert:
    return Alert(
        key=f"{channel}:{symbol}:{kw.get('n', 0)}",
        channel=channel,
        kind=AlertKind(str(kw.get("kind", "firing"))),
        symbol=symbol,
        at=T0,
        severity=Severity(str(kw.get("severity", "warning"))),
        change_pct=float(str(kw.get("pct", -10.0))),
    )


def mute(scope: str, channel: str = "c", minutes: int = 30) -> Mute:
    return Mute(channel, scope, T0 + minutes * MIN, T0)


@pytest.mark.parametrize(
    ("scope", "symbol", "channel", "muted"),
    [
        ("NVDA", "NVDA", "c", True),
        ("nvda", "NVDA", "c", True),
        ("NVDA", "AMD", "c", False),
        ("NVDA", "NVDA", "other", False),
        ("all", "AMD", "c", True),
        ("ALL", "*", "c", True),
        ("basket:ai", "AMD", "c", True),
        ("basket:AI", "basket:ai", "c", True),
        ("basket:ai", "F", "c", False),
        ("basket:nope", "AMD", "c", False),
        ("NVDA", "*", "c", False),
    ],
)
def test_scope(scope: str, symbol: str, channel: str, muted: bool) -> None:
    assert is_muted(alert(symbol, channel), [mute(scope)], T0 + MIN, BUILTIN_BASKETS) is muted


def test_time_bounds() -> None:
    m = [mute("NVDA", minutes=30)]
    assert is_muted(alert("NVDA"), m, T0, None)
    assert is_muted(alert("NVDA"), m, T0 + 29 * MIN, None)
    assert not is_muted(alert("NVDA"), m, T0 + 30 * MIN, None)
    assert not is_muted(alert("NVDA"), m, T0 - MIN, None)


def test_channel_basket_definition_wins() -> None:
    own = {"ai": ["F"]}
    assert is_muted(alert("F"), [mute("basket:ai")], T0, own)
    assert not is_muted(alert("NVDA"), [mute("basket:ai")], T0, own)


def test_summary() -> None:
    missed = [
        alert("AMD", pct=-6.0, n=1),
        alert("NVDA", pct=-10.5, n=2),
        alert("NVDA", kind="escalated", severity="critical", pct=-15.5, n=3),
    ]
    msg = summarize_missed("c", missed, mute("basket:ai", minutes=45), T0 + 45 * MIN)
    assert msg.title == "While basket:ai was muted: 3 alerts on 2 names"
    assert [(a.symbol, a.kind) for a in msg.alerts] == [
        ("NVDA", AlertKind.ESCALATED),
        ("AMD", AlertKind.FIRING),
    ]
    assert msg.severity is Severity.CRITICAL
    assert msg.footer == "Muted 09:00-09:45 UTC; the alerts were tracked, not sent."
    assert msg.extra["kind"] == "mute_summary"


def test_summary_times_are_in_the_display_zone() -> None:
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    winter = summarize_missed("c", [alert("AMD")], mute("AMD", minutes=45), T0 + 45 * MIN, new_york)
    assert winter.footer == "Muted 04:00-04:45 EST; the alerts were tracked, not sent."
    # 2025-03-09: New York's clocks go from 02:00 EST to 03:00 EDT.
    start = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 01:30 EST
    spring = Mute(channel="c", scope="AMD", until=start + 60 * MIN, created_at=start)
    across = summarize_missed("c", [alert("AMD")], spring, start + 60 * MIN, new_york)
    assert across.footer == "Muted 01:30 EST-03:30 EDT; the alerts were tracked, not sent."


@given(
    st.lists(
        st.tuples(st.integers(0, 90), st.sampled_from(["NVDA", "AMD", "F", "basket:ai"])),
        max_size=40,
    ),
    st.sampled_from(["NVDA", "all", "basket:ai", "F"]),
    st.integers(1, 60),
)
def test_property_muted_never_sent_and_summarised_after(
    events: list[tuple[int, str]], scope: str, minutes: int
) -> None:
    m = mute(scope, minutes=minutes)
    sent: list[Alert] = []
    held: list[Alert] = []
    for i, (offset, symbol) in enumerate(sorted(events)):
        now = T0 + offset * MIN
        a = alert(symbol, n=i)
        if is_muted(a, [m], now, BUILTIN_BASKETS):
            held.append(a)
        else:
            sent.append(a)
            assert not (T0 <= now < m.until and _covers(scope, symbol))
    if held:
        summary = summarize_missed("c", held, m, m.until)
        assert {a.symbol for a in summary.alerts} == {a.symbol for a in held}
        assert str(len(held)) in summary.title
    assert len(sent) + len(held) == len(events)


def _covers(scope: str, symbol: str) -> bool:
    if scope == "all":
        return True
    if scope == "basket:ai":
        return symbol == "basket:ai" or symbol in BUILTIN_BASKETS["ai"]
    return scope == symbol


async def test_a_posted_summary_shows_the_mute_in_the_display_zone(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    # Through the pipeline (not just the composer): the summary is composed when the mute
    # ends, in the zone the channel's alerts are shown in, not in UTC.
    from tests.test_pipeline import RecordingPlatform

    platform = RecordingPlatform()
    pipeline = Pipeline(
        sqlite_store,
        Engine(),
        [platform],
        clock,
        context_symbols=(),
        timezone="America/Los_Angeles",
    )
    start = clock.now()  # 09:00 UTC: 01:00 in Los Angeles
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=start)
    sqlite_store.add_mute(Mute("console:default", "NVDA", start + 45 * MIN, start))
    pipeline.sync_watches()
    pipeline.ingest_quotes([Quote("NVDA", 126.0, start, MarketSession.PRE, previous_close=142.62)])
    clock.advance(46 * MIN)
    assert await pipeline.end_expired_mutes() == 1
    [(_, summary)] = platform.posts
    assert summary.footer == "Muted 01:00-01:45 PST; the alerts were tracked, not sent."
