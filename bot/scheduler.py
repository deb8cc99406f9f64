"""The one module that imports APScheduler: jobs by stable id, rebuilt from our tables at start."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class JobScheduler:
    """Small API over AsyncIOScheduler.

    Jobs live in memory under deterministic ids; the source of truth is our own tables, so a
    restart re-adds the same jobs instead of unpickling stale ones from a shared job store.
    """

    def __init__(self, timezone: str = "UTC") -> None:
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone=timezone,
        )

    def every(self, job_id: str, interval: timedelta, job: Job, *, start_now: bool = True) -> None:
        """Run ``job`` every ``interval``; a run still going when the next is due is skipped."""
        trigger = IntervalTrigger(seconds=interval.total_seconds())
        self._scheduler.add_job(
            _logged(job_id, job),
            trigger,
            id=job_id,
            name=job_id,
            replace_existing=True,
            next_run_time=datetime.now(trigger.timezone) if start_now else None,
        )

    def daily(
        self, job_id: str, hour: int, minute: int, job: Job, *, timezone: str, days: str = "mon-fri"
    ) -> None:
        """Run ``job`` at HH:MM local time on ``days`` (DST-safe: the trigger carries the zone)."""
        trigger = cron_trigger(hour, minute, timezone=timezone, days=days)
        self._scheduler.add_job(
            _logged(job_id, job), trigger, id=job_id, name=job_id, replace_existing=True
        )

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs())

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def cron_trigger(hour: int, minute: int, *, timezone: str, days: str = "mon-fri") -> CronTrigger:
    return CronTrigger(day_of_week=days, hour=hour, minute=minute, timezone=timezone)


def next_fire_time(trigger: CronTrigger, after: datetime) -> datetime | None:
    """When ``trigger`` fires next after ``after``: lets tests check DST without waiting."""
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    return fire


def _logged(job_id: str, job: Job) -> Job:
    async def run() -> None:
        try:
            await job()
        except Exception:
            # One failing run must not kill the schedule: log it and try again next time.
            log.exception("job %s failed", job_id)

    return run
