"""An unknown symbol is asked about once, at the fake Yahoo, through the real base-URL rewrite.

Refused when Yahoo says it does not exist; accepted with a note when Yahoo cannot be asked;
the answer is cached either way.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yfinance as yf

from alerts.commands import CommandContext, CommandRouter
from alerts.ports import ManualClock, SymbolStatus
from bot.fakes.yahoo_server import FakeYahoo
from bot.market.symbol_check import UNKNOWN_FOR, YahooSymbolCheck
from bot.market.yahoo_session import make_session
from bot.runner import Runtime
from bot.store import SqlStore
from tests.conftest import run_settings

CTX = CommandContext(channel="slack:C1", user="U1", platform="slack")


@pytest.fixture
def yahoo(fake_yahoo: FakeYahoo) -> FakeYahoo:
    fake_yahoo.set_quote("NVDA", price=124.0, previous_close=142.62, name="NVIDIA Corporation")
    fake_yahoo.set_quote("NQ=F", price=20950.0, previous_close=21900.0, quote_type="FUTURE")
    return fake_yahoo


@pytest.fixture
def checker(yahoo: FakeYahoo, clock: ManualClock) -> Iterator[YahooSymbolCheck]:
    check = YahooSymbolCheck(clock=clock, base_url=yahoo.base_url)
    yield check
    check.close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def test_fake_answers_an_unknown_symbol_as_yahoo_does_to_yfinance(
    yahoo: FakeYahoo, caplog: pytest.LogCaptureFixture
) -> None:
    """yfinance, reading the fake, ends where it ends for real Yahoo's unknown symbol: its
    chart lookup gets "Not Found" and it returns an empty frame, logging that the symbol may
    be delisted.

    yfinance falls back to quoteSummary for the time zone only twice per process (a module
    counter), so whether that fallback's "Quote not found" shows depends on test order: the
    test asks the fake's own answer instead."""
    symbol = "XYZNOTREAL"
    session = make_session(yahoo.base_url)
    try:
        with caplog.at_level(logging.ERROR, logger="yfinance"):
            frame = yf.Ticker(symbol, session=session).history(period="5d")
        answer = session.get(
            f"{yahoo.base_url}/v10/finance/quoteSummary/{symbol}", params={"modules": "price"}
        )
    finally:
        session.close()
    assert frame.empty
    assert f"${symbol}: No data found, symbol may be delisted" in caplog.text
    assert yahoo.counts["chart"] >= 1
    assert answer.status_code == 404
    assert answer.json()["quoteSummary"]["error"]["description"] == (
        f"Quote not found for symbol: {symbol}"
    )


def test_known_unknown_and_quoted_symbols(checker: YahooSymbolCheck) -> None:
    nvda = checker.check("NVDA")
    assert nvda.status is SymbolStatus.KNOWN
    assert "NVIDIA Corporation" in nvda.detail
    assert checker.check("NQ=F").status is SymbolStatus.KNOWN
    unknown = checker.check("XYZNOTREAL")
    assert unknown.status is SymbolStatus.UNKNOWN
    assert "symbol may be delisted" in unknown.detail


def test_each_answer_is_asked_once(
    checker: YahooSymbolCheck, yahoo: FakeYahoo, clock: ManualClock
) -> None:
    for _ in range(3):
        checker.check("NVDA")
        checker.check("XYZNOTREAL")
    assert yahoo.counts["chart"] == 2
    # Yahoo may list a symbol it did not know (an IPO): the refusal is asked again a day later.
    clock.advance(UNKNOWN_FOR + timedelta(seconds=1))
    checker.check("NVDA")
    checker.check("XYZNOTREAL")
    assert yahoo.counts["chart"] == 3


@pytest.mark.parametrize("status", [500, 429])
def test_yahoo_failing_leaves_the_symbol_unchecked(
    checker: YahooSymbolCheck, yahoo: FakeYahoo, status: int
) -> None:
    yahoo.fail("/v8/finance/chart/XYZNOTREAL", status=status, times=-1)
    assert checker.check("XYZNOTREAL").status is SymbolStatus.UNCHECKED


