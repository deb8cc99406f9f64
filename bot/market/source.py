"""Yahoo market data for the engine: live stream, batched polling for its gaps, idle when closed."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime, timedelta

from alerts.models import MarketSession, NewsItem, Quote
from alerts.ports import Clock, MarketDataError
from alerts.quality import QualityGate, QuoteBatch
from bot.market import sessions
from bot.market.timer import Sleep, real_sleep
from bot.market.yahoo_poll import YahooPoller
from bot.market.yahoo_stream import DEFAULT_STREAM_URL, YahooStream

MAX_IDLE_SLEEP = 6 * 3600.0  # re-check the calendar at least this often while idle


class YahooMarketData:
    """``MarketData`` over Yahoo: implements ``poll``/``stream``/``close`` plus ``batches``.

    - Only symbols whose market is open (premarket and after-hours included) are subscribed or
      polled; with every needed market closed nothing is requested and the loop sleeps until
      the next open on the injected clock (``sleep`` is injectable for simulations).
    - A symbol is polled while the stream does not cover it: stream down/unhealthy, or no
      stream message for it within ``stream_stale_after`` seconds.
    - Every observation goes through the quality gate; batches carry ``unavailable`` reasons
      the engine turns into NoData.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        poller: YahooPoller,
        stream_url: str | None = DEFAULT_STREAM_URL,
        poll_interval: float = 60.0,
        expected_interval: float | None = None,
        stream_stale_after: float = 60.0,
        silence_timeout: float = 30.0,
        sleep: Sleep = real_sleep,
        gate: QualityGate | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.poller = poller
        self.poll_interval = poll_interval
        self.expected_interval = timedelta(seconds=expected_interval or poll_interval)
        self.live_stale_after = timedelta(seconds=stream_stale_after)
        self.sleep = sleep
        self.gate = gate or QualityGate()
        self.symbols: frozenset[str] = frozenset()
        self.counters: Counter[str] = Counter()
        self._queue: asyncio.Queue[QuoteBatch] = asyncio.Queue()
        self._changed = asyncio.Event()
        # Set while the poll loop waits for its next cycle: simulations advance time then.
        self.parked = asyncio.Event()
        self._last_stream: dict[str, datetime] = {}
        self._refs: dict[tuple[str, date], float] = {}
        self._session_cache: dict[str, tuple[datetime, MarketSession, date]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self.live: YahooStream | None = None
        if stream_url:
            self.live = YahooStream(
                stream_url,
                clock=clock,
                on_quotes=self._on_stream_quotes,
                sleep=sleep,
                expect_traffic=self._any_open,
                silence_timeout=silence_timeout,
                rng=rng,
            )

    @classmethod
    def from_settings(
        cls,
        *,
        clock: Clock,
        yahoo_base_url: str | None,
        yahoo_stream_url: str | None,
        poll_interval: float = 60.0,
        timeout: float = 10.0,
        stream_enabled: bool = True,
        sleep: Sleep = real_sleep,
    ) -> YahooMarketData:
        poller = YahooPoller(clock=clock, base_url=yahoo_base_url, timeout=timeout)
        return cls(
            clock=clock,
            poller=poller,
            stream_url=(yahoo_stream_url or DEFAULT_STREAM_URL) if stream_enabled else None,
            poll_interval=poll_interval,
            sleep=sleep,
        )

    # --- watches -----------------------------------------------------------------------
    def set_symbols(self, symbols: Iterable[str]) -> None:
        """The symbols watches need now; takes effect at once (subscribe/unsubscribe, wake)."""
        new = frozenset(symbols)
        if new != self.symbols:
            self.symbols = new
            self._changed.set()

    def _open_symbols(self, now: datetime) -> frozenset[str]:
        return frozenset(s for s in self.symbols if sessions.is_open(s, now))

    def _any_open(self) -> bool:
        return bool(self._open_symbols(self.clock.now()))

    # --- MarketData port ---------------------------------------------------------------
    async def poll(self, symbols: Sequence[str]) -> list[Quote]:
        batch = await self.poll_batch(symbols)
        if not batch.quotes and batch.unavailable and self.poller.backoff.failures:
            raise MarketDataError(next(iter(batch.unavailable.values())))
        return list(batch.quotes)

    async def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Quote]]:
        """Port-compatible stream: yields only the gated quotes of each batch."""
        async for batch in self.batches(symbols):
            if batch.quotes:
                yield list(batch.quotes)

    async def close(self) -> None:
        for t in [*self._tasks, *self._backfills.values()]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._backfills.values(), return_exceptions=True)
        self._tasks.clear()
        self._backfills.clear()
        if self.live is not None:
            await self.live.close()
        await asyncio.to_thread(self.poller.close)

    # --- batches -----------------------------------------------------------------------
    async def poll_batch(self, symbols: Sequence[str]) -> QuoteBatch:
        """One batched fetch of ``symbols`` (<= 1 request per 50), judged by the gate."""
        wanted = list(dict.fromkeys(symbols))
        result = await self.poller.fetch_quotes(wanted)
        self.counters["poll_cycles"] += 1
        self.counters["poll_requests"] += result.requests
        now = self.clock.now()
        for q in result.quotes.values():
            self._remember_reference(q, now)
        sess = {s: sessions.session_at(s, now) for s in wanted}
        batch = self.gate.judge_batch(
            wanted,
            result.quotes,
            now=now,
            expected_interval=self.expected_interval,
            sessions=sess,
            source="poll",
        )
        # A transport failure explains the gap better than the gate's "no quote".
        unavailable = dict(batch.unavailable)
        for sym, why in result.failed.items():
            unavailable[sym] = f"nodata: {why}"
        return QuoteBatch(at=now, quotes=batch.quotes, unavailable=unavailable, source="poll")

    async def batches(self, symbols: Sequence[str] | None = None) -> AsyncIterator[QuoteBatch]:
        """Run the stream and the fallback poller; yield every batch for the engine."""
        if symbols is not None:
            self.set_symbols(symbols)
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._poll_loop()))
            if self.live is not None:
                self._tasks.append(asyncio.create_task(self.live.run()))
        try:
            while True:
                yield await self._queue.get()
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    def news(self) -> list[NewsItem]:
        """Live headlines come from the news feeds' own job, not with the prices."""
        return []

    def failures(self) -> int:
        """Consecutive failed polls (0 while the source answers)."""
        return self.poller.backoff.failures

    async def settled(self, limit: float = 60.0) -> None:
        """Wait (bounded, real time) until the poll loop is parked and every batch was taken.

        Tests on a simulated clock use it between steps: a woken poll does real HTTP to the
        loopback fake, which must finish before simulated time moves on. The bound only says
        when a hung poll fails the test: on a CI machine at load 45 (2 cores) one loopback
        poll took longer than the 10 s it used to be.
        """
        if not self._tasks:
            return
        async with asyncio.timeout(limit):
            while True:
                await self.parked.wait()
                for _ in range(10):
                    await asyncio.sleep(0)
                if self.parked.is_set() and not self._changed.is_set() and self._queue.empty():
                    return

    async def backfilled(self) -> None:
        """Wait until the previous-close lookups started so far have ended (each runs on a
        worker thread: there is no simulated time to move for them)."""
        await asyncio.gather(*self._backfills.values(), return_exceptions=True)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = dict(self.counters)
        out["http_requests"] = self.poller.requests
        for k, v in self.poller.errors.items():
            out[f"poll_error:{k}"] = v
        if self.live is not None:
            for k, v in self.live.counters.items():
                out[f"stream:{k}"] = v
        return out

    # --- stream side -------------------------------------------------------------------
    async def _on_stream_quotes(self, quotes: list[Quote]) -> None:
        now = self.clock.now()
        good: list[Quote] = []
        bad: dict[str, str] = {}
        for q in quotes:
            if q.symbol not in self.symbols:
                continue  # a late frame for a symbol just unsubscribed
            self._last_stream[q.symbol] = now
            q = self._with_reference(q, now)
            verdict = self.gate.check(
                q.symbol,
                q,
                now=now,
                expected_interval=self.expected_interval,
                session=self._session_now(q.symbol, now),
            )
            if verdict.ok:
                good.append(q)
            else:
                bad[q.symbol] = f"{verdict.verdict.value}: {verdict.reason}"
        self.counters["stream_quotes"] += len(quotes)
        if good or bad:
            self._queue.put_nowait(
                QuoteBatch(at=now, quotes=tuple(good), unavailable=bad, source="stream")
            )

    def _calendar_now(self, symbol: str, now: datetime) -> tuple[MarketSession, date]:
        """Session and trading day, memoised per minute: every boundary is on a whole minute."""
        minute = now.replace(second=0, microsecond=0)
        hit = self._session_cache.get(symbol)
        if hit is not None and hit[0] == minute:
            return hit[1], hit[2]
        session = sessions.session_at(symbol, now)
        day = sessions.trading_day(symbol, now)
        self._session_cache[symbol] = (minute, session, day)
        return session, day

    def _session_now(self, symbol: str, now: datetime) -> MarketSession:
        return self._calendar_now(symbol, now)[0]

    def _remember_reference(self, q: Quote, now: datetime) -> None:
        if q.previous_close is not None and q.previous_close > 0:
            day = self._calendar_now(q.symbol, now)[1]
            self._refs[(q.symbol, day)] = q.previous_close

    def _with_reference(self, q: Quote, now: datetime) -> Quote:
        """One reference per symbol and trading day, whichever source delivered it first.

        Streams often omit previous_close (filled from polls or the chart backfill), and the
        engine treats any change of reference as a new trading day, so a value that agrees
        with the known one up to float32 precision is replaced by the known one.
        """
        day = self._calendar_now(q.symbol, now)[1]
        known = self._refs.get((q.symbol, day))
        pc = q.previous_close
        if pc is not None and pc > 0:
            if known is None or abs(pc - known) > 1e-6 * known:
                self._refs[(q.symbol, day)] = pc
                return q
        elif known is None:
            self._start_backfill(q.symbol, day)
            return q
        if pc == known:
            return q
        return Quote(
            symbol=q.symbol,
            price=q.price,
            time=q.time,
            session=q.session,
            previous_close=known,
            open=q.open,
            day_volume=q.day_volume,
            currency=q.currency,
            exchange=q.exchange,
            halted=q.halted,
            source=q.source,
        )

    def _start_backfill(self, symbol: str, day: date) -> None:
        if symbol in self._backfills and not self._backfills[symbol].done():
            return

        async def fill() -> None:
            close = await self.poller.previous_close(symbol, day)
            self.counters["backfills"] += 1
            if close is not None:
                self._refs[(symbol, day)] = close

        self._backfills[symbol] = asyncio.create_task(fill())

    # --- poll side ---------------------------------------------------------------------
    def _uncovered(self, open_syms: frozenset[str], now: datetime) -> list[str]:
        live = self.live
        if live is None or not live.healthy:
            return sorted(open_syms)
        out = []
        for s in sorted(open_syms):
            seen = self._last_stream.get(s)
            if seen is None or now - seen > self.live_stale_after:
                out.append(s)
        return out

    async def _poll_loop(self) -> None:
        while True:
            # Cleared here, not in _wait: a watch change during a poll must still wake us.
            self._changed.clear()
            now = self.clock.now()
            open_syms = self._open_symbols(now)
            if self.live is not None:
                self.live.set_symbols(open_syms)
            if not open_syms:
                await self._idle(now)
                continue
            todo = self._uncovered(open_syms, now)
            if todo:
                try:
                    batch = await self.poll_batch(todo)
                except Exception as exc:  # never let one bad cycle kill the loop
                    self.counters["poll_loop_errors"] += 1
                    batch = QuoteBatch(
                        at=now,
                        unavailable={s: f"nodata: {type(exc).__name__}" for s in todo},
                    )
                self._queue.put_nowait(batch)
            wait = max(self.poll_interval, self.poller.backoff.remaining())
            await self._wait(wait)

    async def _idle(self, now: datetime) -> None:
        """Every needed market is closed: no requests, no subscriptions, one timer."""
        self.counters["idle_periods"] += 1
        if not self.symbols:
            await self._wait(None)
            return
        wake = min(sessions.next_open(s, now) for s in self.symbols)
        seconds = min(MAX_IDLE_SLEEP, max(0.0, (wake - now).total_seconds()))
        await self._wait(seconds)

    async def _wait(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: until the watches change), cut short by a watch change."""
        changed = asyncio.ensure_future(self._changed.wait())
        waiters: set[asyncio.Future[object]] = {changed}  # type: ignore[arg-type]
        sleeper = None
        if seconds is not None:
            sleeper = asyncio.ensure_future(self.sleep(seconds))
            waiters.add(sleeper)  # type: ignore[arg-type]
        try:
            await asyncio.sleep(0)  # let the timer register before announcing we are parked
            self.parked.set()
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.parked.clear()
            for w in waiters:
                w.cancel()
            # gather, not `suppress(CancelledError): await w`: a stop that cancels this task
            # while it puts its waiters away must not be swallowed as a waiter's own cancel.
            await asyncio.gather(*waiters, return_exceptions=True)
