"""What `/news` answers from outside the running bot (`marketbot cmd`): the stored headlines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from alerts.models import NewsItem, Quote
from alerts.ports import Clock, SystemClock
from bot.news.store import NewsStore

STORED_NEWS_WINDOW = timedelta(days=4)


class StoredNews:
    """A ``MarketView`` with headlines from the database and no live quotes."""

    def __init__(self, store: NewsStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    def latest_quote(self, symbol: str) -> Quote | None:
        return None

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        since = self._clock.now() - STORED_NEWS_WINDOW
        return self._store.recent(since, symbols=symbols, limit=limit)
