"""Scheduled work on the injected Clock: jobs by stable id, their times from APScheduler triggers.

The one module that imports APScheduler. What APScheduler 3.11 does well is trigger arithmetic:
``CronTrigger``/``IntervalTrigger``/``DateTrigger.get_next_fire_time(previous, now)`` is public,
pure given its two arguments, and knows time zones and DST. Its schedulers are not usable on a
simulated clock: ``BaseScheduler._process_jobs``, ``add_job`` and ``reschedule_job`` read
``datetime.now()`` themselves, the asyncio scheduler waits with ``loop.call_later`` (wall
time), and the executors' misfire check compares each run time with the wall clock, so a replay
of 2025-01-27 would see every run as "missed". Injecting a clock there means patching its
internals. So this module keeps its own small job table and loop, and asks each job's trigger
when it fires next, given the clock's time:

- On a ``SystemClock`` the loop sleeps until the next job is due (or a job is added).
- On a ``ManualClock`` (tests, replays) it never waits on wall time: whatever is due runs as
  soon as the clock is moved or a job is added, and :meth:`JobScheduler.advance_to` moves the
  clock through every due time in order, so a test advances simulated time and sees the effect.

Jobs live in memory under deterministic ids; the source of truth is our own tables, so a
restart re-adds the same jobs instead of unpickling stale ones from a shared job store.
``sleep`` gives market sources the same time: a wait that ends when simulated time passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from alerts.ports import Clock, ManualClock, SystemClock

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]

# A wall-clock loop re-checks at least this often, so a clock that jumped (suspend, NTP) or a
# job added from another thread is never waited past for long.
MAX_WALL_WAIT = 60.0


@dataclass
class ScheduledJob:
    job_id: str
    trigger: BaseTrigger
    run: Job
    next_run: datetime | None
    seq: int
    running: bool = field(default=False)


class JobScheduler:
    """Runs jobs when their trigger says, on ``clock``'s time (see the module docstring)."""

    def __init__(self, timezone: str = "UTC", *, clock: Clock | None = None) -> None:
        self.timezone = timezone
        self.clock: Clock = clock or SystemClock()
        self.simulated = isinstance(self.clock, ManualClock)
        self._jobs: dict[str, ScheduledJob] = {}
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.runs = 0  # job runs so far, for tests and metrics
        if isinstance(self.clock, ManualClock):
            self.clock.subscribe(lambda _: self._changed.set())

    # -- registering ---------------------------------------------------------------------

    def every(self, job_id: str, interval: timedelta, job: Job, *, start_now: bool = True) -> None:
        """Run ``job`` every ``interval``; a run still going when the next is due is skipped."""
        now = self.clock.now()
        # IntervalTrigger's default start is wall time + interval: give it the clock's time.
        trigger = IntervalTrigger(seconds=interval.total_seconds(), start_date=now + interval)
        self._add(job_id, trigger, job, first=now if start_now else None)

    def daily(
        self, job_id: str, hour: int, minute: int, job: Job, *, timezone: str, days: str = "mon-fri"
    ) -> None:
        """Run ``job`` at HH:MM local time on ``days`` (DST-safe: the trigger carries the zone)."""
        self._add(job_id, cron_trigger(hour, minute, timezone=timezone, days=days), job)

    def once(self, job_id: str, when: datetime, job: Job) -> None:
        """Run ``job`` once at ``when`` (at once if that has passed); an earlier one is kept.

        Re-adding the same id before it ran keeps whichever time is earlier: many "wake up at"
        requests for one job collapse into one run at the first of them.
        """
        existing = self._jobs.get(job_id)
        if existing is not None and existing.next_run is not None and existing.next_run <= when:
            return
        self._add(job_id, DateTrigger(run_date=when), job)

    def _add(
        self, job_id: str, trigger: BaseTrigger, job: Job, first: datetime | None = None
    ) -> None:
        next_run = first or trigger.get_next_fire_time(None, self.clock.now())
        self._jobs[job_id] = ScheduledJob(job_id, trigger, job, next_run, next(self._seq))
        self._changed.set()

    def remove(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def job_ids(self) -> list[str]:
        return sorted(self._jobs)

    def next_run_time(self, job_id: str) -> datetime | None:
        job = self._jobs.get(job_id)
        return job.next_run if job is not None else None

    # -- time ----------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of the clock's time: wall time live, simulated time in tests."""
        if not self.simulated:
            await asyncio.sleep(max(0.0, seconds))
            return
        due = self.clock.now() + timedelta(seconds=max(0.0, seconds))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (due, next(self._seq), future))
        self._changed.set()
        await future

    def next_due(self) -> datetime | None:
        """The earliest time something (a job or a sleeper) is waiting for."""
        times = [job.next_run for job in self._jobs.values() if job.next_run is not None]
        times += [due for due, _, future in self._sleepers if not future.done()]
        return min(times, default=None)

    def pending_sleepers(self) -> int:
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def _start_due(self) -> list[asyncio.Task[None]]:
        """Wake every sleeper due now and start every job due now, each as its own task.

        A job due several times since it last ran runs once (coalesced); a job still running
        from before is skipped this time, as APScheduler's ``max_instances=1`` would. Jobs run
        side by side, so a slow one (a volume-profile fetch) never holds up a delivery.
        """
        now = self.clock.now()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        due = sorted(
            (job for job in self._jobs.values() if job.next_run and job.next_run <= now),
            key=lambda job: (job.next_run, job.seq),
        )
        started = []
        for job in due:
            if job.running:
                continue
            job.next_run = _next_after(job.trigger, job.next_run, now)
            if job.next_run is None:
                del self._jobs[job.job_id]
            job.running = True
            task = asyncio.get_running_loop().create_task(self._run(job), name=job.job_id)
            self._running.add(task)
            task.add_done_callback(self._finished)
            started.append(task)
        return started

    async def _run(self, job: ScheduledJob) -> None:
        try:
            await job.run()
        except Exception:
            # One failing run must not kill the schedule: log it and try again next time.
            log.exception("job %s failed", job.job_id)
        finally:
            job.running = False
            self.runs += 1

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._changed.set()

    async def run_due(self) -> int:
        """Run what is due at the clock's time now and wait for it; returns how many jobs ran."""
        started = self._start_due()
        if started:
            await asyncio.gather(*started, return_exceptions=True)
        return len(started)

    async def advance_to(
        self, when: datetime, *, settle: Settle | None = None, inclusive: bool = True
    ) -> None:
        """Move a ManualClock to ``when``, stopping at each due time on the way, in order.

        ``settle`` is awaited after each stop (default: until the jobs started there are
        done), so work a job or a woken sleeper started (a poll, a delivery) is finished
        before time moves on. ``inclusive=False`` stops short of running what is due at
        ``when`` itself: a replay ingests the tick at ``when`` first, and the started loop
        runs the jobs due then at the caller's next await, as the old replay loop did.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance_to needs a ManualClock; a system clock moves by itself")
        settle = settle or self._settle
        await settle()
        while True:
            await self.run_due()
            await settle()
            nxt = self.next_due()
            if nxt is None or nxt > when or (nxt == when and not inclusive):
                break
            if nxt > clock.now():
                # Triggers answer in their own zone; the clock keeps UTC, as the system's does.
                clock.set(nxt.astimezone(UTC))
        if when > clock.now():
            clock.set(when)
        if inclusive:
            await self.run_due()
            await settle()

    async def _settle(self) -> None:
        await _yield()
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
            await _yield()

    async def advance(self, delta: timedelta, *, settle: Settle | None = None) -> None:
        await self.advance_to(self.clock.now() + delta, settle=settle)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="scheduler")

    async def _loop(self) -> None:
        while True:
            self._changed.clear()
            self._start_due()
            nxt = self.next_due()
            timeout: float | None = None  # simulated: only a clock move or a new job wakes us
            if not self.simulated:
                wait = MAX_WALL_WAIT if nxt is None else (nxt - self.clock.now()).total_seconds()
                timeout = min(MAX_WALL_WAIT, max(0.0, wait))
            elif nxt is not None and nxt <= self.clock.now() and not self._running:
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that
            # arrives as the wait completes, and a stop would then wait on a loop still running.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    async def idle(self) -> None:
        """Return once nothing is due now and no job is running (everything due has run)."""
        while True:
            await _yield()
            self._start_due()
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
                continue
            nxt = self.next_due()
            if nxt is None or nxt > self.clock.now():
                return

    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """The loop and the jobs running now, by name: what a stop must see ended."""
        found = {f"job {task.get_name()}": task for task in self._running}
        if self._task is not None:
            found["scheduler"] = self._task
        return found

    def shutdown(self) -> None:
        """Stop starting jobs and cancel what runs; :meth:`tasks` (taken before) says when
        they ended."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for task in self._running:
            task.cancel()
        for _, _, future in self._sleepers:
            future.cancel()
        self._sleepers.clear()


def _next_after(trigger: BaseTrigger, fired: datetime | None, now: datetime) -> datetime | None:
    """The trigger's first fire time after ``now``: runs missed while the clock jumped coalesce."""
    nxt: datetime | None = trigger.get_next_fire_time(fired, now)
    while nxt is not None and nxt <= now:
        nxt = trigger.get_next_fire_time(nxt, now)
    return nxt


async def _yield(rounds: int = 10) -> None:
    # Lets tasks just woken (a market loop, a delivery) run to their next await.
    for _ in range(rounds):
        await asyncio.sleep(0)


def cron_trigger(hour: int, minute: int, *, timezone: str, days: str = "mon-fri") -> CronTrigger:
    return CronTrigger(day_of_week=days, hour=hour, minute=minute, timezone=timezone)


def next_fire_time(trigger: CronTrigger, after: datetime) -> datetime | None:
    """When ``trigger`` fires next after ``after``: lets tests check DST without waiting."""
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    return fire
