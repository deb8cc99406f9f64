"""Attribution tables: which headlines explain a move, in which order, and when none does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.attribution import (
    NO_CATALYST_NOTE,
    Basis,
    attribute,
    find_theme,
    is_broad_move,
    is_filler,
    relative_time,
)
from alerts.compose import compose_message
from alerts.models import Alert, AlertKind, NewsItem, Severity

# Monday 2025-01-27 04:05 ET, the DeepSeek premarket; Friday's close was 21:00 UTC.
START = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)
FRIDAY_CLOSE = datetime(2025, 1, 24, 21, 0, tzinfo=UTC)
NOW = START + timedelta(minutes=10)
NAMES = ("NVIDIA", "Broadcom", "Micron", "Taiwan Semiconductor", "Taiwan", "Semiconductor")


def item(title: str, at: datetime, *symbols: str, key: str | None = None) -> NewsItem:
    return NewsItem(key=key or title, title=title, published=at, symbols=symbols, source="x")


AI_DOWN = {"NVDA": -13.0, "AVGO": -12.0, "MU": -9.0, "TSM": -10.0}
DEEPSEEK_NEWS = [
    item(
        "Nvidia falls as DeepSeek's cheap model rattles AI trade",
        START - timedelta(hours=5),
        "NVDA",
    ),
    item("Broadcom, Micron slide on DeepSeek fears", START - timedelta(hours=2), "AVGO", "MU"),
    item(
        "TSMC drops in Taipei as DeepSeek questions AI spending", START - timedelta(hours=1), "TSM"
    ),
    item("DeepSeek R1 tops the App Store", START - timedelta(hours=14)),
]
FILLER = [
    item("3 reasons to buy Nvidia stock before earnings", START - timedelta(minutes=20), "NVDA"),
    item("Is Nvidia a buy right now?", START - timedelta(minutes=15), "NVDA"),
    item("Nvidia stock price prediction for 2030", START - timedelta(minutes=10), "NVDA"),
]
BACKGROUND = [
    item("Starbucks names new menu chief", START - timedelta(hours=6), "SBUX"),
    item("Oil steady ahead of OPEC meeting", START - timedelta(hours=3)),
    item("Boeing deliveries rise in December", START - timedelta(hours=4), "BA"),
]


def titles(result: object) -> list[str]:
    return [c.item.title for c in result.catalysts]


def test_the_story_about_the_symbol_comes_first_and_filler_never_shows() -> None:
    result = attribute(
        {"NVDA": -13.0},
        [DEEPSEEK_NEWS[0], *FILLER, *BACKGROUND],
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=False,
    )
    # The filler is newer (newest-first would have shown all three of it); it never shows.
    assert titles(result) == [DEEPSEEK_NEWS[0].title]
    assert result.catalysts[0].basis is Basis.SYMBOL
    assert result.catalysts[0].when == "5h before"
    assert result.note is None


def test_without_matching_news_the_alert_says_so() -> None:
    result = attribute(
        {"NVDA": -13.0},
        [*FILLER, *BACKGROUND],
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=False,
    )
    assert result.catalysts == ()
    assert result.note == NO_CATALYST_NOTE


def test_a_group_names_its_theme_and_carries_symbol_then_theme_stories() -> None:
    result = attribute(
        AI_DOWN,
        [*DEEPSEEK_NEWS, *FILLER, *BACKGROUND],
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=True,
        exclude_terms=NAMES,
    )
    assert result.theme == "DeepSeek"
    assert len(result.catalysts) == 3
    assert [c.basis for c in result.catalysts][:1] == [Basis.SYMBOL]
    # The theme story (tagged with no mover) gets a place of its own.
    assert "DeepSeek R1 tops the App Store" in titles(result)
    assert not any(is_filler(t) for t in titles(result))


def test_noise_has_no_theme() -> None:
    noise = [
        item("Nvidia unveils new gaming card", START - timedelta(hours=3), "NVDA"),
        item("Broadcom completes VMware integration", START - timedelta(hours=2), "AVGO"),
        item("Micron opens plant in Idaho", START - timedelta(hours=4), "MU"),
        *BACKGROUND,
    ]
    assert find_theme(AI_DOWN, noise, exclude_terms=NAMES) is None
    result = attribute(
        AI_DOWN,
        noise,
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=True,
        exclude_terms=NAMES,
    )
    assert result.theme is None
    assert result.catalysts == ()  # none of it speaks of a fall: nothing is shown as a cause


def test_weekend_news_is_attached_on_monday_and_last_week_is_not() -> None:
    saturday = item(
        "Nvidia slides after weekend export curbs", datetime(2025, 1, 25, 15, tzinfo=UTC), "NVDA"
    )
    thursday = item(
        "Nvidia falls on Thursday profit taking", datetime(2025, 1, 23, 18, tzinfo=UTC), "NVDA"
    )
    result = attribute(
        {"NVDA": -6.0},
        [saturday, thursday],
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=False,
    )
    assert titles(result) == [saturday.title]
    assert result.catalysts[0].when == "42h before"


def test_market_wide_stories_attach_to_a_broad_move_only() -> None:
    futures = item(
        "Stock futures tumble as tech selloff deepens", START - timedelta(minutes=30), "NQ=F"
    )
    untagged = item("Global markets slump on AI fears", START - timedelta(hours=1))
    news = [futures, untagged]
    narrow = attribute(
        {"NVDA": -6.0}, news, since=FRIDAY_CLOSE, move_start=START, now=NOW, broad=False
    )
    broad = attribute(
        {"NVDA": -6.0}, news, since=FRIDAY_CLOSE, move_start=START, now=NOW, broad=True
    )
    assert narrow.catalysts == ()
    assert {c.basis for c in broad.catalysts} == {Basis.MARKET}
    assert set(titles(broad)) == {futures.title, untagged.title}


def test_a_story_about_a_rise_does_not_explain_a_fall() -> None:
    up = item("Nvidia jumps on new chip orders", START - timedelta(hours=1), "NVDA")
    assert (
        attribute(
            {"NVDA": -8.0}, [up], since=FRIDAY_CLOSE, move_start=START, now=NOW, broad=False
        ).catalysts
        == ()
    )
    assert titles(
        attribute({"NVDA": 8.0}, [up], since=FRIDAY_CLOSE, move_start=START, now=NOW, broad=False)
    ) == [up.title]


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(hours=-2), "2h before"),
        (timedelta(minutes=3), "3 min after"),
        (timedelta(seconds=10), "at the start"),
        (timedelta(minutes=-45), "45 min before"),
        (timedelta(days=-2, hours=-3), "2d before"),
    ],
)
def test_relative_time(offset: timedelta, text: str) -> None:
    assert relative_time(START + offset, START) == text


def test_broad_means_a_basket_most_of_the_list_or_the_futures() -> None:
    watched = ["NVDA", "AAPL", "MSFT", "AMZN"]
    assert is_broad_move({"NVDA": -5}, watched=watched, basket=True, futures_moves={})
    assert is_broad_move(
        {"NVDA": -5, "AAPL": -5, "MSFT": -5}, watched=watched, basket=False, futures_moves={}
    )
    assert is_broad_move({"NVDA": -5}, watched=watched, basket=False, futures_moves={"NQ=F": -4.3})
    assert not is_broad_move(
        {"NVDA": -5}, watched=watched, basket=False, futures_moves={"NQ=F": -0.2}
    )


def _alert(symbol: str, pct: float) -> Alert:
    return Alert(
        key=f"1:{symbol}:firing",
        channel="console:default",
        kind=AlertKind.FIRING,
        symbol=symbol,
        at=START,
        severity=Severity.CRITICAL,
        watch_id=1,
        rule_text="drop 5%",
        change_pct=pct,
    )


def test_the_message_names_the_theme_and_shows_when_each_story_appeared() -> None:
    alerts = [_alert(s, pct) for s, pct in AI_DOWN.items()]
    attribution = attribute(
        AI_DOWN,
        [*DEEPSEEK_NEWS, *BACKGROUND],
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=True,
        exclude_terms=NAMES,
    )
    message = compose_message(
        "console:default", alerts, now=NOW, attribution=attribution, baskets={"ai": tuple(AI_DOWN)}
    )
    assert message.title.startswith("AI selloff — DeepSeek:")
    assert message.headline_times[message.headlines[0].key].endswith("before")
    assert message.news_note is None
    alone = compose_message(
        "console:default",
        alerts[:1],
        now=NOW,
        attribution=attribute(
            {"NVDA": -13.0}, BACKGROUND, since=FRIDAY_CLOSE, move_start=START, now=NOW, broad=False
        ),
    )
    assert alone.headlines == ()
    assert alone.news_note == NO_CATALYST_NOTE


def test_a_name_falling_alone_later_still_gets_the_days_theme() -> None:
    # META falls a minute after the others: its own group, but the theme is the day's.
    theme_story = item("DeepSeek R1 rattles Silicon Valley", START - timedelta(hours=3))
    news = [*DEEPSEEK_NEWS[:3], theme_story, *BACKGROUND]
    alone = attribute(
        {"META": -5.0},
        news,
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=False,
        exclude_terms=NAMES,
    )
    assert alone.catalysts == ()  # nothing names Meta, and one name has no theme
    with_day = attribute(
        {"META": -5.0},
        news,
        since=FRIDAY_CLOSE,
        move_start=START,
        now=NOW,
        broad=False,
        exclude_terms=NAMES,
        theme_moves=AI_DOWN,
    )
    assert with_day.theme == "DeepSeek"
    assert theme_story.title in titles(with_day)
    assert {c.basis for c in with_day.catalysts} == {Basis.THEME}
