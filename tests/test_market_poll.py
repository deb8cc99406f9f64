"""Batched polling through the real yfinance against the loopback fake Yahoo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yfinance as yf

from alerts.models import MarketSession as S
from alerts.ports import ManualClock
from alerts.quality import QualityGate, Verdict
from bot.fakes.yahoo_server import FakeYahoo
from bot.market.yahoo_poll import YahooPoller, quote_from_v7

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "yahoo"
T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # 04:00 ET


@pytest.fixture(autouse=True, scope="module")
def _yf_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yf-cache")))


@pytest.fixture
def fake() -> Iterator[FakeYahoo]:
    with FakeYahoo(FIXTURES if FIXTURES.is_dir() else None) as f:
        yield f


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def poller(fake: FakeYahoo, clock: ManualClock) -> Iterator[YahooPoller]:
    p = YahooPoller(clock=clock, base_url=fake.base_url, timeout=5)
    yield p
    p.close()


def test_one_request_per_fifty_symbols(fake: FakeYahoo, poller: YahooPoller) -> None:
    symbols = [f"S{i:03d}" for i in range(120)]
    for s in symbols:
        fake.set_quote(s, price=10.0, previous_close=10.5, at=T0)
    fake.reset_counts()
    result = poller.fetch_quotes_sync(symbols)
    assert set(result.quotes) == set(symbols)
    assert fake.counts["quote"] == 3
    assert result.requests == 3
    assert not result.failed


def test_premarket_quote_uses_premarket_price_against_yesterdays_close(
    fake: FakeYahoo, poller: YahooPoller
) -> None:
    fake.set_quote(
        "NVDA",
        price=142.62,  # Friday's close, still the "regular" price at 04:00 Monday
        previous_close=147.22,  # Thursday's
        market_state="PRE",
        at=T0 - timedelta(days=3),
        pre_price=124.1,
        pre_time=T0,
    )
    quote = poller.fetch_quotes_sync(["NVDA"]).quotes["NVDA"]
    assert quote.session is S.PRE
    assert quote.price == 124.1
    assert quote.previous_close == 142.62
    assert quote.time == T0
    change = quote.change_pct()
    assert change is not None
    assert change == pytest.approx(-12.99, abs=0.01)


def test_post_market_quote(fake: FakeYahoo, poller: YahooPoller) -> None:
    at = T0 + timedelta(hours=12)
    fake.set_quote(
        "AMD", price=115.0, previous_close=122.0, market_state="POST", at=at, post_price=114.0
    )
    quote = poller.fetch_quotes_sync(["AMD"]).quotes["AMD"]
    assert (quote.session, quote.price, quote.previous_close) == (S.POST, 114.0, 122.0)


@pytest.mark.parametrize(
    ("kind", "status", "counter"),
    [("status", 429, "rate_limited"), ("status", 500, "server_error"), ("garbage", 200, "garbage")],
)
def test_errors_are_counted_backed_off_and_recovered(
    fake: FakeYahoo,
    poller: YahooPoller,
    clock: ManualClock,
    kind: str,
    status: int,
    counter: str,
) -> None:
    fake.set_quote("NVDA", price=124.0, previous_close=142.6, at=T0)
    # yfinance retries once on a 4xx/5xx with its other cookie strategy: fail both.
    fake.fail("/v7/finance/quote", kind, status=status, times=2 if kind == "status" else 1)
    result = poller.fetch_quotes_sync(["NVDA"])
    assert not result.quotes
    assert "NVDA" in result.failed
    assert poller.errors[counter] == 1
    wait = poller.backoff.remaining()
    assert wait > 0
    # While backing off no request reaches Yahoo at all.
    before = fake.counts["quote"]
    again = poller.fetch_quotes_sync(["NVDA"])
    assert "backing off" in again.failed["NVDA"]
    assert fake.counts["quote"] == before
    clock.advance(timedelta(seconds=wait + 0.01))
    ok = poller.fetch_quotes_sync(["NVDA"])
    assert ok.quotes["NVDA"].price == 124.0
    assert poller.backoff.failures == 0


def test_timeout_is_counted_and_backed_off(fake: FakeYahoo, clock: ManualClock) -> None:
    fake.set_quote("NVDA", price=124.0, previous_close=142.6, at=T0)
    p = YahooPoller(clock=clock, base_url=fake.base_url, timeout=0.3)
    p.fetch_quotes_sync(["NVDA"])  # cookie and crumb first, so only the quote stalls
    fake.fail("/v7/finance/quote", "slow", delay=1.0)
    result = p.fetch_quotes_sync(["NVDA"])
    assert "timeout" in result.failed["NVDA"]
    assert p.errors["timeout"] == 1
    assert p.backoff.remaining() > 0
    p.close()


def test_backoff_grows_with_jitter(clock: ManualClock, poller: YahooPoller) -> None:
    delays = [poller.backoff.failed() for _ in range(6)]
    # Full jitter keeps each wait within [ceiling/2, ceiling]: every floor beats the last.
    assert all(d >= poller.backoff.base * 2**i / 2 for i, d in enumerate(delays))
    assert all(d <= poller.backoff.cap for d in delays)
    assert len(set(delays)) == len(delays)


def test_empty_answer_reports_missing_symbols(fake: FakeYahoo, poller: YahooPoller) -> None:
    fake.fail("/v7/finance/quote", "empty")
    result = poller.fetch_quotes_sync(["NVDA", "AMD"])
    assert set(result.failed) == {"NVDA", "AMD"}
    assert poller.errors["empty"] == 1


def test_unreachable_yahoo_is_an_error_not_a_crash(clock: ManualClock) -> None:
    with FakeYahoo() as f:
        url = f.base_url
    p = YahooPoller(clock=clock, base_url=url, timeout=2)
    result = p.fetch_quotes_sync(["NVDA"])
    assert "NVDA" in result.failed
    assert sum(p.errors.values()) == 1
    p.close()


def test_previous_close_from_chart_is_cached_per_day(fake: FakeYahoo, poller: YahooPoller) -> None:
    fake.set_closes("NVDA", [(date(2025, 1, 23), 147.22), (date(2025, 1, 24), 142.62)])
    assert poller.previous_close_sync("NVDA", date(2025, 1, 27)) == 142.62
    charts = fake.counts["chart"]
    assert poller.previous_close_sync("NVDA", date(2025, 1, 27)) == 142.62
    assert fake.counts["chart"] == charts
    # Thursday's reference for Friday's trading day is a different cache entry.
    assert poller.previous_close_sync("NVDA", date(2025, 1, 24)) == 147.22


def test_previous_close_unknown_symbol_is_none(fake: FakeYahoo, poller: YahooPoller) -> None:
    assert poller.previous_close_sync("NOPE", date(2025, 1, 27)) is None


def test_quote_entry_without_numbers_becomes_nodata() -> None:
    q = quote_from_v7({"symbol": "X", "marketState": "REGULAR"}, fallback_time=T0)
    assert q is not None
    verdict = QualityGate().check("X", q, now=T0, expected_interval=timedelta(seconds=60))
    assert verdict.verdict is Verdict.NODATA
    assert quote_from_v7({"marketState": "REGULAR"}, fallback_time=T0) is None


# --- recorded real responses ------------------------------------------------------------

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="../shared/fixtures/yahoo not present"
)

STATES = {"PRE": S.PRE, "REGULAR": S.REGULAR, "POST": S.POST, "CLOSED": S.CLOSED}


def _recorded_quotes() -> list[tuple[str, list[str], list[dict[str, object]]]]:
    if not FIXTURES.is_dir():
        return []
    out = []
    for f in sorted(FIXTURES.glob("quote-*.json")):
        raw = json.loads(f.read_text())
        query = parse_qs(urlsplit(raw["request"]["url"]).query)
        if "fields" in query:
            continue
        body = raw["response"].get("bodyJson") or {}
        symbols = query["symbols"][0].split(",")
        out.append((f.name, symbols, body.get("quoteResponse", {}).get("result", [])))
    return out


@needs_fixtures
@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "symbols", "entries"),
    _recorded_quotes(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_recorded_quote_parsed_right(
    fake: FakeYahoo,
    clock: ManualClock,
    name: str,
    symbols: list[str],
    entries: list[dict[str, object]],
) -> None:
    poller = YahooPoller(clock=clock, base_url=fake.base_url, timeout=5)
    result = poller.fetch_quotes_sync(symbols)
    poller.close()
    assert fake.counts["quote"] == 1, name
    by_symbol = {e["symbol"]: e for e in entries}
    for sym in symbols:
        entry = by_symbol.get(sym)
        if entry is None:
            assert "not in Yahoo's answer" in result.failed[sym]
            continue
        quote = result.quotes[sym]
        state = str(entry.get("marketState") or "")
        assert quote.session is STATES.get(state, S.CLOSED)
        assert quote.currency == entry.get("currency")
        assert quote.exchange == (entry.get("exchange") or entry.get("fullExchangeName"))
        if state != "PRE":
            assert quote.price == entry.get("regularMarketPrice")
            assert quote.previous_close == entry.get("regularMarketPreviousClose")
        # Whatever Yahoo sent, the gate either passes a positive price or refuses it.
        verdict = QualityGate().check(
            sym, quote, now=quote.time, expected_interval=timedelta(seconds=60)
        )
        if verdict.ok:
            assert quote.price is not None
            assert quote.price > 0
        else:
            assert verdict.reason


@needs_fixtures
@pytest.mark.shared
def test_recorded_batch_of_two(fake: FakeYahoo, poller: YahooPoller) -> None:
    result = poller.fetch_quotes_sync(["AAPL", "BABA"])
    assert set(result.quotes) == {"AAPL", "BABA"}
    assert fake.counts["quote"] == 1


CHARTS = [
    ("chart-GC=F-2020-01-01-to-2020-01-03.json", "GC=F"),
    ("chart-EURUSD=X-2020-01-01-to-2020-01-03.json", "EURUSD=X"),
    ("chart-OCDO.L-2020-01-01-to-2020-01-03.json", "OCDO.L"),
    ("chart-AZT.OL-2020-01-01-to-2020-01-03.json", "AZT.OL"),
    ("chart-AAPL-2020-01-01-to-2020-01-03.json", "AAPL"),
]


@needs_fixtures
@pytest.mark.shared
@pytest.mark.parametrize(("name", "symbol"), CHARTS)
def test_recorded_chart_gives_reference_close(
    fake: FakeYahoo, poller: YahooPoller, name: str, symbol: str
) -> None:
    fake.serve_chart_fixture(name)
    body = json.loads((FIXTURES / name).read_text())["response"]["bodyJson"]
    res = body["chart"]["result"][0]
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(res["meta"]["exchangeTimezoneName"])
    bars = {
        datetime.fromtimestamp(ts, tz).date(): c
        for ts, c in zip(res["timestamp"], res["indicators"]["quote"][0]["close"], strict=True)
        if c is not None
    }
    first_day = min(bars)
    close = poller.previous_close_sync(symbol, first_day + timedelta(days=1))
    assert close == pytest.approx(bars[first_day], rel=1e-6)


@needs_fixtures
@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    ["chart-notimestamp-quotes-length.fake.json", "chart-notimestamp-weird-quote.fake.json"],
)
def test_odd_recorded_charts_are_unknown_not_zero(
    fake: FakeYahoo, poller: YahooPoller, name: str
) -> None:
    fake.serve_chart_fixture(name)
    # A day no other test asks for: yfinance memoises past chart ranges process-wide.
    assert poller.previous_close_sync("AAPL", date(2020, 1, 7)) is None
