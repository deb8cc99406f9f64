"""PostgreSQL outbox throughput: rows/s drained by 1 and by 3 `marketbot worker`s, and the ratio.

Each run gets a fresh database holding the same backlog (30 channels; rows spread evenly) and
real ``bot.worker.Worker``s delivering into a platform that accepts at once: the figure is the
queue's own throughput (claim, render, confirm), not a chat platform's rate limit. The
baseline is 1 worker, measured in the same run.

Two ways to run the workers, both printed:

- processes (what an operator runs: one ``marketbot worker`` per process): each worker in a
  spawned process of its own; sends are recorded per process and checked together afterwards
  (every row once, no two sends to one channel overlapping in time);
- threads (``bot.fakes.outbox_load.drain``, as the 10,000-row test runs them): each worker in a
  thread with its own event loop and connections, in one interpreter. They share one GIL, so
  3 of them can use at most one core of Python between them; the CPU line says how close the
  run came to that.

Needs MARKETBOT_TEST_POSTGRES_URL (skipped without it); MARKETBOT_BENCH_OUTBOX_ROWS sets the
backlog (default 600).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

from bot.fakes.outbox_load import RecordingPlatform, drain, fill_outbox
from bot.fakes.pg_database import fresh_database
from bot.settings import Settings
from bot.store import SqlStore

CHANNELS = 30
ROWS = int(os.environ.get("MARKETBOT_BENCH_OUTBOX_ROWS", "600"))


@dataclass(frozen=True)
class Run:
    mode: str
    workers: int
    rows: int
    seconds: float
    cpu: float  # CPU seconds of the worker code while draining (all its threads or processes)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_threads(admin_url: str, workers: int) -> Run:
    with fresh_database(admin_url, prefix="marketbot_bench") as url:
        store = SqlStore(url)
        try:
            store.upgrade()
            rows = fill_outbox(store, channels=CHANNELS, per_channel=max(1, ROWS // CHANNELS))
            platform = RecordingPlatform()
            settings = Settings.model_validate({"database_url": url, "console": False})
            cpu = _cpu_self()
            report = drain(settings, platform, workers=workers, expected=rows, timeout=600)
            cpu = _cpu_self() - cpu  # includes start and stop: an upper bound for the drain
            keys = [key for _, _, key in platform.sent]
            if len(keys) != rows or len(set(keys)) != rows or platform.overlaps:
                raise SystemExit(
                    f"{workers} workers: {len(keys)} sent, {len(set(keys))} distinct of {rows},"
                    f" {platform.overlaps} overlapping sends"
                )
            return Run("threads", workers, report.rows, report.seconds, cpu)
        finally:
            store.close()


# -- one worker per process ----------------------------------------------------------------


class _TimedPlatform:
    """Accepts at once; notes (channel, key, began, ended) per alert, for the parent to check."""

    name = "slack"

    def __init__(self, counter: Any) -> None:
        self.sent: list[tuple[str, str, float, float]] = []
        self.counter = counter  # alerts sent by every process, for the parent to watch
        self._ids = 0

    def handles(self, channel: str) -> bool:
        return channel.startswith("slack:")

    async def _deliver(self, message: Any) -> Any:
        from alerts.ports import MessageRef

        began = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
        await asyncio.sleep(0)  # a real send yields here
        ended = time.monotonic()
        self._ids += 1
        for alert in message.alerts:
            self.sent.append((message.channel, alert.key, began, ended))
        with self.counter.get_lock():
            self.counter.value += len(message.alerts)
        return MessageRef(channel=message.channel, message_id=f"{os.getpid()}-{self._ids}")

    async def send(self, message: Any, *, idempotency_key: str) -> Any:
        return await self._deliver(message)

    async def edit(self, ref: Any, message: Any) -> Any:
        await self._deliver(message)
        return ref


def _worker_process(
    url: str, name: str, ready: Any, go: Any, done: Any, results: Any, counter: Any
) -> None:
    from bot.worker import Worker

    async def main() -> None:
        platform = _TimedPlatform(counter)
        settings = Settings.model_validate({"database_url": url, "console": False})
        worker = Worker(settings, platforms=[platform], owner=name)
        await worker.connect()
        ready.wait()
        go.wait()
        cpu = _cpu_self()
        worker.begin()
        await asyncio.to_thread(done.wait)
        cpu = _cpu_self() - cpu
        await worker.stop()
        results.put((name, cpu, platform.sent))

    asyncio.run(main())


def measure_processes(admin_url: str, workers: int) -> Run:
    ctx = multiprocessing.get_context("spawn")
    with fresh_database(admin_url, prefix="marketbot_bench") as url:
        store = SqlStore(url)
        try:
            store.upgrade()
            rows = fill_outbox(store, channels=CHANNELS, per_channel=max(1, ROWS // CHANNELS))
            ready, go, done = ctx.Barrier(workers + 1), ctx.Event(), ctx.Event()
            results = ctx.Queue()
            counter = ctx.Value("i", 0)
            procs = [
                ctx.Process(
                    target=_worker_process,
                    args=(url, f"worker-{i}", ready, go, done, results, counter),
                    daemon=True,
                )
                for i in range(workers)
            ]
            for proc in procs:
                proc.start()
            ready.wait(timeout=120)  # every worker connected: start them together
            go.set()
            began = time.perf_counter()
            deadline = began + 600
            # A shared counter, not a look at the outbox: no load of its own on the database.
            while counter.value < rows and time.perf_counter() < deadline:
                time.sleep(0.01)
            seconds = time.perf_counter() - began
            done.set()
            reports = [results.get(timeout=60) for _ in procs]
            for proc in procs:
                proc.join(timeout=30)
        finally:
            store.close()
    sent = [entry for _, _, entries in reports for entry in entries]
    keys = [key for _, key, _, _ in sent]
    by_channel: dict[str, list[tuple[float, float]]] = {}
    for channel, _, start, end in sent:
        by_channel.setdefault(channel, []).append((start, end))
    overlaps = sum(
        1
        for spans in by_channel.values()
        for earlier, later in zip(sorted(spans), sorted(spans)[1:], strict=False)
        if later[0] < earlier[1]
    )
    if len(keys) != rows or len(set(keys)) != rows or overlaps:
        raise SystemExit(
            f"{workers} worker processes: {len(keys)} sent, {len(set(keys))} distinct of"
            f" {rows}, {overlaps} overlapping sends"
        )
    return Run("processes", workers, rows, seconds, sum(cpu for _, cpu, _ in reports))


def main() -> int:
    admin_url = os.environ.get("MARKETBOT_TEST_POSTGRES_URL")
    if not admin_url:
        print("pg outbox: skipped, MARKETBOT_TEST_POSTGRES_URL is not set")
        return 0
    print(f"pg outbox, {ROWS} rows over {CHANNELS} channels, each sent once, in channel order")
    print(f"  load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    for measure in (measure_processes, measure_threads):
        one = measure(admin_url, 1)
        three = measure(admin_url, 3)
        print(f"  {one.mode}:")
        for run in (one, three):
            label = f"{run.workers} worker{'s' if run.workers > 1 else ' '}"
            print(
                f"    {label}: {run.rows_per_second:8.1f} rows/s ({run.seconds:.1f} s),"
                f" worker CPU {run.cpu:.1f} s = {run.cpu / run.seconds:.2f} cores"
            )
        print(f"    ratio 3 vs 1 worker: {three.rows_per_second / one.rows_per_second:.2f}x")
    print(f"  load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
