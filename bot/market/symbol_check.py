"""Does Yahoo know this symbol? One chart request per symbol, answered from a cache after.

The request is the one yfinance itself makes first for any ticker (its time-zone lookup,
``/v8/finance/chart/SYM?range=1d&interval=1d``). Yahoo answers a symbol it does not have
with HTTP 404 and ``{"chart": {"result": null, "error": {"code": "Not Found", ...}}}``,
which yfinance reports as "possibly delisted; no timezone found". yfinance also reports a
network failure the same way (it hides exceptions), so the answer is read here from the
response itself: only Yahoo's explicit "Not Found" refuses a symbol; anything else that is
not a chart (no answer, 429, 5xx, garbage) leaves the symbol unchecked.

No crumb is needed for the chart endpoint, so this uses its own session and leaves
yfinance's process-wide ``YfData`` (and the poller's cookie strategy) alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from alerts.ports import Clock, SymbolCheck, SymbolStatus
from bot.market.yahoo_session import make_session

log = logging.getLogger(__name__)

CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"
# A symbol Yahoo knows stays known; one it does not know may be listed tomorrow (an IPO).
UNKNOWN_FOR = timedelta(days=1)
# After Yahoo failed to answer, symbols are not asked about for a while: a burst of commands
# (or a basket of 50) waits for one timeout, not one each.
UNCHECKED_FOR = timedelta(minutes=1)


class YahooSymbolCheck:
    """The ``SymbolChecker`` port over Yahoo (or the ``MARKETBOT_YAHOO__BASE_URL`` rewrite)."""

    def __init__(
        self,
        *,
        clock: Clock,
        base_url: str | None = None,
        timeout: float = 5.0,
        session_factory: Callable[[str | None], Any] = make_session,
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.session = session_factory(base_url)
        self.requests = 0
        self._cache: dict[str, tuple[SymbolCheck, datetime | None]] = {}  # answer, expiry
        self._down: tuple[str, datetime] | None = None  # why Yahoo did not answer, until when
        self._lock = threading.Lock()  # one request at a time: a session is not thread-safe
        self.closed = False

    def check(self, symbol: str) -> SymbolCheck:
        with self._lock:
            now = self.clock.now()
            if self.closed:
                # A command still running as the bot stops: its watch is kept, unchecked.
                return SymbolCheck(symbol, SymbolStatus.UNCHECKED, "the bot is stopping")
            cached = self._cache.get(symbol)
            if cached is not None and (cached[1] is None or now < cached[1]):
                return cached[0]
            if self._down is not None and now < self._down[1]:
                # Yahoo just failed to answer: every symbol would wait for the same outage.
                return SymbolCheck(symbol, SymbolStatus.UNCHECKED, self._down[0])
            answer = self._ask(symbol)
            if answer.status is SymbolStatus.UNCHECKED:
                self._down = (answer.detail, now + UNCHECKED_FOR)
                return answer
            self._down = None
            lifetime = None if answer.status is SymbolStatus.KNOWN else now + UNKNOWN_FOR
            self._cache[symbol] = (answer, lifetime)
            return answer

    def _ask(self, symbol: str) -> SymbolCheck:
        self.requests += 1
        url = CHART_URL.format(symbol=symbol)
        try:
            response = self.session.get(
                url, params={"range": "1d", "interval": "1d"}, timeout=self.timeout
            )
        except Exception as exc:  # curl/requests errors: refused, DNS, timeout, TLS
            log.info("symbol check of %s: Yahoo unreachable: %s", symbol, type(exc).__name__)
            return SymbolCheck(symbol, SymbolStatus.UNCHECKED, "Yahoo unreachable")
        status = int(response.status_code)
        if status == 429:
            return SymbolCheck(symbol, SymbolStatus.UNCHECKED, "Yahoo rate limit")
        try:
            body = response.json()
        except Exception:
            body = None
        chart = body.get("chart") if isinstance(body, dict) else None
        error = chart.get("error") if isinstance(chart, dict) else None
        if isinstance(error, dict) and error.get("code") == "Not Found":
            detail = str(error.get("description") or "not found")
            return SymbolCheck(symbol, SymbolStatus.UNKNOWN, f"Yahoo: {detail}")
        results = chart.get("result") if isinstance(chart, dict) else None
        if status == 200 and isinstance(results, list) and results:
            meta = results[0].get("meta") if isinstance(results[0], dict) else None
            if isinstance(meta, dict):
                return SymbolCheck(symbol, SymbolStatus.KNOWN, _describe(meta))
        return SymbolCheck(symbol, SymbolStatus.UNCHECKED, f"Yahoo answered HTTP {status}")

    def close(self) -> None:
        """Close the session once a request in flight (at most ``timeout``) is done."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.session.close()


def _describe(meta: dict[str, Any]) -> str:
    """``NVIDIA Corporation, NMS, USD``: what the chart's meta says the symbol is."""
    parts = [
        meta.get("longName") or meta.get("shortName"),
        meta.get("fullExchangeName") or meta.get("exchangeName"),
        meta.get("currency"),
    ]
    return ", ".join(str(part) for part in parts if isinstance(part, str) and part)
