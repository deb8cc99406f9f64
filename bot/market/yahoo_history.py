"""Yahoo price history through yfinance: intraday and daily bars, pre/post-market included."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yfinance as yf
from yfinance.exceptions import YFRateLimitError

from alerts.ports import MarketDataError
from bot.market.yahoo_session import make_session

log = logging.getLogger(__name__)

# What Yahoo serves per interval: how far back, and how much one request may span.
# (1m: the last 30 days, 8 days a request; 5m/15m: 60 days; 1h: 730 days; 1d: everything.)
LOOKBACK: dict[str, timedelta | None] = {
    "1m": timedelta(days=30),
    "5m": timedelta(days=60),
    "15m": timedelta(days=60),
    "1h": timedelta(days=730),
    "1d": None,
}
MAX_SPAN: dict[str, timedelta] = {
    "1m": timedelta(days=8),
    "5m": timedelta(days=60),
    "15m": timedelta(days=60),
    "1h": timedelta(days=730),
    "1d": timedelta(days=365 * 100),
}
INTERVAL_LENGTH: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``start`` is when it opened (UTC), as Yahoo labels bars."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    def to_json(self) -> list[float]:
        return [self.start.timestamp(), self.open, self.high, self.low, self.close, self.volume]

    @classmethod
    def from_json(cls, row: list[float]) -> Bar:
        stamp, o, h, low, c, v = row
        return cls(datetime.fromtimestamp(stamp, UTC), o, h, low, c, v)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class YahooHistory:
    """Bars of one symbol over a time range via ``yf.Ticker(...).history`` on our session.

    yfinance hides most of Yahoo's errors as empty frames (``hide_exceptions``, a process-wide
    setting left alone here), so no bars can mean "nothing traded" or "Yahoo unreachable":
    callers must not cache an empty answer as the truth. A rate limit raises
    ``MarketDataError``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        session: Any = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.session = session if session is not None else make_session(base_url)
        self.timeout = timeout
        self.requests = 0
        # yfinance's YfData singleton: one caller at a time (``lock``: shared with a poller).
        self._lock = lock or threading.Lock()

    def bars_sync(
        self, symbol: str, start: datetime, end: datetime, interval: str, *, prepost: bool = True
    ) -> list[Bar]:
        """Bars that opened in ``[start, end)``; blocking (run it in a worker thread)."""
        if interval not in INTERVAL_LENGTH:
            raise ValueError(f"unknown interval {interval!r}")
        with self._lock:
            self.requests += 1
            try:
                frame = yf.Ticker(symbol, session=self.session).history(
                    start=start,
                    end=end,
                    interval=interval,
                    prepost=prepost,
                    auto_adjust=False,
                    actions=False,
                    timeout=self.timeout,
                )
            except YFRateLimitError as exc:
                raise MarketDataError("Yahoo rate limit (429)") from exc
            except Exception as exc:
                raise MarketDataError(f"Yahoo history for {symbol}: {exc}") from exc
        if frame is None or frame.empty or "Close" not in frame:
            return []
        bars: list[Bar] = []
        for stamp, row in frame.iterrows():
            when = stamp.to_pydatetime().astimezone(UTC)
            close = _finite(row.get("Close"))
            if close is None or close <= 0 or not (start <= when < end):
                continue  # a NaN bar is a minute nobody traded, not a price of 0
            bars.append(
                Bar(
                    start=when,
                    open=_finite(row.get("Open")) or close,
                    high=_finite(row.get("High")) or close,
                    low=_finite(row.get("Low")) or close,
                    close=close,
                    volume=_finite(row.get("Volume")) or 0.0,
                )
            )
        return bars

    def close(self) -> None:
        self.session.close()
