"""Today's price path from Yahoo's 1-minute chart, so a chart does not start when the bot did.

The bot's own path of a symbol holds only the quotes it saw: the first alert of a storm (one
quote seen) would get no chart, and a bot started at 04:20 would chart from 04:20. The first
time a symbol needs a chart, the day so far is fetched once from Yahoo's 1-minute bars (pre-
and post-market included) and put in front of what the bot saw. Best effort within a bounded
time: a failure means no backfill (the chart shows what was seen, or there is none) and one
log line; the alert itself was delivered before any of this runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol

from alerts.models import Quote
from alerts.ports import Clock
from bot.market import sessions
from bot.market.yahoo_history import Bar

if TYPE_CHECKING:
    from bot.pipeline.market_view import MarketState

log = logging.getLogger(__name__)

MovePath = list[tuple[datetime, float]]  # (time, % vs previous close), as MarketState keeps them

BACKFILL_TIMEOUT_SECONDS = 5.0  # a chart a few seconds late is fine; a lane held longer is not
RETRY_AFTER = timedelta(minutes=10)  # after a failure, the next chart of the symbol tries again


class BarSource(Protocol):
    """Where bars come from: :class:`bot.market.yahoo_history.YahooHistory` (blocking)."""

    def bars_sync(
        self, symbol: str, start: datetime, end: datetime, interval: str, *, prepost: bool = True
    ) -> list[Bar]: ...


@dataclass(frozen=True, slots=True)
class _Backfilled:
    day: date
    previous_close: float
    points: MovePath


def day_start(symbol: str, now: datetime) -> datetime:
    """Where today's path begins: the trading day's midnight in its exchange's zone, but never
    before the previous regular close (the reference every point is measured against).

    For a future in its evening session (which counts toward tomorrow) that is the previous
    close, so the chart shows the whole session against the close it is measured from.
    """
    day = sessions.trading_day(symbol, now)
    midnight = datetime.combine(day, time(0), sessions.exchange_zone(symbol))
    try:
        bounds = sessions.regular_session_bounds(symbol, sessions.previous_trading_day(symbol, day))
    except ValueError:
        bounds = None
    previous_close_at = bounds[1] if bounds is not None else now - timedelta(days=1)
    start = max(midnight, previous_close_at)
    return start if start < now else previous_close_at


class ChartBackfill:
    """Answers ``paths(symbols)`` for delivery's charts: Yahoo's day so far, then what was seen.

    ``seen`` and ``latest`` read the bot's own market view (``MarketState.path`` and
    ``latest_quote``); one fetch per symbol and trading day, shared by concurrent charts and
    kept for the day's later charts.
    """

    def __init__(
        self,
        bars: BarSource,
        clock: Clock,
        *,
        seen: Callable[[str], MovePath],
        latest: Callable[[str], Quote | None],
        timeout: float = BACKFILL_TIMEOUT_SECONDS,
    ) -> None:
        self._bars = bars
        self._clock = clock
        self._seen = seen
        self._latest = latest
        self.timeout = timeout
        self._done: dict[str, _Backfilled] = {}
        self._failed_at: dict[str, datetime] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def of(cls, market: MarketState, bars: BarSource, clock: Clock) -> ChartBackfill:
        """A backfill in front of ``market``'s seen paths (what ``marketbot run`` charts)."""
        return cls(bars, clock, seen=market.path, latest=market.latest_quote)

    async def paths(self, symbols: Sequence[str]) -> dict[str, MovePath]:
        """Each symbol's path for a chart, waiting at most ``timeout`` for Yahoo."""
        now = self._clock.now()
        waiting = [task for s in symbols if (task := self._start(s, now)) is not None]
        if waiting:
            # Unfinished fetches go on in the background and serve the next chart.
            await asyncio.wait(waiting, timeout=self.timeout)
        return {symbol: self._path(symbol) for symbol in symbols}

    def _start(self, symbol: str, now: datetime) -> asyncio.Task[None] | None:
        quote = self._latest(symbol)
        if quote is None or quote.previous_close is None or quote.previous_close <= 0:
            return None  # no reference to measure the bars against
        day = sessions.trading_day(symbol, now)
        done = self._done.get(symbol)
        if done is not None and done.day == day and done.previous_close == quote.previous_close:
            return None
        failed = self._failed_at.get(symbol)
        if failed is not None and now - failed < RETRY_AFTER:
            return None
        task = self._pending.get(symbol)
        if task is None:
            task = asyncio.ensure_future(self._fetch(symbol, day, quote.previous_close, now))
            self._pending[symbol] = task
            task.add_done_callback(lambda _: self._pending.pop(symbol, None))
        return task

    async def _fetch(self, symbol: str, day: date, previous_close: float, now: datetime) -> None:
        try:
            start = day_start(symbol, now)
            # Blocking HTTP through yfinance: off the event loop, in a worker thread.
            bars = await asyncio.to_thread(self._bars.bars_sync, symbol, start, now, "1m")
        except Exception as exc:  # Yahoo down, refused, garbage: the chart goes without
            self._failed_at[symbol] = self._clock.now()
            log.warning(
                "no chart history for %s from Yahoo (%s); charting what was seen", symbol, exc
            )
            return
        if not bars:
            # yfinance turns most errors into no bars: not "nothing traded" for sure.
            self._failed_at[symbol] = self._clock.now()
            log.warning(
                "no chart history for %s from Yahoo (no bars); charting what was seen", symbol
            )
            return
        points = [(bar.start, (bar.close / previous_close - 1.0) * 100.0) for bar in bars]
        self._done[symbol] = _Backfilled(day, previous_close, points)
        self._failed_at.pop(symbol, None)

    def _path(self, symbol: str) -> MovePath:
        seen = self._seen(symbol)
        done = self._done.get(symbol)
        if done is None:
            return seen
        quote = self._latest(symbol)
        if quote is not None and quote.previous_close != done.previous_close:
            return seen  # a new day began since: yesterday's bars are not today's path
        first_seen = seen[0][0] if seen else None
        earlier = [p for p in done.points if first_seen is None or p[0] < first_seen]
        return earlier + seen
