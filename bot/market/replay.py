"""Market data played back from a scenario file on a simulated clock (demos, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.models import MarketSession, NewsItem, Quote
from alerts.ports import ManualClock
from alerts.quality import QualityGate, QuoteBatch
from alerts.scenario import Scenario
from bot.scenarios import open_scenario

SleepFn = Callable[[float], Awaitable[None]]
AdvanceFn = Callable[[datetime], Awaitable[None]]

SOURCE = "replay"
# How often a silent source (a scenario gap) keeps answering with its last, ageing quote.
GAP_REPEAT = timedelta(minutes=1)
# Scenario ticks are a minute apart; a quote older than two of them is stale, as live.
REPLAY_TICK_INTERVAL = timedelta(minutes=1)


class ReplayMarketData:
    """Implements the ``MarketData`` port over a :class:`Scenario`.

    ``poll`` answers with each symbol's latest tick at the clock's current time; ``stream``
    walks the ticks in time order and moves the clock to each tick's time before yielding it.
    ``speed=None`` replays as fast as possible; ``speed=N`` waits ``gap / N`` seconds between
    ticks through the injected ``sleep`` (N× real time). ``advance`` moves the clock instead of
    setting it, so a scheduler on the same clock can stop at each of its jobs' times on the way
    (``JobScheduler.advance_to``).
    """

    def __init__(
        self,
        scenario: Scenario,
        clock: ManualClock | None = None,
        *,
        speed: float | None = None,
        sleep: SleepFn = asyncio.sleep,
        advance: AdvanceFn | None = None,
    ) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")
        self.scenario = scenario
        self.clock = clock if clock is not None else ManualClock(scenario.start.astimezone(UTC))
        self.speed = speed
        self._sleep = sleep
        self._advance = advance
        self._closed = False
        self._quotes: dict[str, tuple[Quote, ...]] = {
            symbol: _quotes(scenario, symbol) for symbol in scenario.ticks
        }
        self._times = {s: [q.time for q in qs] for s, qs in self._quotes.items()}
        by_time: dict[datetime, list[Quote]] = {}
        for quotes in self._quotes.values():
            for q in quotes:
                by_time.setdefault(q.time, []).append(q)
        for when, held in _held_quotes(scenario, self._quotes):
            by_time.setdefault(when, []).append(held)
        self._timeline = sorted(by_time.items())
        self._timeline_times = [t for t, _ in self._timeline]
        self._news_times = [n.published for n in scenario.news]

    @classmethod
    def open(
        cls,
        name_or_path: str,
        clock: ManualClock | None = None,
        *,
        speed: float | None = None,
        sleep: SleepFn = asyncio.sleep,
    ) -> ReplayMarketData:
        """Replay a built-in scenario by name, or a scenario file by path."""
        return cls(open_scenario(name_or_path), clock, speed=speed, sleep=sleep)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.scenario.symbols

    @property
    def finished(self) -> bool:
        """True once the clock is past the last tick."""
        return not self._timeline or self.clock.now() >= self._timeline_times[-1]

    async def poll(self, symbols: Sequence[str]) -> list[Quote]:
        """The latest quote at or before now of each symbol that has one (others are absent).

        A quote keeps its tick's time, so a symbol whose market has gone quiet (ASML.AS after
        Amsterdam's close) looks stale to the data-quality gate, as a live source would.
        """
        now = self.clock.now()
        out: list[Quote] = []
        for symbol in symbols:
            times = self._times.get(symbol)
            if not times:
                continue
            i = bisect_right(times, now)
            if i:
                out.append(self._quotes[symbol][i - 1])
        return out

    async def stream(self, symbols: Sequence[str] | AbstractSet[str]) -> AsyncIterator[list[Quote]]:
        """Batches of quotes (one batch per tick time, requested symbols only) in time order.

        Starts at the clock's current time (ticks at exactly that time included) and, once the
        ticks run out, moves the clock on to the scenario's end. A set is read as it changes, so
        a caller can follow symbols that watches added while the day plays.
        """
        wanted = symbols if isinstance(symbols, AbstractSet) else set(symbols)
        previous = self.clock.now()
        for when, quotes in self._timeline[bisect_left(self._timeline_times, previous) :]:
            if self._closed:
                return
            batch = [q for q in quotes if q.symbol in wanted]
            if not batch:
                continue
            await self._wait(previous, when)
            previous = when
            yield batch
        end = self.scenario.end.astimezone(UTC)
        if not self._closed and end > previous:
            await self._wait(previous, end)

    async def _wait(self, previous: datetime, when: datetime) -> None:
        if self.speed is not None and when > previous:
            await self._sleep((when - previous).total_seconds() / self.speed)
        # Someone else may have moved the shared clock further already; never move it back.
        if when > self.clock.now():
            if self._advance is not None:
                await self._advance(when)
            else:
                self.clock.set(when)

    async def close(self) -> None:
        self._closed = True

    def news_until(self, when: datetime | None = None) -> list[NewsItem]:
        """The scenario's news published at or before ``when`` (default: now), oldest first."""
        cut = self.clock.now() if when is None else when
        return list(self.scenario.news[: bisect_right(self._news_times, cut)])

    def news_between(self, after: datetime, until: datetime) -> list[NewsItem]:
        """News published in ``(after, until]``, oldest first: what arrived since a last look."""
        lo = bisect_right(self._news_times, after)
        return list(self.scenario.news[lo : bisect_right(self._news_times, until)])


