"""A loopback websocket server speaking Yahoo's streamer protocol (base64 PricingData protobuf)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from yfinance.pricing_pb2 import PricingData

# Yahoo's market_hours values in PricingData.
PRE_MARKET = 0
REGULAR_MARKET = 1
POST_MARKET = 2
EXTENDED_HOURS_MARKET = 3


def encode_pricing(
    symbol: str,
    price: float,
    at: datetime,
    *,
    market_hours: int = REGULAR_MARKET,
    previous_close: float | None = None,
    change: float | None = None,
    change_percent: float | None = None,
    day_volume: int | None = None,
    currency: str = "USD",
    exchange: str = "NMS",
    quote_type: int = 8,  # EQUITY
) -> str:
    """The text frame Yahoo sends: ``{"type":"pricing","message": base64(PricingData)}``."""
    msg = PricingData()
    msg.id = symbol
    msg.price = price
    msg.time = int(at.timestamp() * 1000)  # Yahoo sends milliseconds
    msg.currency = currency
    msg.exchange = exchange
    msg.quote_type = quote_type
    msg.market_hours = market_hours
    if previous_close is not None:
        msg.previous_close = previous_close
        if change is None:
            change = price - previous_close
        if change_percent is None and previous_close:
            change_percent = (price / previous_close - 1) * 100
    if change is not None:
        msg.change = change
    if change_percent is not None:
        msg.change_percent = change_percent
    if day_volume is not None:
        msg.day_volume = day_volume
    payload = base64.b64encode(msg.SerializeToString()).decode()
    return json.dumps({"type": "pricing", "message": payload})


class FakeStreamer:
    """Accepts ``{"subscribe": [...]}`` / ``{"unsubscribe": [...]}`` and pushes pricing frames
    to the connections subscribed to a symbol. Can drop every connection or go silent."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._subs: dict[ServerConnection, set[str]] = {}
        self.subscribe_messages: list[list[str]] = []
        self.connections_total = 0
        self.silent = False
        self.refuse = False  # reject new connections (server "down")
        self.sent = 0
        self._changed = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        self._changed = asyncio.Event()
        self._server = await serve(self._handle, "127.0.0.1", port, compression=None)
        return self.url

    @property
    def port(self) -> int:
        assert self._server is not None
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/?version=2"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # --- state -------------------------------------------------------------------------
    @property
    def subscribed(self) -> set[str]:
        out: set[str] = set()
        for subs in self._subs.values():
            out |= subs
        return out

    @property
    def open_connections(self) -> int:
        return len(self._subs)

    async def wait_for(self, predicate: Any, limit: float = 5.0) -> None:
        """Wait (real time, bounded) until ``predicate(self)`` holds; for tests and demos."""

        async def _loop() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_loop(), limit)

    def _notify(self) -> None:
        self._changed.set()

    async def _handle(self, ws: ServerConnection) -> None:
        if self.refuse:
            await ws.close(code=1013, reason="try again later")
            return
        self._subs[ws] = set()
        self.connections_total += 1
        self._notify()
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if isinstance(msg.get("subscribe"), list):
                    syms = [str(s) for s in msg["subscribe"]]
                    self.subscribe_messages.append(syms)
                    self._subs[ws].update(syms)
                if isinstance(msg.get("unsubscribe"), list):
                    self._subs[ws].difference_update(str(s) for s in msg["unsubscribe"])
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            self._subs.pop(ws, None)
            self._notify()

    # --- pushing -----------------------------------------------------------------------
    async def push(self, symbol: str, price: float, at: datetime, **fields: Any) -> int:
        """Send one pricing frame to every connection subscribed to ``symbol``."""
        return await self.push_frame(symbol, encode_pricing(symbol, price, at, **fields))

    async def push_frame(self, symbol: str, frame: str) -> int:
        if self.silent:
            return 0
        count = 0
        for ws, subs in list(self._subs.items()):
            if symbol in subs:
                try:
                    await ws.send(frame)
                    count += 1
                except ConnectionClosed:
                    pass
        self.sent += count
        return count

    async def push_raw(self, text: str) -> int:
        """Send any text (garbage, odd JSON) to every connection."""
        count = 0
        for ws in list(self._subs):
            try:
                await ws.send(text)
                count += 1
            except ConnectionClosed:
                pass
        return count

    async def drop_all(self, *, abrupt: bool = True) -> int:
        """Cut every connection: abruptly (TCP reset, like a network drop) or with a close frame."""
        conns = list(self._subs)
        for ws in conns:
            if abrupt:
                ws.transport.abort()
            else:
                await ws.close(code=1001, reason="going away")
        return len(conns)

    def subscribers_of(self, symbols: Iterable[str]) -> int:
        wanted = set(symbols)
        return sum(1 for subs in self._subs.values() if wanted <= subs)


class ThreadedFakeStreamer:
    """The fake on its own thread and event loop, so a benchmark's client loop is not shared."""

    def __init__(self) -> None:
        self.fake = FakeStreamer()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def _serve_random_walk(port: int, symbols: dict[str, float], rate: float) -> None:
    import random
    from datetime import UTC

    fake = FakeStreamer()
    await fake.start(port)
    print(f"fake Yahoo streamer on {fake.url} (Ctrl-C stops)", flush=True)
    rng = random.Random()
    prices = dict(symbols)
    try:
        while True:
            for sym, prev in symbols.items():
                prices[sym] *= 1 + rng.uniform(-0.002, 0.002)
                await fake.push(sym, prices[sym], datetime.now(UTC), previous_close=prev)
            await asyncio.sleep(1 / rate)
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the fake streamer standalone: a random walk for ``MARKETBOT_YAHOO__STREAM_URL``."""
    import argparse

    parser = argparse.ArgumentParser(description="Loopback fake of Yahoo's price streamer.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--rate", type=float, default=1.0, help="frames per second per symbol")
    parser.add_argument("symbols", nargs="+", metavar="SYM=PREV_CLOSE", help="e.g. NVDA=142.62")
    args = parser.parse_args(argv)
    symbols = {s.partition("=")[0]: float(s.partition("=")[2]) for s in args.symbols}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_random_walk(args.port, symbols, args.rate))


if __name__ == "__main__":
    main()
