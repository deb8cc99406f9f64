"""Digest build for a channel watching 50 symbols, chart included, against the build without it.

The whole scheduled path short of the network: watches and baskets read from a SQLite store,
quotes and 300 stored headlines from the market view, attribution, composition, and the PNG
bar chart (matplotlib). Target: under one second. The baseline, measured in the same run, is
the same digest without its chart; the first build (matplotlib's import included) is shown
apart.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from alerts.engine import Engine
from alerts.models import MarketSession, NewsItem, Quote
from alerts.ports import ManualClock
from bot.pipeline import Pipeline
from bot.store import SqlStore

ROUNDS = 15
SYMBOLS = 50
HEADLINES = 300
TARGET_SECONDS = 1.0
CHANNEL = "slack:CBENCH"
MONDAY = date(2025, 1, 27)
NOW = datetime(2025, 1, 27, 13, 0, tzinfo=UTC)  # 08:00 ET


def _setup(tmp: Path) -> tuple[SqlStore, Pipeline]:
    store = SqlStore(f"sqlite:///{tmp / 'bench.db'}")
    store.upgrade()
    clock = ManualClock(NOW)
    pipeline = Pipeline(store, Engine(), [], clock, charts=True)
    names = [f"S{i:02d}" for i in range(SYMBOLS)]
    for name in names:
        store.add_watch(CHANNEL, name, "drop 5%", now=NOW)
    store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=clock_time(8)), NOW)
    pipeline.load()
    quotes = [
        Quote(
            name,
            100.0 * (1 + (i - 25) / 200),
            NOW - timedelta(minutes=1),
            MarketSession.PRE,
            previous_close=100.0,
        )
        for i, name in enumerate(names)
    ]
    quotes += [
        Quote(s, p * 0.97, NOW, MarketSession.PRE, previous_close=p)
        for s, p in (("ES=F", 6100.0), ("NQ=F", 21900.0), ("YM=F", 44600.0), ("^VIX", 15.0))
    ]
    pipeline.ingest_quotes(quotes)
    pipeline.ingest_news(
        NewsItem(
            key=f"n{i}",
            title=f"Company {names[i % SYMBOLS]} falls as chip worries spread, story {i}",
            published=NOW - timedelta(minutes=5 * i),
            symbols=(names[i % SYMBOLS],),
        )
        for i in range(HEADLINES)
    )
    return store, pipeline


def _median(work: Callable[[], object], rounds: int = ROUNDS) -> tuple[float, float]:
    """Median wall and CPU seconds. CPU time is what the build costs; wall time also counts
    waiting for a core, which on a shared machine can be most of it."""
    wall, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="marketbot-bench-digest-") as tmp:
        store, pipeline = _setup(Path(tmp))
        digests = pipeline.digests
        try:
            started = time.perf_counter()
            first = digests.build(CHANNEL, MONDAY)
            image = digests.chart(first)
            cold = time.perf_counter() - started
            assert image is not None
            assert len(first.alerts) == SYMBOLS, len(first.alerts)

            baseline = _median(lambda: digests.build(CHANNEL, MONDAY))
            full = _median(lambda: digests.chart(digests.build(CHANNEL, MONDAY)))
        finally:
            store.close()
    (base_wall, base_cpu), (full_wall, full_cpu) = baseline, full
    load = os.getloadavg()[0]
    met = full_cpu < TARGET_SECONDS
    print(f"medians of {ROUNDS}; load average {load:.1f} on {os.cpu_count()} cores")
    print(f"no chart (baseline):  {base_wall * 1000:7.1f} ms wall {base_cpu * 1000:7.1f} ms CPU")
    print(f"chart included:       {full_wall * 1000:7.1f} ms wall {full_cpu * 1000:7.1f} ms CPU")
    print(f"first, with import:   {cold * 1000:7.1f} ms wall; PNG {len(image) // 1024} KiB")
    print(
        f"ratio chart/no chart: {full_wall / base_wall:7.1f}x wall {full_cpu / base_cpu:7.1f}x CPU"
    )
    print(f"target < {TARGET_SECONDS:.0f} s of CPU: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
