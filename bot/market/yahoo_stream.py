"""Supervised Yahoo live stream: exact subscriptions, reconnect with jitter, silence as a fault.

Why not ``yf.AsyncWebSocket.listen()``: when the server closes the socket normally, its
``while True: async for msg in ws`` loop spins without ever awaiting, which freezes the whole
event loop (verified with yfinance 1.7 / websockets 17); after an abnormal close it sleeps 3 s
of wall time and keeps the dead socket. So the connection is owned here, speaking the same
protocol (``{"subscribe": [...]}`` text frames, base64 ``PricingData`` answers) and decoding
with yfinance's own ``pricing_pb2`` message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from yfinance.pricing_pb2 import PricingData

from alerts.models import MarketSession, Quote
from alerts.ports import Clock
from bot.market import sessions
from bot.market.timer import Sleep, real_sleep, sleep_or_set

DEFAULT_STREAM_URL = "wss://streamer.finance.yahoo.com/?version=2"

# PricingData.market_hours as Yahoo sends it; proto3 omits 0, so "absent" means premarket.
_MARKET_HOURS: dict[int, MarketSession] = {
    0: MarketSession.PRE,
    1: MarketSession.REGULAR,
    2: MarketSession.POST,
}


def decode_pricing(b64: str) -> PricingData:
    """base64 text of a ``PricingData`` protobuf -> the message (yfinance's own schema)."""
    msg = PricingData()
    msg.ParseFromString(base64.b64decode(b64, validate=True))
    return msg


def _f32(value: float) -> float:
    """Undo float32 widening (142.62 arrives as 142.6199951171875): Yahoo quotes carry at
    most 7 significant digits, and the REST side sends the exact decimal, so both sources
    must agree on a reference to the last bit for the engine to see the same trading day."""
    if not math.isfinite(value):
        return float("nan")
    return float(f"{value:.7g}")


def _f(value: float) -> float | None:
    # proto3 floats have no presence: 0 means "not sent", never a real price or close.
    if value == 0:
        return None
    return _f32(value)


def quote_from_pricing(msg: PricingData, *, received: datetime) -> Quote | None:
    """A decoded PricingData -> Quote (``source="stream"``); None without a symbol.

    Read straight from the message: ``MessageToDict`` costs more than everything else
    on this path at thousands of messages per second.
    """
    symbol = msg.id
    if not symbol:
        return None
    when = received
    stamp = msg.time
    if stamp:
        try:
            when = datetime.fromtimestamp(stamp / 1000 if stamp > 10**11 else stamp, UTC)
        except (OverflowError, OSError, ValueError):
            when = received
    session = _MARKET_HOURS.get(msg.market_hours)
    if session is None:  # extended-hours or unknown codes: trust the calendar
        session = sessions.session_at(symbol, when)
    price = msg.price
    return Quote(
        symbol=symbol,
        # A zero price is kept as 0.0 so the quality gate reports it rather than "missing".
        price=_f32(price),
        time=when,
        session=session,
        previous_close=_f(msg.previous_close),
        open=_f(msg.open_price),
        day_volume=float(msg.day_volume) if msg.day_volume else None,
        currency=msg.currency or None,
        exchange=msg.exchange or None,
        source="stream",
    )


QuoteHandler = Callable[[list[Quote]], Awaitable[None] | None]
Connect = Callable[[str], Awaitable[ClientConnection]]


async def _default_connect(url: str) -> ClientConnection:
    # Yahoo pings rarely; our own silence watchdog decides when a connection is dead.
    return await connect(url, open_timeout=10, ping_interval=20, ping_timeout=20)


class YahooStream:
    """Keeps one websocket subscribed to exactly ``symbols`` for as long as ``run()`` runs.

    ``expect_traffic()`` says whether some subscribed market is open now; only then does
    silence longer than ``silence_timeout`` count as a fault (close, back off, reconnect,
    resubscribe). ``healthy`` is True from the first message after a (re)connect until a
    fault; the market-data source polls whatever the stream does not cover meanwhile.
    """

    def __init__(
        self,
        url: str = DEFAULT_STREAM_URL,
        *,
        clock: Clock,
        on_quotes: QuoteHandler,
        sleep: Sleep = real_sleep,
        expect_traffic: Callable[[], bool] = lambda: True,
        silence_timeout: float = 30.0,
        heartbeat: float = 15.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        rng: random.Random | None = None,
        connector: Connect = _default_connect,
        on_health: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.url = url
        self.clock = clock
        self.on_quotes = on_quotes
        self.sleep = sleep
        self.expect_traffic = expect_traffic
        self.silence_timeout = silence_timeout
        self.heartbeat = heartbeat
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng or random.Random()
        self.connector = connector
        self.on_health = on_health
        self.symbols: frozenset[str] = frozenset()
        self.healthy = False
        self.counters: Counter[str] = Counter()
        self.last_message_at: datetime | None = None
        self.last_backoff: float = 0.0
        self._ws: ClientConnection | None = None
        self._sent: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self.health_changed = asyncio.Event()  # set on every change; for supervisors and tests
        self._closed = False
        self._failures = 0

    # --- control -----------------------------------------------------------------------
    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Subscribe to exactly these symbols from now on (diffed on the live connection)."""
        new = frozenset(symbols)
        if new != self.symbols:
            self.symbols = new
            self._wake.set()

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    def _set_health(self, healthy: bool, why: str) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            self.health_changed.set()
            self.counters["became_healthy" if healthy else "became_unhealthy"] += 1
            if self.on_health is not None:
                self.on_health(healthy, why)

    # --- supervision -------------------------------------------------------------------
    async def run(self) -> None:
        """Connect while there is something to subscribe; reconnect until ``close()``."""
        while not self._closed:
            if not self.symbols:
                self._set_health(False, "nothing to stream")
                self._wake.clear()
                if not self.symbols:
                    await self._wake.wait()
                continue
            reason = await self._one_connection()
            if self._closed:
                break
            if reason == "idle":
                self._failures = 0
                continue
            self._set_health(False, reason)
            self._failures += 1
            self.counters["faults"] += 1
            self.counters[f"fault:{reason.split(':')[0]}"] += 1
            ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (self._failures - 1))
            self.last_backoff = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
            await self._wait_or_wake(self.last_backoff)
        self._set_health(False, "closed")

    async def _wait_or_wake(self, seconds: float) -> None:
        """Back off, but give up the wait early on close(); symbol changes do not cut it."""
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        closer = asyncio.ensure_future(self._wait_closed())
        try:
            await asyncio.wait({sleeper, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, closer):
                t.cancel()

    async def _wait_closed(self) -> None:
        while not self._closed:
            self._wake.clear()
            await self._wake.wait()

    async def _one_connection(self) -> str:
        """Run one connection to its end; returns why it ended."""
        self.counters["connect_attempts"] += 1
        try:
            ws = await self.connector(self.url)
        except (TimeoutError, OSError, WebSocketException) as exc:
            return f"connect: {type(exc).__name__}"
        self._ws = ws
        self._sent = frozenset()
        self.counters["connects"] += 1
        self.last_message_at = self.clock.now()
        tasks: list[asyncio.Task[str]] = []
        try:
            await self._sync_subscriptions(ws)
            tasks = [
                asyncio.create_task(self._reader(ws)),
                asyncio.create_task(self._watchdog()),
                asyncio.create_task(self._subscriber(ws)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        except ConnectionClosed:
            return "dropped"
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()

    async def _sync_subscriptions(self, ws: ClientConnection) -> None:
        want = self.symbols
        gone = self._sent - want
        if gone:
            await ws.send(json.dumps({"unsubscribe": sorted(gone)}))
        if want != self._sent or not self._sent:
            await ws.send(json.dumps({"subscribe": sorted(want)}))
            self.counters["subscribe_sent"] += 1
        self._sent = want

    async def _subscriber(self, ws: ClientConnection) -> str:
        """Apply symbol changes at once and re-send the subscription as Yahoo expects."""
        while not self._closed:
            self._wake.clear()
            await sleep_or_set(self._wake, self.heartbeat, self.sleep)  # the injected time
            if self._closed:
                return "closed"
            if not self.symbols:
                return "idle"
            try:
                if self.symbols != self._sent:
                    await self._sync_subscriptions(ws)
                else:
                    await ws.send(json.dumps({"subscribe": sorted(self._sent)}))
            except ConnectionClosed:
                return "dropped"
        return "closed"

    async def _watchdog(self) -> str:
        check = max(self.silence_timeout / 4, 0.05)
        while True:
            await self.sleep(check)
            last = self.last_message_at or self.clock.now()
            silent_for = (self.clock.now() - last).total_seconds()
            if silent_for > self.silence_timeout and self.expect_traffic():
                return f"silent: {silent_for:.0f} s in an open session"

    async def _reader(self, ws: ClientConnection) -> str:
        try:
            async for raw in ws:
                now = self.clock.now()
                self.last_message_at = now
                self.counters["messages"] += 1
                quote = self._parse(raw, now)
                if quote is None:
                    continue
                if not self.healthy:
                    self._failures = 0
                    self._set_health(True, "receiving")
                result = self.on_quotes([quote])
                if result is not None:
                    await result
        except ConnectionClosed:
            return "dropped"
        return "dropped"  # a normal close by the server is still a lost stream

    def _parse(self, raw: str | bytes, now: datetime) -> Quote | None:
        try:
            msg = json.loads(raw)
            encoded = msg.get("message") if isinstance(msg, dict) else None
            if not isinstance(encoded, str):
                self.counters["ignored_frames"] += 1
                return None
            return quote_from_pricing(decode_pricing(encoded), received=now)
        except Exception:
            self.counters["decode_errors"] += 1
            return None
