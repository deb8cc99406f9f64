"""How replies read: times in the display zone, counts that agree, near-miss commands."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from alerts.commands import CommandContext, CommandRouter
from alerts.models import Alert, AlertKind, MarketSession, NewsItem, Quote
from alerts.ports import ManualClock
from alerts.wording import local_time, plural
from bot.store import SqlStore

CTX = CommandContext(channel="slack:C1", user="U1", platform="slack")
WINTER = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # 04:00 EST
SUMMER = datetime(2025, 7, 14, 8, 0, tzinfo=UTC)  # 04:00 EDT


class Market:
    def __init__(self, quotes: Sequence[Quote] = (), news: Sequence[NewsItem] = ()) -> None:
        self.quotes = {q.symbol: q for q in quotes}
        self.news = list(news)

    def latest_quote(self, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        return [n for n in self.news if set(symbols) & set(n.symbols)][:limit]


def _router(
    store: SqlStore, at: datetime, zone: str, market: Market | None = None
) -> CommandRouter:
    return CommandRouter(store, ManualClock(at), market=market, timezone=zone)


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (1, "message", "1 message"),
        (0, "message", "0 messages"),
        (2, "watch", "2 watches"),
        (1, "watch", "1 watch"),
        (3, "story", "3 stories"),
        (2, "day", "2 days"),
        (2, "index", "2 indexes"),
    ],
)
def test_plural_agrees_with_the_count(count: int, noun: str, expected: str) -> None:
    assert plural(count, noun) == expected


def test_local_time_names_the_zone_of_that_date() -> None:
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    assert local_time(WINTER, new_york) == "2025-01-27 04:00 EST"
    assert local_time(SUMMER, new_york) == "2025-07-14 04:00 EDT"
    assert local_time(WINTER, ZoneInfo("Europe/Berlin")) == "2025-01-27 10:00 CET"


@pytest.mark.parametrize(
    ("zone", "at", "shown"),
    [
        ("America/New_York", WINTER, "2025-01-27 04:00 EST"),
        ("America/New_York", SUMMER, "2025-07-14 04:00 EDT"),
        ("Europe/Berlin", SUMMER, "2025-07-14 10:00 CEST"),
    ],
)
def test_price_and_news_times_are_in_the_display_zone(
    sqlite_store: SqlStore, zone: str, at: datetime, shown: str
) -> None:
    quote = Quote("NVDA", 124.1, at, MarketSession.PRE, previous_close=142.62, currency="USD")
    news = NewsItem("n1", "DeepSeek R1 rattles chip stocks", at, symbols=("NVDA",))
    router = _router(sqlite_store, at, zone, Market([quote], [news]))
    price = router.handle("/price NVDA", CTX)
    headlines = router.handle("/news NVDA", CTX)
    assert shown in price.text
    assert shown in headlines.text
    assert "UTC" not in price.text + headlines.text


def test_watchlist_mutes_end_in_the_display_zone(sqlite_store: SqlStore) -> None:
    router = _router(sqlite_store, SUMMER, "America/New_York")
    router.handle("/watch NVDA", CTX)
    router.handle("/mute NVDA 2h", CTX)
    listing = router.handle("/watchlist", CTX).text
    assert "NVDA until 2025-07-14 06:00 EDT" in listing
    assert "UTC" not in listing


def test_alerts_list_is_in_the_display_zone(sqlite_store: SqlStore) -> None:
    router = _router(sqlite_store, WINTER, "Europe/Berlin")
    alert = Alert(
        key="k1",
        channel=CTX.channel,
        kind=AlertKind.FIRING,
        symbol="NVDA",
        at=WINTER + timedelta(minutes=1),
        rule_text="drop 10%",
        price=124.1,
        change_pct=-13.0,
    )
    sqlite_store.record_evaluation((), [alert], now=WINTER)
    listing = router.handle("/alerts", CTX).text
    assert "2025-01-27 10:01 CET firing *NVDA*" in listing
    assert "UTC" not in listing


def test_unwatch_all_counts_agree(sqlite_store: SqlStore) -> None:
    router = _router(sqlite_store, WINTER, "America/New_York")
    router.handle("/watch NVDA", CTX)
    one = router.handle("/unwatch all", CTX).text
    router.handle("/watch NVDA", CTX)
    router.handle("/watch AMD", CTX)
    two = router.handle("/unwatch all", CTX).text
    assert one == "Removed this channel's 1 watch."
    assert two == "Removed this channel's 2 watches."


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("/wacth NVDA", "`/watch NVDA`"),
        ("/watchlsit", "`/watchlist`"),
        ("/prise NVDA", "`/price NVDA`"),
        ("unwach NVDA drop 5%", "`/unwatch NVDA drop 5%`"),
        ("/halp", "`/help`"),
    ],
)
def test_near_miss_command_suggests_the_command(
    sqlite_store: SqlStore, typed: str, suggestion: str
) -> None:
    reply = _router(sqlite_store, WINTER, "America/New_York").handle(typed, CTX)
    assert not reply.ok
    assert f"Did you mean {suggestion}?" in reply.text
    assert sqlite_store.list_watches() == []  # a suggestion never runs the command


def test_far_miss_command_suggests_nothing(sqlite_store: SqlStore) -> None:
    reply = _router(sqlite_store, WINTER, "America/New_York").handle("/frobnicate NVDA", CTX)
    assert "Unknown command `/frobnicate`" in reply.text
    assert "Did you mean" not in reply.text


def test_help_for_a_near_miss_suggests_the_command(sqlite_store: SqlStore) -> None:
    reply = _router(sqlite_store, WINTER, "America/New_York").handle("/help wacth", CTX)
    assert not reply.ok
    assert "Did you mean `/help watch`?" in reply.text


# Each platform's context as its adapter builds it: what it offers decides what is suggested.
def _platform_contexts() -> list[tuple[str, CommandContext]]:
    from bot.discord.app import FEATURES as DISCORD_FEATURES
    from bot.slack.commands import FEATURES as SLACK_FEATURES

    return [
        ("slack", CommandContext("slack:C1", "U1", "slack", features=SLACK_FEATURES)),
        ("discord", CommandContext("discord:1", "u1", "discord", features=DISCORD_FEATURES)),
        ("console", CommandContext("console:default", "console", "console")),
    ]


@pytest.mark.parametrize(
    ("platform", "ctx"), _platform_contexts(), ids=[p for p, _ in _platform_contexts()]
)
@pytest.mark.parametrize("typed", ["/pingrol @traders", "/pinrole off", "/help pingrol"])
def test_near_miss_suggests_only_what_the_platform_offers(
    sqlite_store: SqlStore, platform: str, ctx: CommandContext, typed: str
) -> None:
    reply = _router(sqlite_store, WINTER, "America/New_York").handle(typed, ctx)
    assert not reply.ok
    if platform == "discord":
        assert "Did you mean `/" in reply.text
        assert "pingrole" in reply.text
    else:
        # Slack and the console have no role pings: suggesting /pingrole sends the user to a
        # command that would only answer "not available here".
        assert "pingrole" not in reply.text
        assert "Did you mean" not in reply.text


@pytest.mark.parametrize(
    ("platform", "ctx"), _platform_contexts(), ids=[p for p, _ in _platform_contexts()]
)
def test_help_lists_only_what_the_platform_offers(
    sqlite_store: SqlStore, platform: str, ctx: CommandContext
) -> None:
    router = _router(sqlite_store, WINTER, "America/New_York")
    listed = router.handle("/help", ctx).text
    assert "`/watch " in listed
    assert ("/pingrole" in listed) is (platform == "discord")
    one = router.handle("/help pingrole", ctx)
    assert one.ok is (platform == "discord")
    if platform != "discord":
        assert "not available here" in one.text


async def test_console_alerts_show_the_display_zone(capsys: pytest.CaptureFixture[str]) -> None:
    from alerts.models import AlertMessage
    from bot.runner import build_platforms
    from bot.settings import Settings

    [console] = build_platforms(Settings.model_validate({"timezone": "Europe/Berlin"}))
    message = AlertMessage("console:default", "NVDA -13.0% premarket", (), at=WINTER)
    await console.send(message, idempotency_key="k")
    printed = capsys.readouterr().out
    assert "Mon 2025-01-27 10:00 CET" in printed
    assert "EST" not in printed
