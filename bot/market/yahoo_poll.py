"""Batched Yahoo quotes (one v7 request per 50 symbols) and cached reference closes via yfinance."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yfinance as yf
from yfinance.data import YfData
from yfinance.exceptions import YFException, YFRateLimitError

from alerts.models import MarketSession, Quote
from alerts.ports import Clock, MarketDataError
from bot.market import sessions
from bot.market.yahoo_history import YahooHistory
from bot.market.yahoo_session import make_session

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
MAX_BATCH = 50  # Yahoo answers larger lists, but long URLs get truncated or refused

# Yahoo's marketState -> our session. PREPRE/POSTPOST are the quiet hours around extended trading.
_MARKET_STATES: dict[str, MarketSession] = {
    "PRE": MarketSession.PRE,
    "REGULAR": MarketSession.REGULAR,
    "POST": MarketSession.POST,
    "POSTPOST": MarketSession.CLOSED,
    "PREPRE": MarketSession.CLOSED,
    "CLOSED": MarketSession.CLOSED,
}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else float("nan")


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    seconds = value / 1000.0 if value > 1e12 else float(value)
    return datetime.fromtimestamp(seconds, UTC)


def quote_from_v7(entry: Mapping[str, Any], *, fallback_time: datetime) -> Quote | None:
    """Turn one ``quoteResponse.result`` entry into a Quote, or None if it names no symbol.

    In premarket Yahoo's ``regularMarketPrice`` is still yesterday's close, which is exactly the
    reference a premarket move is measured against; ``regularMarketPreviousClose`` is then a day
    older, so it is used only in the regular and post sessions.
    """
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return None
    state = str(entry.get("marketState") or "").upper()
    session = _MARKET_STATES.get(state, MarketSession.CLOSED)
    regular = _num(entry.get("regularMarketPrice"))
    regular_time = _epoch(entry.get("regularMarketTime"))
    previous = _num(entry.get("regularMarketPreviousClose"))
    price, when = regular, regular_time
    if session is MarketSession.PRE:
        pre = _num(entry.get("preMarketPrice"))
        if pre is not None:
            price, when = pre, _epoch(entry.get("preMarketTime")) or regular_time
        previous = regular
    elif session is MarketSession.POST:
        post = _num(entry.get("postMarketPrice"))
        if post is not None:
            price, when = post, _epoch(entry.get("postMarketTime")) or regular_time
    exchange = entry.get("exchange") or entry.get("fullExchangeName")
    currency = entry.get("currency")
    volume = _num(entry.get("regularMarketVolume"))
    return Quote(
        symbol=symbol,
        price=price,
        time=when or fallback_time,
        session=session,
        previous_close=previous,
        open=_num(entry.get("regularMarketOpen")),
        day_volume=volume,
        currency=currency if isinstance(currency, str) else None,
        exchange=exchange if isinstance(exchange, str) else None,
        source="poll",
    )


@dataclass
class FetchResult:
    """Quotes parsed from Yahoo plus a reason for every requested symbol that got none."""

    quotes: dict[str, Quote] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0


class Backoff:
    """Exponential backoff with full jitter, measured on the injected clock (no sleeping here)."""

    def __init__(
        self,
        clock: Clock,
        *,
        base: float = 2.0,
        cap: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.failures = 0
        self.until: datetime | None = None

    def failed(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2.0 ** (self.failures - 1))
        # Half fixed, half random: never zero, and clients restarted together spread out.
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        self.until = self.clock.now() + timedelta(seconds=delay)
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.until = None

    def remaining(self) -> float:
        if self.until is None:
            return 0.0
        return max(0.0, (self.until - self.clock.now()).total_seconds())


class YahooPoller:
    """Yahoo REST through yfinance's own session, cookie and crumb handling (``YfData``).

    ``YfData`` is a process-wide singleton whose last given session wins, so every call
    re-installs ours. Errors never escape as crashes: each is counted in ``errors`` and
    the symbols come back in ``FetchResult.failed``; repeated failures back off.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        base_url: str | None = None,
        timeout: float = 10.0,
        batch_size: int = MAX_BATCH,
        rng: random.Random | None = None,
        session_factory: Callable[[str | None], Any] = make_session,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.clock = clock
        self.timeout = timeout
        self.batch_size = batch_size
        self.session = session_factory(base_url)
        self.backoff = Backoff(clock, rng=rng)
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()  # YfData's crumb/session are shared: one caller at a time
        self._closes: dict[tuple[str, date], float | None] = {}
        self._meta: dict[str, tuple[str | None, str | None]] = {}
        # Company names from the same v7 answers (longName, else shortName): news tagging.
        self.names: dict[str, str] = {}

    def _data(self) -> YfData:
        return YfData(session=self.session)

    def history(self) -> YahooHistory:
        """Price history on this poller's session and lock (YfData is one per process)."""
        return YahooHistory(session=self.session, timeout=self.timeout, lock=self._lock)

    # --- quotes ------------------------------------------------------------------------
    def fetch_quotes_sync(self, symbols: Sequence[str]) -> FetchResult:
        """One v7 request per ``batch_size`` symbols; blocking (call via ``fetch_quotes``)."""
        result = FetchResult()
        wanted = list(dict.fromkeys(symbols))
        wait = self.backoff.remaining()
        if wait > 0:
            for sym in wanted:
                result.failed[sym] = f"backing off {wait:.0f} s after errors"
            return result
        for i in range(0, len(wanted), self.batch_size):
            chunk = wanted[i : i + self.batch_size]
            try:
                entries = self._fetch_chunk(chunk)
                result.requests += 1
            except MarketDataError as exc:
                result.requests += 1
                # The reason reaches chat notices, which outlive the retry: no delay in it.
                self.backoff.failed()
                for sym in wanted[i:]:
                    result.failed[sym] = str(exc)
                return result
            now = self.clock.now()
            for entry in entries:
                name = entry.get("longName") or entry.get("shortName")
                if isinstance(name, str) and isinstance(entry.get("symbol"), str) and name:
                    self.names[entry["symbol"]] = name
                q = quote_from_v7(entry, fallback_time=now)
                if q is not None and q.symbol in chunk:
                    result.quotes[q.symbol] = q
                    self._meta[q.symbol] = (q.currency, q.exchange)
            for sym in chunk:
                if sym not in result.quotes:
                    result.failed[sym] = "not in Yahoo's answer"
        self.backoff.succeeded()
        return result

    async def fetch_quotes(self, symbols: Sequence[str]) -> FetchResult:
        return await asyncio.to_thread(self.fetch_quotes_sync, symbols)

    def _fetch_chunk(self, chunk: Sequence[str]) -> list[Mapping[str, Any]]:
        params = {"symbols": ",".join(chunk), "formatted": "false", "lang": "en-US"}
        with self._lock:
            self.requests += 1
            try:
                response = self._data().get(QUOTE_URL, params=params, timeout=self.timeout)
            except YFRateLimitError as exc:
                self.errors["rate_limited"] += 1
                raise MarketDataError("Yahoo rate limit (429)") from exc
            except YFException as exc:
                self.errors["yfinance"] += 1
                raise MarketDataError(f"yfinance: {exc}") from exc
            except Exception as exc:  # curl/requests errors: timeout, refused, DNS, TLS
                name = type(exc).__name__.lower()
                kind = "timeout" if "timeout" in name or "timed out" in str(exc) else "unreachable"
                self.errors[kind] += 1
                raise MarketDataError(f"Yahoo {kind}: {type(exc).__name__}") from exc
        status = int(response.status_code)
        if status == 429:
            self.errors["rate_limited"] += 1
            raise MarketDataError("Yahoo rate limit (429)")
        if status >= 500:
            self.errors["server_error"] += 1
            raise MarketDataError(f"Yahoo server error {status}")
        if status >= 400:
            self.errors["client_error"] += 1
            raise MarketDataError(f"Yahoo refused the request ({status})")
        try:
            body = response.json()
        except Exception as exc:
            self.errors["garbage"] += 1
            raise MarketDataError("Yahoo answered something that is not JSON") from exc
        result = body.get("quoteResponse", {}).get("result") if isinstance(body, dict) else None
        if not isinstance(result, list):
            self.errors["garbage"] += 1
            raise MarketDataError("Yahoo's answer has no quoteResponse.result")
        if not result:
            self.errors["empty"] += 1
        return [e for e in result if isinstance(e, dict)]

    # --- reference data ----------------------------------------------------------------
    def previous_close_sync(self, symbol: str, day: date) -> float | None:
        """Close of the last regular session before trading day ``day``; cached per day."""
        key = (symbol, day)
        if key in self._closes:
            return self._closes[key]
        ref_day = sessions.previous_trading_day(symbol, day)
        close = self._close_on(symbol, ref_day, day)
        # Failures are not cached: the next call retries (backoff permitting).
        if close is not None:
            self._closes[key] = close
        return close

    async def previous_close(self, symbol: str, day: date) -> float | None:
        return await asyncio.to_thread(self.previous_close_sync, symbol, day)

    def _close_on(self, symbol: str, ref_day: date, before: date) -> float | None:
        if self.backoff.remaining() > 0:
            return None
        with self._lock:
            self.requests += 1
            try:
                # ``end`` one day past the trading day: yfinance memoises responses for
                # ranges wholly in the past (errors included) for the process lifetime.
                frame = yf.Ticker(symbol, session=self.session).history(
                    start=ref_day - timedelta(days=7),
                    end=before + timedelta(days=1),
                    interval="1d",
                    auto_adjust=False,
                    timeout=self.timeout,
                )
            except YFRateLimitError:
                self.errors["rate_limited"] += 1
                self.backoff.failed()
                return None
            except Exception:
                self.errors["chart"] += 1
                return None
        # yfinance hides errors as empty frames; an empty or NaN close is "unknown", not 0.
        if frame is None or frame.empty or "Close" not in frame:
            self.errors["chart_empty"] += 1
            return None
        closes = frame["Close"].dropna()
        closes = closes[[idx.date() <= ref_day for idx in closes.index]]
        if closes.empty:
            self.errors["chart_empty"] += 1
            return None
        value = float(closes.to_numpy()[-1])
        return value if math.isfinite(value) and value > 0 else None

    def intraday_volumes_sync(
        self, symbol: str, before: date, *, days: int = 31, interval: str = "5m"
    ) -> list[tuple[datetime, float]]:
        """(bar start, volume) of the intraday bars of the weeks before ``before``.

        What ``volume Nx`` rules compare today's volume with; empty when Yahoo has none.
        """
        if self.backoff.remaining() > 0:
            return []
        with self._lock:
            self.requests += 1
            try:
                frame = yf.Ticker(symbol, session=self.session).history(
                    start=before - timedelta(days=days),
                    end=before + timedelta(days=1),
                    interval=interval,
                    prepost=True,
                    auto_adjust=False,
                    timeout=self.timeout,
                )
            except YFRateLimitError:
                self.errors["rate_limited"] += 1
                self.backoff.failed()
                return []
            except Exception:
                self.errors["chart"] += 1
                return []
        if frame is None or frame.empty or "Volume" not in frame:
            self.errors["chart_empty"] += 1
            return []
        bars = []
        for stamp, volume in frame["Volume"].items():
            start = stamp.to_pydatetime()
            if start.date() < before and math.isfinite(float(volume)):
                bars.append((start, float(volume)))
        return bars

    def meta(self, symbol: str) -> tuple[str | None, str | None]:
        """Currency and exchange last seen for ``symbol`` (from quotes)."""
        return self._meta.get(symbol, (None, None))

    def close(self) -> None:
        self.session.close()
