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
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from alerts.ports import ChatPlatform, Clock, SystemClock
from bot.leadership import RunRefused, is_postgres
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.discord.platform import DiscordPlatform
    from bot.pg_wake import OutboxListener
    from bot.pipeline.delivery import DeliveryWorker
    from bot.store import SqlStore

log = logging.getLogger("marketbot.worker")

REFRESH_INTERVAL = timedelta(minutes=1)  # stored headlines and role pings, for rendering
NEWS_PRELOAD = timedelta(days=4)
PEER_COUNT_WAIT = 10.0  # seconds delivery waits for the first count of delivering processes


@runtime_checkable
class SharedBudget(Protocol):
    """A platform whose rate budget belongs to the bot token, shared by every process."""

    name: str

    def share_global_budget(self, processes: int) -> None: ...


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
            baskets=self._baskets,
            # Moves come from the leader's engine; a worker renders the stored alerts alone.
            latest_changes=dict,
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

    def _baskets(self, channel: str) -> dict[str, tuple[str, ...]]:
        from alerts.baskets import all_baskets

        return all_baskets(self.store.list_baskets(channel))

    async def start(self) -> None:
        await self.connect()
        self.begin()

    async def connect(self) -> None:
        """Log the send clients in and read what rendering needs; nothing is claimed yet."""
        if not self._injected:
            await self._connect_platforms()
        await asyncio.to_thread(self._refresh)

    def begin(self) -> None:
        """Start listening and delivering."""
        from bot.pg_wake import OutboxListener

        loop = asyncio.get_running_loop()
        self.listener = OutboxListener(
            self.settings.database_url,
            self.delivery,
            platforms=[p.name for p in self.platforms],
            on_peers=lambda peers: loop.call_soon_threadsafe(self._share_budgets, peers),
        )
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
        if any(isinstance(p, SharedBudget) for p in self.platforms):
            await asyncio.to_thread(listener.listening.wait, PEER_COUNT_WAIT)
        await self.delivery.run()

    def _share_budgets(self, peers: Mapping[str, int]) -> None:
        """A budget per bot token (Discord's global limit) split by the live processes."""
        for platform in self.platforms:
            if isinstance(platform, SharedBudget):
                platform.share_global_budget(peers.get(platform.name, 1))
        log.info(
            "delivering processes: %s",
            ", ".join(f"{n} {name}" for name, n in sorted(peers.items())) or "none",
        )

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

    async def stop(self) -> None:
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._discord is not None:
            await self._discord.client.close()
        self.store.close()


async def run_worker(settings: Settings) -> None:
    """Deliver until SIGINT/SIGTERM; rows in flight keep their lease and are resumed by anyone.

    Started as ``marketbot run`` starts: the same logging (level, text or JSON, secrets
    redacted) and the same wait for a database that is not up yet (one line, then backoff).
    """
    from bot.database import wait_for_store
    from bot.logs import configure_from_settings

    check_worker_settings(settings)
    configure_from_settings(settings)
    store = await wait_for_store(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    worker = Worker(settings, store=store)
    await worker.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        await worker.stop()
