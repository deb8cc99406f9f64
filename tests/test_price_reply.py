"""`/price` tells what the bot knows: the quote, that data is down (since when), or nothing yet."""

from __future__ import annotations

from datetime import timedelta

from alerts.commands import CommandContext, CommandRouter
from alerts.engine import Engine
from alerts.models import MarketSession, Quote
from alerts.ports import ManualClock
from bot.pipeline import Pipeline
from bot.store import SqlStore

CTX = CommandContext(channel="slack:C1", user="U1", platform="slack")
UNREACHABLE = {"NVDA": "nodata: Yahoo unreachable: ConnectError (retry in 4 s)"}


def _bot(store: SqlStore, clock: ManualClock) -> tuple[Pipeline, CommandRouter]:
    pipeline = Pipeline(store, Engine(), [], clock)
    router = CommandRouter(store, clock, market=pipeline, on_change=pipeline.sync_watches)
    return pipeline, router


def test_watched_symbol_with_data_down_says_since_when_and_suggests_no_watch(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    pipeline, router = _bot(sqlite_store, clock)
    router.handle("/watch NVDA", CTX)
    pipeline.ingest_quotes([], UNREACHABLE)  # 04:00 EST: the first failed round
    clock.advance(timedelta(minutes=5))
    pipeline.ingest_quotes([], {"NVDA": "nodata: backing off 8 s after errors"})
    reply = router.handle("/price NVDA", CTX)
    assert "unavailable since 2025-01-27 04:00 EST" in reply.text
    assert "Yahoo unreachable" in reply.text  # why it started, not the later backoff
    assert "/watch" not in reply.text
    assert "No quote" not in reply.text


def test_unwatched_symbol_with_data_down_may_suggest_watching(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    pipeline, router = _bot(sqlite_store, clock)
    pipeline.ingest_quotes([], UNREACHABLE)
    reply = router.handle("/price NVDA", CTX)
    assert "unavailable since" in reply.text
    assert "`/watch NVDA`" in reply.text


def test_last_quote_is_shown_with_the_outage(sqlite_store: SqlStore, clock: ManualClock) -> None:
    pipeline, router = _bot(sqlite_store, clock)
    router.handle("/watch NVDA", CTX)
    quote = Quote("NVDA", 124.1, clock.now(), MarketSession.PRE, previous_close=142.62)
    pipeline.ingest_quotes([quote])
    clock.advance(timedelta(minutes=3))
    pipeline.ingest_quotes([], UNREACHABLE)
    reply = router.handle("/price NVDA", CTX)
    assert reply.text.startswith("*NVDA* 124.10")
    assert "unavailable since 2025-01-27 04:03 EST" in reply.text
    assert "last price seen" in reply.text


def test_data_back_clears_the_outage(sqlite_store: SqlStore, clock: ManualClock) -> None:
    pipeline, router = _bot(sqlite_store, clock)
    router.handle("/watch NVDA", CTX)
    pipeline.ingest_quotes([], UNREACHABLE)
    clock.advance(timedelta(minutes=1))
    pipeline.ingest_quotes([Quote("NVDA", 125.0, clock.now(), MarketSession.PRE, 142.62)])
    reply = router.handle("/price NVDA", CTX)
    assert "unavailable" not in reply.text
    assert "125.00" in reply.text


def test_watched_through_a_basket_counts_as_watched(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    _, router = _bot(sqlite_store, clock)
    router.handle("/basket create chips NVDA AMD", CTX)
    router.handle("/watch basket:chips drop 5%", CTX)
    reply = router.handle("/price AMD", CTX)
    assert "No quote for *AMD* yet" in reply.text
    assert "this channel watches it" in reply.text
    assert "/watch" not in reply.text
    unwatched = router.handle("/price TSLA", CTX)
    assert "`/watch TSLA`" in unwatched.text
