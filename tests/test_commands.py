"""The one command layer, read like a chat: good input acts, bad input gets one friendly line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.commands import ROLE_PINGS, CommandContext, CommandRouter
from alerts.models import MarketSession, NewsItem, Quote
from alerts.ports import ManualClock
from alerts.symbols import SymbolError, normalize_symbol
from bot.store import SqlStore
from tests.conftest import DEEPSEEK_PREMARKET

CTX = CommandContext(channel="slack:C1", user="U1", platform="slack")
READER = CommandContext(channel="slack:C1", user="U2", platform="discord", can_manage=False)


class Market:
    """The bot's market view as commands see it: the latest quote per symbol, some headlines."""

    def __init__(self, quotes: Sequence[Quote] = (), news: Sequence[NewsItem] = ()) -> None:
        self.quotes = {q.symbol: q for q in quotes}
        self.news = list(news)

    def latest_quote(self, symbol: str) -> Quote | None:
        return self.quotes.get(symbol)

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        return [n for n in self.news if set(symbols) & set(n.symbols)][:limit]


@pytest.fixture
def router(sqlite_store: SqlStore, clock: ManualClock) -> CommandRouter:
    quote = Quote(
        "NVDA", 124.1, clock.now(), MarketSession.PRE, previous_close=142.62, currency="USD"
    )
    news = NewsItem("n1", "DeepSeek R1 rattles chip stocks", clock.now(), symbols=("NVDA",))
    return CommandRouter(sqlite_store, clock, market=Market([quote], [news]))


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("nvda", "NVDA"),
        ("$nvda", "NVDA"),
        ("NQ=F", "NQ=F"),
        ("eurusd=x", "EURUSD=X"),
        ("asml.as", "ASML.AS"),
        ("^vix", "^VIX"),
        ("brk-b", "BRK-B"),
        ("BTC-USD", "BTC-USD"),
        ("7203.T", "7203.T"),
    ],
)
def test_symbols_are_normalised_to_yahoo_forms(typed: str, expected: str) -> None:
    assert normalize_symbol(typed) == expected


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("BRK.B", "BRK-B"),
        ("ASML.XX", "exchange suffix"),
        ("", "Give a symbol"),
        ("N V", "not a symbol"),
        ("A" * 40, "too long"),
        ("<@U123>", "not a symbol"),
        ("NVDA\x00", "not a symbol"),
        ("日本", "not a symbol"),
    ],
)
def test_bad_symbols_get_a_reason_and_an_example(typed: str, hint: str) -> None:
    with pytest.raises(SymbolError, match=hint):
        normalize_symbol(typed)


def test_watch_defaults_to_a_ten_percent_drop_and_lists(router: CommandRouter) -> None:
    reply = router.handle("/watch nvda", CTX)
    assert reply.ok
    assert reply.changed
    assert "NVDA" in reply.text
    assert "drop 10%" in reply.text
    listing = router.handle("/watchlist", CTX)
    assert "NVDA" in listing.text
    assert "drop 10%" in listing.text


def test_watch_with_rule_note_and_duplicate(router: CommandRouter) -> None:
    first = router.handle("/watch AMD drop 5% -- earnings Tuesday", CTX)
    again = router.handle("watch amd DROP 5", CTX)
    assert first.ok
    assert first.changed
    assert again.ok
    assert not again.changed
    assert "Already" in again.text
    assert "earnings Tuesday" in router.handle("/watchlist", CTX).text


def test_watch_basket_and_news(router: CommandRouter) -> None:
    assert router.handle("/watch basket:ai drop 5%", CTX).ok
    assert router.handle("/watch news deepseek", CTX).ok
    missing = router.handle("/watch basket:nope drop 5%", CTX)
    assert not missing.ok
    assert "/basket create" in missing.text


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("/watch", "Say what to watch"),
        ("/watch NVDA drop ten", "ten"),
        ("/watch BRK.B", "BRK-B"),
        ("/frobnicate NVDA", "Unknown command"),
        ("", "Empty command"),
        ("   ", "Empty command"),
        ("/watch " + "N" * 600, "too long"),
        ("/watch NV\x00DA", "characters"),
        ("/watch \x1b[31mNVDA", "characters"),
        ("/mute NVDA forever", "duration"),
        ("/alerts lots", "Usage"),
        ("/basket create x!y NVDA", "Basket names"),
        ("/unwatch TSLA", "was not watching"),
    ],
)
def test_bad_input_gets_one_friendly_line_and_changes_nothing(
    router: CommandRouter, sqlite_store: SqlStore, typed: str, fragment: str
) -> None:
    reply = router.handle(typed, CTX)
    assert not reply.ok
    assert fragment in reply.text
    assert "\n" not in reply.text
    assert sqlite_store.list_watches() == []