class ReplayFeed:
    """The market loop's view of a recorded day: gated batches, with headlines as published.

    Recorded prices and news share one timeline, so each batch brings the headlines published
    since the last one (live news has its own polling job instead).
    """

    def __init__(self, market: ReplayMarketData, gate: QualityGate | None = None) -> None:
        self.market = market
        self.clock = market.clock
        self.gate = gate or QualityGate()
        self._symbols: set[str] = set()
        # News published before the start is the feed's backlog: all of it is there at once.
        scenario = market.scenario
        first = min([self.clock.now(), *(n.published for n in scenario.news)])
        self._news_seen = first - timedelta(seconds=1)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self._symbols.clear()
        self._symbols.update(symbols)

    async def batches(self) -> AsyncIterator[QuoteBatch]:
        async for quotes in self.market.stream(self._symbols):
            yield self.gate.judge_batch(
                [q.symbol for q in quotes],
                {q.symbol: q for q in quotes},
                now=self.clock.now(),
                expected_interval=REPLAY_TICK_INTERVAL,
                source=SOURCE,
            )

    def news(self) -> list[NewsItem]:
        now = self.clock.now()
        fresh = self.market.news_between(self._news_seen, now)
        self._news_seen = now
        return fresh

    def failures(self) -> int:
        return 0

    async def settled(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        await self.market.close()


class ReplayNewsFeed:
    """Implements the ``NewsFeed`` port: the replay's headlines published so far."""

    def __init__(self, replay: ReplayMarketData) -> None:
        self._replay = replay

    async def fetch(self) -> list[NewsItem]:
        return self._replay.news_until()


def _quotes(scenario: Scenario, symbol: str) -> tuple[Quote, ...]:
    """Every quote the source would give for ``symbol``, in time order.

    Format-2 features shape it: each trading day has its own previous close, ticks inside a
    gap are withheld, bad ticks are merged in as they are, and quotes inside a halt carry
    ``halted`` (a halt that starts between ticks gets a quote of its own at its start).
    """
    ref = scenario.reference[symbol]
    hours = ref.session_hours
    # An overnight regular session (futures) has no single opening print we could name.
    track_open = hours.regular is not None and not hours.regular.wraps
    tz = ZoneInfo(hours.timezone)
    points: list[tuple[datetime, float | None, float | None]] = [
        (t.time.astimezone(UTC), t.price, t.volume) for t in scenario.ticks[symbol]
    ]
    points += [
        (b.time.astimezone(UTC), b.price, None) for b in scenario.bad_ticks if b.symbol == symbol
    ]
    points.sort(key=lambda p: p[0])
    for halt in scenario.halts:
        start = halt.start.astimezone(UTC)
        if halt.symbol != symbol or any(when == start for when, _, _ in points):
            continue
        before = [p for p in points if p[0] < start and _good(p[1])]
        if before:
            points.append((start, before[-1][1], before[-1][2]))
    points.sort(key=lambda p: p[0])
    opens: dict[date, float] = {}
    out: list[Quote] = []
    # Loading checked that every tick has a close: with one close there is nothing to look up.
    single_close = ref.previous_close if len(ref.previous_closes) <= 1 else None
    gaps = any(g.symbol == symbol for g in scenario.gaps)
    halts = any(h.symbol == symbol for h in scenario.halts)
    for when, price, volume in points:
        if gaps and scenario.in_gap(symbol, when):
            continue  # the source was silent
        session = hours.session_at(when)
        open_price = None
        if track_open and session is MarketSession.REGULAR and _good(price):
            assert price is not None
            open_price = opens.setdefault(when.astimezone(tz).date(), price)
        out.append(
            Quote(
                symbol=ref.symbol,
                price=price,
                time=when,
                session=session,
                previous_close=single_close or ref.previous_close_at(when),
                open=open_price,
                day_volume=volume,
                currency=ref.currency,
                exchange=ref.exchange,
                halted=halts and scenario.halted_at(symbol, when),
                source=SOURCE,
            )
        )
    return tuple(out)


def _good(price: float | None) -> bool:
    return price is not None and math.isfinite(price) and price > 0


def _held_quotes(
    scenario: Scenario, quotes: dict[str, tuple[Quote, ...]]
) -> list[tuple[datetime, Quote]]:
    """During a gap the last quote before it is served again every ``GAP_REPEAT``, with its
    old time, as a poller keeps answering: the data-quality gate then sees it age."""
    out: list[tuple[datetime, Quote]] = []
    for gap in scenario.gaps:
        start, end = gap.start.astimezone(UTC), gap.end.astimezone(UTC)
        before = [q for q in quotes.get(gap.symbol, ()) if q.time < start]
        if not before:
            continue
        when = start
        while when < end:
            out.append((when, before[-1]))
            when += GAP_REPEAT
    return out
