"""The market view: latest quotes, today's paths and recent news, for /price, /news and renders."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from alerts.commands import DataOutage
from alerts.context import context_lines
from alerts.models import ContextLine, NewsItem, Quote
from alerts.quality import plain_reason

NEWS_KEPT = 500
HISTORY_POINTS = 2000  # per symbol: a whole premarket of 10-second ticks
HEADLINE_WINDOW = timedelta(hours=18)


class MarketState:
    """What the bot last saw of the market, in memory; the ingest step keeps it current.

    It answers the command layer's ``MarketView`` port (``latest_quote``, ``recent_news``) and
    gives delivery what a render shows beside the alerts (futures, headlines, chart paths).
    """

    def __init__(self, context_symbols: Sequence[str] = ("NQ=F", "ES=F", "YM=F")) -> None:
        self.context_symbols = tuple(context_symbols)
        self._latest: dict[str, Quote] = {}
        self._news: deque[NewsItem] = deque(maxlen=NEWS_KEPT)
        self._news_keys: set[str] = set()
        # Today's path of each symbol, as (time, % vs previous close), for chart images.
        self._history: dict[str, deque[tuple[datetime, float]]] = {}
        # Symbols the source could not give a usable quote for, since when and why.
        self._outages: dict[str, DataOutage] = {}
        # The engine's latest change % per symbol it trusts (ingest hands it down after each
        # evaluation), so a render counts a basket's moves without asking the engine.
        self._moves: dict[str, float] = {}

    # -- updates (ingest) -----------------------------------------------------------------

    def remember(self, quote: Quote) -> None:
        previous = self._latest.get(quote.symbol)
        self._latest[quote.symbol] = quote
        self._outages.pop(quote.symbol, None)
        change = quote.change_pct()
        if change is None:
            return
        path = self._history.get(quote.symbol)
        if path is None or previous is None or previous.previous_close != quote.previous_close:
            path = self._history[quote.symbol] = deque(maxlen=HISTORY_POINTS)  # a new day
        if not path or quote.time > path[-1][0]:
            path.append((quote.time, change))

    def mark_unavailable(self, unavailable: Mapping[str, str], now: datetime) -> None:
        """The source had nothing usable for these symbols. An outage keeps the time and the
        reason it started with: later rounds only say "backing off", not what went wrong."""
        for symbol, reason in unavailable.items():
            if symbol not in self._outages:
                self._outages[symbol] = DataOutage(since=now, reason=plain_reason(reason))

    def set_moves(self, moves: Mapping[str, float], symbols: Iterable[str] | None = None) -> None:
        """The engine's latest changes, handed down by ingest: for ``symbols`` only (a symbol
        of theirs missing from ``moves`` has none now: an outage, no close), or all of them."""
        if symbols is None:
            self._moves = dict(moves)
            return
        for symbol in symbols:
            change = moves.get(symbol)
            if change is None:
                self._moves.pop(symbol, None)
            else:
                self._moves[symbol] = change

    def add_news(self, items: Iterable[NewsItem]) -> list[NewsItem]:
        """Keeps the items not seen before and returns them (each story is evaluated once)."""
        fresh = [item for item in items if item.key not in self._news_keys]
        for item in fresh:
            self._news.append(item)
            self._news_keys.add(item.key)
        if len(self._news_keys) > 4 * NEWS_KEPT:
            self._news_keys = {item.key for item in self._news}
        return fresh

    # -- reads ----------------------------------------------------------------------------

    @property
    def latest(self) -> dict[str, Quote]:
        return self._latest

    def latest_quote(self, symbol: str) -> Quote | None:
        return self._latest.get(symbol)

    def data_outage(self, symbol: str) -> DataOutage | None:
        """Since when (and why) the latest data for ``symbol`` is missing; None while fresh."""
        return self._outages.get(symbol)

    def moves(self) -> dict[str, float]:
        """Latest change % against the previous close per symbol with good data, as the engine
        last judged it (``Engine.latest_changes``); empty where no engine feeds this view."""
        return dict(self._moves)

    def news(self) -> list[NewsItem]:
        """Every headline kept, oldest first (attribution ranks them itself)."""
        return list(self._news)

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        wanted = set(symbols)
        items = [item for item in reversed(self._news) if not wanted or wanted & set(item.symbols)]
        return items[:limit]

    def headlines_for(
        self, symbols: Iterable[str], now: datetime, limit: int = 3
    ) -> list[NewsItem]:
        """The newest headlines tagged with any of ``symbols`` from the last 18 hours."""
        wanted = set(symbols)
        return [
            item
            for item in reversed(self._news)
            if wanted & set(item.symbols) and now - item.published <= HEADLINE_WINDOW
        ][:limit]

    def context(self) -> tuple[ContextLine, ...]:
        return context_lines(self.context_symbols, self._latest)

    def path(self, symbol: str) -> list[tuple[datetime, float]]:
        return list(self._history.get(symbol, ()))