@pytest.fixture(scope="module")
def shared_router(tmp_path_factory: pytest.TempPathFactory) -> CommandRouter:
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    store.upgrade()
    return CommandRouter(store, ManualClock(DEEPSEEK_PREMARKET), market=Market())


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda name, rest: f"/{name} {rest}",
            st.sampled_from([spec.name for spec in CommandRouter.command_names()]),
            st.text(max_size=80),
        ),
    )
)
def test_no_input_crashes_the_router(shared_router: CommandRouter, text: str) -> None:
    reply = shared_router.handle(text, CTX)
    assert reply.text.strip()
    if not reply.ok:
        assert "\n" not in reply.text


def test_readers_may_read_but_not_change(router: CommandRouter) -> None:
    denied = router.handle("/watch NVDA", READER)
    assert not denied.ok
    assert "Manage Channels" in denied.text
    assert router.handle("/watchlist", READER).ok
    assert router.handle("/basket list", READER).ok
    assert not router.handle("/basket create ai2 NVDA", READER).ok
    assert router.handle("/digest", READER).ok  # showing the digest only reads
    assert not router.handle("/digest off", READER).ok


def test_unwatch_one_rule_a_symbol_or_everything(
    router: CommandRouter, sqlite_store: SqlStore
) -> None:
    for line in ("/watch NVDA", "/watch NVDA above 150", "/watch AMD drop 5%"):
        assert router.handle(line, CTX).ok
    assert router.handle("/unwatch NVDA above 150", CTX).ok
    assert [w.rule_text for w in sqlite_store.list_watches("slack:C1")] == ["drop 10%", "drop 5%"]
    assert router.handle("/unwatch NVDA", CTX).ok
    assert router.handle("/unwatch all", CTX).ok
    assert sqlite_store.list_watches() == []


def test_price_digest_and_news_read_the_market_view(router: CommandRouter) -> None:
    price = router.handle("/price nvda", CTX)
    assert price.ok
    assert "124.10" in price.text
    assert "-12.99%" in price.text
    assert "pre" in price.text
    assert not router.handle("/price AMD", CTX).ok
    router.handle("/watch NVDA", CTX)
    assert "NVDA: 124.10 (-12.99%, pre)" in router.handle("/digest", CTX).text
    assert "DeepSeek R1" in router.handle("/news", CTX).text


def test_mute_and_unmute(router: CommandRouter, sqlite_store: SqlStore, clock: ManualClock) -> None:
    assert router.handle("/mute NVDA 2h", CTX).changed
    [mute] = sqlite_store.active_mutes("slack:C1", clock.now())
    assert mute.until - clock.now() == timedelta(hours=2)
    assert router.handle("/unmute NVDA", CTX).ok
    assert not router.handle("/unmute NVDA", CTX).ok


def test_baskets(router: CommandRouter) -> None:
    created = router.handle("/basket create Chips nvda amd AVGO nvda", CTX)
    assert created.ok
    assert "NVDA AMD AVGO" in created.text
    assert "basket:chips" in router.handle("/basket list", CTX).text
    assert "basket:ai" in router.handle("/basket list", CTX).text  # the built-in example
    assert router.handle("/basket delete chips", CTX).ok
    assert not router.handle("/basket delete chips", CTX).ok


def test_digest_schedule_is_stored(router: CommandRouter, sqlite_store: SqlStore) -> None:
    assert router.handle("/digest on 7:45", CTX).ok
    assert sqlite_store.channel_settings("slack:C1").digest == time(7, 45)
    assert router.handle("/digest off", CTX).ok
    assert sqlite_store.channel_settings("slack:C1").digest is None
    assert not router.handle("/digest on 25:00", CTX).ok


def test_help_lists_every_command_and_explains_one(router: CommandRouter) -> None:
    text = router.handle("/help", CTX).text
    for spec in CommandRouter.command_names():
        # Every command Slack offers (/pingrole needs role pings, which Slack lacks).
        assert (f"/{spec.name}" in text) is (spec.requires is None)
    assert "basket:ai" in router.handle("/help watch", CTX).text


def test_changes_are_announced_to_the_pipeline(sqlite_store: SqlStore, clock: ManualClock) -> None:
    changed: list[str] = []
    router = CommandRouter(sqlite_store, clock, on_change=changed.append)
    router.handle("/watch NVDA", CTX)
    router.handle("/watch NVDA", CTX)  # already there: nothing changed
    router.handle("/watchlist", CTX)
    assert changed == ["slack:C1"]


