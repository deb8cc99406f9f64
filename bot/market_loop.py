"""The one market loop: batches from any market feed into the pipeline, for run and replay alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from alerts.models import Alert, NewsItem
from alerts.quality import QuoteBatch

if TYPE_CHECKING:
    from bot.pipeline import Pipeline

log = logging.getLogger("bot.market.live")  # the name operators' log filters already know


class MarketFeed(Protocol):
    """What the loop reads: judged batches for the symbols the watches need.

    Implemented by the live Yahoo source (``bot.market.source``) and by the replay of a
    recorded day (``bot.market.replay.ReplayFeed``).
    """

    def set_symbols(self, symbols: Iterable[str]) -> None: ...

    def batches(self) -> AsyncIterator[QuoteBatch]: ...

    def news(self) -> list[NewsItem]:
        """Headlines that came with the prices since last asked (a recorded day); live: none."""
        ...

    def failures(self) -> int:
        """Consecutive failed fetches: above 0 while the source is unreachable."""
        ...

    async def settled(self) -> None:
        """Return once work the feed started (a poll) is finished: for simulated time."""
        ...

    def stats(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class UnreachableNotice:
    """Says once that the data source is unreachable, and once that it is back."""

    def __init__(self) -> None:
        self.down = False

    def observe(self, got_quotes: bool, failures: int) -> str | None:
        if not got_quotes and failures and not self.down:
            self.down = True
            return "Yahoo unreachable; retrying with backoff, quietly until it answers"
        if got_quotes and self.down:
            self.down = False
            return "Yahoo reachable again"
        return None


async def run_market_loop(
    feed: MarketFeed,
    pipeline: Pipeline,
    *,
    on_alerts: Callable[[Sequence[Alert]], None] = lambda alerts: None,
    on_data: Callable[[], None] = lambda: None,
    leading: Callable[[], bool] = lambda: True,
) -> None:
    """Never returns on bad data or network trouble (the feed backs off, we keep reading);
    returns when the feed ends (a recorded day played to its end).

    ``on_alerts`` hears of newly stored alerts, so delivery can be woken for their group wait
    instead of waiting for the next safety-net round. ``on_data`` is told each time quotes
    arrive (readiness measures freshness with it). A batch that arrives while ``leading()`` is
    False (a leader resuming from a stall, its lock not confirmed since:
    ``bot.leadership.Term.current``) is dropped: another process may have taken over and
    alerted on these prices already, and the next poll brings them again if not.
    """
    notice = UnreachableNotice()
    feed.set_symbols(pipeline.symbols())
    async for batch in feed.batches():
        if not leading():
            log.warning("quotes dropped: this process's leadership is not confirmed right now")
            continue
        stored = pipeline.ingest_news(feed.news())
        stored += pipeline.ingest_quotes(batch.quotes, batch.unavailable)
        if stored:
            on_alerts(stored)
        if batch.quotes:
            on_data()
        message = notice.observe(bool(batch.quotes), feed.failures())
        if message:
            log.warning(message)
        feed.set_symbols(pipeline.symbols())
