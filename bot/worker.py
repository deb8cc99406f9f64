"""``marketbot worker``: a process that only drains the PostgreSQL outbox.

No market data, no engine, no commands: delivery lanes and the platforms' send clients (Slack
Web API, Discord REST), woken by LISTEN/NOTIFY when ingest commits rows, with the slow poll as
a safety net. Any number may run beside the leading ``marketbot run``: claims are ``SELECT ...
FOR UPDATE SKIP LOCKED`` and only a lane's oldest open row is claimable, so each channel is
served by one process at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from alerts.ports import ChatPlatform, Clock, SystemClock
from bot.leadership import RunRefused, is_postgres
from bot.news.window import since_previous_close
from bot.pg_wake import SharedBudget, counted, delivery_listener
from bot.settings import Settings
from bot.shutdown import DaemonThreadPool, StopBudget, close_within, stop_tasks

if TYPE_CHECKING:
    from bot.discord.platform import DiscordPlatform
    from bot.pg_wake import OutboxListener
    from bot.pipeline.delivery import DeliveryWorker
    from bot.store import SqlStore

log = logging.getLogger("marketbot.worker")
T = TypeVar("T")

REFRESH_INTERVAL = timedelta(minutes=1)  # stored headlines and role pings, for rendering
NEWS_PRELOAD = timedelta(days=4)

__all__ = ["SharedBudget", "Worker", "check_worker_settings", "run_worker"]


def check_worker_settings(settings: Settings) -> None:
    """Refuse, in one line, what a worker cannot do."""
    if not is_postgres(settings.database_url):
        raise RunRefused(
            "marketbot worker needs PostgreSQL (MARKETBOT_DATABASE_URL is not postgresql); "
            "on SQLite `marketbot run` delivers by itself"
        )
    if not (settings.slack.enabled or settings.discord.enabled):
        raise RunRefused(
            "marketbot worker has no platform to deliver to: set MARKETBOT_SLACK__BOT_TOKEN "
            "and/or MARKETBOT_DISCORD__TOKEN"
        )


class Worker:
    """The send clients and the delivery loop of one worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        platforms: list[ChatPlatform] | None = None,
        owner: str | None = None,
        store: SqlStore | None = None,
    ) -> None:
        from bot.database import open_store
        from bot.pipeline.delivery import DeliveryWorker
        from bot.pipeline.market_view import MarketState
        from bot.pipeline.stats import PipelineStats

        self.settings = settings
        self.clock = clock or SystemClock()
        self.store: SqlStore = store if store is not None else open_store(settings)
        self._injected = platforms is not None
        self.platforms: list[ChatPlatform] = list(platforms or [])
        self.market = MarketState(settings.alerts.context_symbols)
        self.stats = PipelineStats()
        self.delivery: DeliveryWorker = DeliveryWorker(
            self.store,
            self.market,
            self.platforms,
            self.clock,
            self.stats,
            # Moves come from the leader's engine: this worker's market view has none, so it
            # renders the stored alerts alone.
            charts=False,  # the price paths live in the leader's memory
            timezone=settings.timezone,
            owner=owner,
            lease=timedelta(seconds=settings.delivery.lease_seconds),
            poll_interval=settings.delivery.poll_seconds,
        )
        self.delivery.shared = True
        self.delivery.offload_store = True  # PostgreSQL only: lanes meet the database in parallel
        self._discord: DiscordPlatform | None = None
        self.listener: OutboxListener | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        await self.connect()
        self.begin()

    async def connect(self) -> None:
        """Log the send clients in and read what rendering needs; nothing is claimed yet."""
        if not self._injected:
            await self._connect_platforms()
        await asyncio.to_thread(self._refresh)
        # The exchange calendar a render reads (bot.news.window): ~0.2 s of CPU to build, once
        # per process; built here, not by the first lanes' renders.
        await asyncio.to_thread(since_previous_close, self.clock.now())

    def begin(self) -> None:
        """Start listening and delivering."""
        self.listener = delivery_listener(self.settings.database_url, self.delivery, self.platforms)
        self._tasks = [
            asyncio.create_task(self._deliver(self.listener), name="delivery"),
            asyncio.create_task(self._refresh_every(), name="refresh"),
        ]
        self.listener.start()  # after delivery.run is scheduled: its wakes reach a live loop
        log.info(
            "marketbot worker started: delivering to %s",
            ", ".join(p.name for p in self.platforms),
        )

    async def _deliver(self, listener: OutboxListener) -> None:
        """Deliver once the delivering processes were counted (or the count is late: then
        the poll and the full budgets go on, and the count applies when it comes)."""
        await counted(listener, self.platforms)
        await self.delivery.run()

    async def _connect_platforms(self) -> None:
        settings = self.settings
        if settings.slack.enabled:
            from bot.slack.app import create_slack_platform

            self.platforms.append(create_slack_platform(settings.slack, timezone=settings.timezone))
        if settings.discord.enabled and settings.discord.token is not None:
            import discord

            from bot.discord.app import configure_endpoints
            from bot.discord.platform import DiscordPlatform

            configure_endpoints(settings.discord.api_url, settings.discord.gateway_url)
            # REST only: a worker serves no commands, so it never opens the gateway.
            client = discord.Client(intents=discord.Intents.none())
            await client.login(settings.discord.token.get_secret_value())
            self._discord = DiscordPlatform(client, timezone=settings.timezone)
            self.platforms.append(self._discord)

    async def _refresh_every(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL.total_seconds())
            try:
                await asyncio.to_thread(self._refresh)
            except Exception:  # a database hiccup: keep delivering, try again next time
                log.exception("worker refresh failed")

    def _refresh(self) -> None:
        """What rendering needs besides the outbox: stored headlines, opted-in role pings."""
        from bot.news.store import NewsStore

        recent = NewsStore(self.store.engine).recent(self.clock.now() - NEWS_PRELOAD)
        self.market.add_news(sorted(recent, key=lambda item: item.published))
        if self._discord is not None:
            from bot.discord.roles import role_pings

            self._discord.role_pings = role_pings(self.store)

    async def stop(self, budget: StopBudget | None = None) -> None:
        """Stop within ``budget`` (about 5.5 s at most), whatever the platforms are doing.

        Sending stops first (every task cancelled together and insisted on), then this
        process leaves the count of delivering processes (the others grow their share only
        once it sends no more). The rows it still holds, claimed and maybe in flight, are not
        handed back as pending, which could post one twice (a request cut by the stop may
        have reached Slack): their leases end now, so another worker reconciles and sends
        them after the in-flight grace (2 s) instead of after the lease (30 s).
        """
        budget = budget or StopBudget()
        began = time.monotonic()
        await stop_tasks({task.get_name(): task for task in self._tasks}, budget)
        closing = [close_within("outbox leases", self._end_leases(), budget)]
        if self.listener is not None:
            closing.append(
                close_within("outbox listener", asyncio.to_thread(self.listener.stop), budget)
            )
        if self._discord is not None:
            closing.append(close_within("discord client", self._discord.client.close(), budget))
        await asyncio.gather(*closing)
        log.info("stopped in %.1f s", time.monotonic() - began)

    async def _end_leases(self) -> None:
        try:
            ended = await asyncio.to_thread(
                self.store.end_leases, self.delivery.owner, self.clock.now()
            )
            if ended:
                log.info("stopping: %d claimed outbox row(s) left to the other workers", ended)
        except Exception as exc:  # the database is gone: the leases run out by themselves
            log.warning("stopping: could not end this worker's leases (%s)", exc)
        finally:
            await asyncio.to_thread(self.store.close)


async def run_worker(settings: Settings) -> None:
    """Deliver until SIGINT/SIGTERM, then stop within a bound (``Worker.stop``).

    Started as ``marketbot run`` starts: the same logging (level, text or JSON, secrets
    redacted), the same wait for a database that is not up yet (one line, then backoff), and
    the same daemon threads for blocking calls, so a store call stuck on a dead database
    never holds the exit.
    """
    from bot.database import wait_for_store
    from bot.logs import configure_from_settings

    check_worker_settings(settings)
    configure_from_settings(settings)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(DaemonThreadPool())
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    opened = await _unless_stopped(wait_for_store(settings), stop)
    if opened is None:
        return  # stopped while the database was not up yet
    worker = Worker(settings, store=opened.value)
    try:
        if await _unless_stopped(worker.start(), stop) is not None:
            await stop.wait()
            log.info("stopping")
    finally:
        await worker.stop()


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> Done[T] | None:
    """``work`` run to its end, or None if ``stop`` came first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return Done(task.result())


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T
