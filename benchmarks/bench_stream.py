"""Stream push -> rule evaluation done, p50/p99, 500 symbols at 5,000 messages/s in total.

The fake streamer runs on its own thread and event loop; the client side is the real
pipeline: YahooMarketData (supervised stream, quality gate) feeding alerts.engine.Engine.
Baseline in the same run: a bare websockets client that only json-decodes each frame.
Each frame carries its sequence number in ``day_volume`` so latency is measured per message.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime

import yfinance as yf
from websockets.asyncio.client import connect

from alerts.engine import Engine
from alerts.models import Watch
from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.fakes.yahoo_streamer import REGULAR_MARKET, ThreadedFakeStreamer, encode_pricing
from bot.market.source import YahooMarketData
from bot.market.yahoo_poll import YahooPoller

SYMBOLS = [f"SYM{i:03d}" for i in range(500)]
RATE = 5000  # messages per second, all symbols together
SECONDS = 8.0
NOW = datetime(2025, 1, 27, 15, 0, tzinfo=UTC)  # 10:00 ET, regular session
TICK = 0.01  # the fake sends RATE * TICK frames every TICK seconds


class Sender:
    """Pushes frames at the target rate from the fake's loop; records each send time."""

    def __init__(self, streamer: ThreadedFakeStreamer) -> None:
        self.streamer = streamer
        self.sent_at: dict[int, float] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(7)
        self.prices = {s: 100.0 for s in SYMBOLS}

    async def run(self, seconds: float) -> int:
        fake = self.streamer.fake
        per_tick = int(RATE * TICK)
        seq = 0
        start = time.perf_counter()
        next_tick = start
        while time.perf_counter() - start < seconds:
            for _ in range(per_tick):
                sym = SYMBOLS[seq % len(SYMBOLS)]
                self.prices[sym] *= 1 + self.rng.uniform(-0.001, 0.001)
                frame = encode_pricing(
                    sym,
                    self.prices[sym],
                    NOW,
                    market_hours=REGULAR_MARKET,
                    previous_close=100.0,
                    day_volume=seq,
                )
                with self.lock:
                    self.sent_at[seq] = time.perf_counter()
                await fake.push_frame(sym, frame)
                seq += 1
            next_tick += TICK
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        return seq


def percentiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=100)
    return qs[49] * 1000, qs[98] * 1000


async def measure_baseline(streamer: ThreadedFakeStreamer) -> tuple[list[float], int]:
    """Bare client: receive and json-decode, nothing else."""
    import json

    sender = Sender(streamer)
    latencies: list[float] = []
    async with connect(streamer.fake.url, compression=None) as ws:
        await ws.send(json.dumps({"subscribe": SYMBOLS}))
        await asyncio.to_thread(
            streamer.call, streamer.fake.wait_for(lambda f: f.subscribed == set(SYMBOLS))
        )
        job = asyncio.run_coroutine_threadsafe(sender.run(SECONDS), streamer.loop)
        received = 0
        while not job.done() or received < len(sender.sent_at):
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                break
            json.loads(raw)
            received += 1
            with sender.lock:
                sent = sender.sent_at.get(received - 1)
            if sent is not None:
                latencies.append(time.perf_counter() - sent)
        total = job.result()
    return latencies, total


async def measure_pipeline(streamer: ThreadedFakeStreamer, rest: FakeYahoo) -> dict[str, float]:
    clock = ManualClock(NOW)  # frozen inside the regular session: the gate sees fresh quotes
    poller = YahooPoller(clock=clock, base_url=rest.base_url)
    md = YahooMarketData(
        clock=clock,
        poller=poller,
        stream_url=streamer.fake.url,
        poll_interval=3600,  # one initial poll; the stream carries the rest
        stream_stale_after=3600,
    )
    engine = Engine()
    engine.load(
        [Watch(i, "bench:default", s, "drop 10%", NOW) for i, s in enumerate(SYMBOLS, 1)], []
    )
    sender = Sender(streamer)
    latencies: list[float] = []
    evaluated = 0

    async def consume() -> None:
        nonlocal evaluated
        async for batch in md.batches(SYMBOLS):
            engine.on_quotes(batch.quotes, clock.now())
            done = time.perf_counter()
            if batch.source != "stream":
                continue
            for q in batch.quotes:
                evaluated += 1
                with sender.lock:
                    sent = sender.sent_at.get(int(q.day_volume or -1))
                if sent is not None:
                    latencies.append(done - sent)

    task = asyncio.create_task(consume())
    await asyncio.to_thread(
        streamer.call,
        streamer.fake.wait_for(lambda f: f.subscribed == set(SYMBOLS), 10),
    )
    cpu0 = time.process_time()
    job = asyncio.run_coroutine_threadsafe(sender.run(SECONDS), streamer.loop)
    total = await asyncio.wrap_future(job)
    await asyncio.sleep(1.0)  # let the last frames through the pipeline
    cpu = time.process_time() - cpu0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await md.close()
    p50, p99 = percentiles(latencies)
    return {
        "sent": total,
        "evaluated": evaluated,
        "p50": p50,
        "p99": p99,
        "max": max(latencies) * 1000,
        "cpu": cpu,
        "decode_errors": (md.live.counters["decode_errors"] if md.live else 0),
    }


def main() -> None:
    warnings.filterwarnings("ignore")
    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yf-bench-"))
    streamer = ThreadedFakeStreamer()
    streamer.start()
    with FakeYahoo() as rest:
        for s in SYMBOLS:
            rest.set_quote(s, price=100.0, previous_close=100.0, at=NOW)
        base, base_total = asyncio.run(measure_baseline(streamer))
        ours = asyncio.run(measure_pipeline(streamer, rest))
    streamer.stop()
    b50, b99 = percentiles(base)
    print(f"load: {len(SYMBOLS)} symbols, {RATE} msg/s for {SECONDS:.0f} s at the fake streamer")
    print(
        f"baseline (bare websocket + json): {len(base)}/{base_total} msgs, "
        f"p50 {b50:6.2f} ms  p99 {b99:6.2f} ms"
    )
    print(
        f"marketbot (stream+gate+Engine):   {ours['evaluated']:.0f}/{ours['sent']:.0f} msgs, "
        f"p50 {ours['p50']:6.2f} ms  p99 {ours['p99']:6.2f} ms  max {ours['max']:.1f} ms"
    )
    print(f"client+fake CPU during the run: {ours['cpu']:.1f} s for {SECONDS:.0f} s of traffic")
    print(
        f"ratio p99 marketbot/baseline: {ours['p99'] / b99:.1f}x; "
        f"target p99 < 50 ms: {'met' if ours['p99'] < 50 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