def test_breadth_needs_a_basket(router: CommandRouter) -> None:
    refused = router.handle("/watch NVDA breadth 5 of 8 drop 5%", CTX)
    assert not refused.ok
    assert "basket" in refused.text
    assert router.handle("/watch basket:ai breadth 5 of 8 drop 5%", CTX).ok


def test_resolved_notices_are_a_channel_setting(
    router: CommandRouter, sqlite_store: SqlStore
) -> None:
    assert router.handle("/resolved on", CTX).changed
    assert sqlite_store.channel_settings("slack:C1").resolved is True
    assert not router.handle("/resolved maybe", CTX).ok
    assert not router.handle("/resolved on", READER).ok


def test_role_pings_are_a_channel_setting_holding_the_platforms_role_id(
    router: CommandRouter, sqlite_store: SqlStore
) -> None:
    # The adapter hands over the role's id (Discord reads its own <@&id> mention,
    # bot.discord.roles); the core stores it as it came and reads no platform's syntax.
    discord_ctx = CommandContext(
        channel="discord:42", user="u", platform="discord", features=frozenset({ROLE_PINGS})
    )
    assert router.handle("/pingrole 123456789012", discord_ctx).ok
    assert sqlite_store.channel_settings("discord:42").ping_role == "123456789012"
    reply = router.handle("/pingrole 98765432", discord_ctx)
    assert "<@&" not in reply.text  # the confirmation itself must not ping the role
    assert sqlite_store.channel_settings("discord:42").ping_role == "98765432"
    assert router.handle("/pingrole off", discord_ctx).ok
    assert sqlite_store.channel_settings("discord:42").ping_role is None
    for raw in ("<@&123456789012>", "@everyone", "<@123456789012>"):
        assert not router.handle(f"/pingrole {raw}", discord_ctx).ok, raw
    assert sqlite_store.channel_settings("discord:42").ping_role is None
    assert not router.handle("/pingrole 123456789012", CTX).ok  # Slack: never pings


@pytest.mark.parametrize("text", ["/alerts ¹", "/alerts ٣", "/digest on ¹:00"])
def test_digits_that_are_not_ascii_get_a_usage_line(router: CommandRouter, text: str) -> None:
    reply = router.handle(text, CTX)
    assert not reply.ok
    assert "Usage" in reply.text or "HH:MM" in reply.text


def test_a_command_needing_a_platform_feature_is_refused_where_it_is_missing(
    router: CommandRouter, sqlite_store: SqlStore
) -> None:
    # The core asks only whether the platform offers role pings, never which platform it is.
    elsewhere = CommandContext(channel="console:default", user="u", platform="discord")
    reply = router.handle("/pingrole 123456789012", elsewhere)
    assert not reply.ok
    assert "not available" in reply.text
    assert sqlite_store.channel_settings("console:default").ping_role is None
    offered = CommandContext(
        channel="console:default", user="u", platform="console", features=frozenset({ROLE_PINGS})
    )
    assert router.handle("/pingrole 123456789012", offered).ok


def test_symbol_choices_put_the_channels_own_symbols_first(
    router: CommandRouter, sqlite_store: SqlStore
) -> None:
    # What a platform suggests as someone types a symbol (Discord's autocomplete), derived from
    # what the project knows instead of a hand-kept list.
    from alerts.baskets import BUILTIN_BASKETS
    from alerts.commands import symbol_choices
    from alerts.digest import DIGEST_INDEX_SYMBOLS

    router.handle("/watch PLTR", CTX)
    router.handle("/basket create mine COIN HOOD", CTX)
    router.handle("/watch basket:mine drop 5%", CTX)
    router.handle("/watch news deepseek", CTX)
    router.handle("/watch NVDA", CTX)
    choices = router.symbol_choices("slack:C1")
    assert choices[:4] == ["COIN", "HOOD", "NVDA", "PLTR"]  # watched, directly or in a basket
    assert len(choices) == len(set(choices))
    assert "news" not in choices
    assert not any(c.startswith("basket:") for c in choices)
    for symbol in (*BUILTIN_BASKETS["ai"], *DIGEST_INDEX_SYMBOLS):
        assert symbol in choices
    # Another channel has none of this one's watches or baskets: only what is built in.
    assert router.symbol_choices("slack:C2") == symbol_choices()
    assert "COIN" not in symbol_choices()
