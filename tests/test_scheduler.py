"""The scheduler runs on the injected clock: simulated time moves, jobs run at their own times."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from alerts.ports import ManualClock
from bot.scheduler import JobScheduler

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)


def _recorder(clock: ManualClock, log: list[datetime]) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        log.append(clock.now())

    return job


async def test_an_interval_job_runs_at_each_of_its_times_as_simulated_time_passes() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    runs: list[datetime] = []
    scheduler.every("tick", timedelta(seconds=30), _recorder(clock, runs))
    await scheduler.advance(timedelta(seconds=95))
    assert runs == [T0 + timedelta(seconds=s) for s in (0, 30, 60, 90)]
    assert clock.now() == T0 + timedelta(seconds=95)
    assert scheduler.next_run_time("tick") == T0 + timedelta(seconds=120)


async def test_the_daily_job_keeps_local_time_across_dst_on_simulated_days() -> None:
    # Thursday 2025-03-06 to Tuesday 03-11; DST began on Sunday 03-09.
    clock = ManualClock(datetime(2025, 3, 6, 0, 0, tzinfo=UTC))
    scheduler = JobScheduler(clock=clock, timezone="America/New_York")
    runs: list[datetime] = []
    scheduler.daily("digest:x", 8, 0, _recorder(clock, runs), timezone="America/New_York")
    await scheduler.advance(timedelta(days=5))
    assert runs == [
        datetime(2025, 3, 6, 13, 0, tzinfo=UTC),  # 08:00 EST
        datetime(2025, 3, 7, 13, 0, tzinfo=UTC),
        datetime(2025, 3, 10, 12, 0, tzinfo=UTC),  # 08:00 EDT, the weekend skipped
    ]


async def test_once_collapses_wake_ups_into_the_earliest_and_runs_once() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    runs: list[datetime] = []
    job = _recorder(clock, runs)
    scheduler.once("wake", T0 + timedelta(seconds=5), job)
    scheduler.once("wake", T0 + timedelta(seconds=2), job)
    scheduler.once("wake", T0 + timedelta(seconds=9), job)
    await scheduler.advance(timedelta(minutes=1))
    assert runs == [T0 + timedelta(seconds=2)]
    assert scheduler.job_ids() == []


async def test_sleep_ends_when_simulated_time_reaches_it() -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    woke: list[datetime] = []

    async def sleeper() -> None:
        await scheduler.sleep(90)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await scheduler.advance(timedelta(seconds=60))
    assert woke == []
    await scheduler.advance(timedelta(seconds=60))
    await task
    assert woke == [T0 + timedelta(seconds=90)]


async def test_a_failing_job_is_logged_and_runs_again_next_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    calls: list[datetime] = []

    async def flaky() -> None:
        calls.append(clock.now())
        if len(calls) == 1:
            raise RuntimeError("database away")

    scheduler.every("flaky", timedelta(seconds=10), flaky)
    await scheduler.advance(timedelta(seconds=10))
    assert len(calls) == 2
    assert any("job flaky failed" in r.getMessage() for r in caplog.records)


async def test_a_started_scheduler_runs_what_is_due_when_the_clock_is_moved() -> None:
    # No advance_to: a plain clock move wakes the loop; missed runs coalesce into one.
    clock = ManualClock(T0)
    scheduler = JobScheduler(clock=clock)
    runs: list[datetime] = []
    scheduler.every("sync", timedelta(seconds=30), _recorder(clock, runs), start_now=False)
    scheduler.start()
    try:
        await scheduler.idle()
        assert runs == []
        clock.advance(timedelta(minutes=10))
        await scheduler.idle()
        assert runs == [T0 + timedelta(minutes=10)]
        assert scheduler.next_run_time("sync") == T0 + timedelta(minutes=10, seconds=30)
    finally:
        scheduler.shutdown()


async def test_on_the_system_clock_a_job_added_later_runs_without_waiting_for_a_round() -> None:
    scheduler = JobScheduler()  # the system clock: the loop waits on wall time
    done = asyncio.Event()

    async def job() -> None:
        done.set()

    scheduler.start()
    try:
        scheduler.once("now", scheduler.clock.now(), job)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        scheduler.shutdown()