def test_router_refuses_what_yahoo_does_not_know(
    sqlite_store: SqlStore, clock: ManualClock, checker: YahooSymbolCheck
) -> None:
    router = CommandRouter(sqlite_store, clock, symbols=checker)
    refused = router.handle("/watch XYZNOTREAL", CTX)
    assert not refused.ok
    assert "Yahoo does not know the symbol `XYZNOTREAL`" in refused.text
    basket = router.handle("/basket create ai NVDA XYZNOTREAL", CTX)
    assert not basket.ok
    assert "`XYZNOTREAL`" in basket.text
    assert sqlite_store.list_watches() == []
    assert "ai" not in sqlite_store.list_baskets(CTX.channel)
    accepted = router.handle("/watch nvda drop 5%", CTX)
    assert accepted.ok
    assert "Note" not in accepted.text
    assert [w.target for w in sqlite_store.list_watches()] == ["NVDA"]


def test_price_of_an_unknown_symbol_does_not_suggest_watching_it(
    sqlite_store: SqlStore, clock: ManualClock, checker: YahooSymbolCheck
) -> None:
    router = CommandRouter(sqlite_store, clock, symbols=checker)
    unknown = router.handle("/price XYZNOTREAL", CTX)
    known = router.handle("/price NVDA", CTX)
    assert "Yahoo does not know the symbol `XYZNOTREAL`" in unknown.text
    assert "/watch" not in unknown.text
    assert "`/watch NVDA` to follow it" in known.text  # known, just not quoted yet


def test_router_accepts_with_a_note_when_yahoo_is_unreachable(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    checker = YahooSymbolCheck(clock=clock, base_url=_closed_port_url(), timeout=2.0)
    router = CommandRouter(sqlite_store, clock, symbols=checker)
    reply = router.handle("/watch XYZNOTREAL", CTX)
    basket = router.handle("/basket create ai NVDA AMD", CTX)
    checker.close()
    assert reply.ok
    assert reply.changed
    assert "Yahoo could not be asked whether XYZNOTREAL exists (Yahoo unreachable)" in reply.text
    assert basket.ok
    assert "whether NVDA, AMD exist" in basket.text
    assert checker.requests == 1  # the outage answer is cached: the basket did not wait again
    assert [w.target for w in sqlite_store.list_watches()] == ["XYZNOTREAL"]


def test_the_running_bot_checks_new_symbols(
    tmp_path: Path, yahoo: FakeYahoo, clock: ManualClock
) -> None:
    runtime = Runtime(run_settings(tmp_path, yahoo), clock=clock, platforms=[])
    try:
        refused = runtime.router.handle("/watch XYZNOTREAL", CTX)
        accepted = runtime.router.handle("/watch NVDA", CTX)
    finally:
        runtime.store.close()
    assert not refused.ok
    assert "Yahoo does not know" in refused.text
    assert accepted.ok
    assert yahoo.counts["chart"] >= 2


async def test_a_stopped_bot_closes_its_symbol_check_session(
    tmp_path: Path, yahoo: FakeYahoo, clock: ManualClock
) -> None:
    runtime = Runtime(run_settings(tmp_path, yahoo, console=False), clock=clock, platforms=[])
    checker = runtime.symbol_check
    assert isinstance(checker, YahooSymbolCheck)
    await runtime.start()
    try:
        assert runtime.router.handle("/watch NVDA", CTX).ok
    finally:
        await runtime.stop()
    asked = checker.requests
    assert asked == 1
    # Its session (a curl handle of its own) is closed: a late command asks nothing more.
    late = checker.check("AMD")
    assert late.status is SymbolStatus.UNCHECKED
    assert checker.requests == asked
    assert "stopping" in late.detail
