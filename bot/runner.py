"""The composition root: builds store, engine, platforms and jobs from settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from alerts.commands import CommandContext, CommandRouter, MarketView
from alerts.engine import Engine, EngineConfig
from alerts.grouping import GroupingConfig
from alerts.ports import ChatPlatform, Clock, SystemClock
from bot.console import CONSOLE_CHANNEL, ConsolePlatform
from bot.settings import Settings
from bot.store import SqlStore

if TYPE_CHECKING:
    from bot.discord.platform import DiscordPlatform
    from bot.metrics import MetricsServer
    from bot.news.source import NewsSource

log = logging.getLogger("marketbot")

WATCH_SYNC_INTERVAL = timedelta(seconds=30)
MUTE_CHECK_INTERVAL = timedelta(seconds=30)
# Digests are checked against the clock rather than put on per-channel cron triggers: a bot
# that was down at 08:00 still posts when it comes back (within the digest window), and the
# check runs on whatever clock the pipeline has, simulated or not.
DIGEST_CHECK_INTERVAL = timedelta(seconds=20)
VOLUME_PROFILE_INTERVAL = timedelta(minutes=5)
NEWS_PRELOAD = timedelta(days=4)  # a long weekend's headlines survive a restart


def open_store(settings: Settings) -> SqlStore:
    """Open the database and apply pending migrations (start-up always upgrades)."""
    store = SqlStore(settings.database_url)
    store.upgrade()
    return store


def build_engine(settings: Settings) -> Engine:
    alerts = settings.alerts
    repeat = alerts.repeat_interval_minutes
    return Engine(
        EngineConfig(
            hysteresis_pct=alerts.hysteresis_pct,
            escalation_step_pct=alerts.escalation_step_pct,
            resolved_notices=alerts.resolved_notices,
            repeat_interval=timedelta(minutes=repeat) if repeat is not None else None,
            cooldown=timedelta(minutes=alerts.cooldown_minutes),
            benchmark_nasdaq=alerts.benchmark_nasdaq or None,
            benchmark_other=alerts.benchmark_other or None,
            benchmarks=dict(alerts.benchmarks),
        )
    )


def grouping_config(settings: Settings) -> GroupingConfig:
    return GroupingConfig(
        group_wait=timedelta(seconds=settings.alerts.group_wait_seconds),
        group_interval=timedelta(seconds=settings.alerts.group_interval_seconds),
    )


def build_router(
    store: SqlStore,
    settings: Settings,
    *,
    market: MarketView | None = None,
    clock: Clock | None = None,
    on_change: Callable[[str], object] | None = None,
) -> CommandRouter:
    def changed(channel: str) -> None:
        if on_change is not None:
            on_change(channel)

    return CommandRouter(
        store,
        clock or SystemClock(),
        market=market,
        default_rule=settings.alerts.default_rule,
        on_change=changed,
        digest_time=settings.digest_time,
        timezone=settings.timezone,
    )


def build_platforms(settings: Settings) -> list[ChatPlatform]:
    platforms: list[ChatPlatform] = []
    if settings.console:
        from bot.render.console_text import render_console

        platforms.append(ConsolePlatform(render_console))
    return platforms


class StdinLines:
    """Lines typed on stdin, read by a daemon thread.

    A blocked ``readline`` in the default executor would keep the process alive after Ctrl-C
    or ``docker stop`` until someone pressed Enter; a daemon thread does not.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(target=self._pump, name="stdin", daemon=True).start()

    def _pump(self) -> None:
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
        self._loop.call_soon_threadsafe(self._lines.put_nowait, "")  # EOF

    async def __call__(self) -> str:
        return await self._lines.get()


async def read_console_commands(
    router: CommandRouter,
    reply: Callable[[str, bool], None],
    read_line: Callable[[], Awaitable[str]],
) -> None:
    """Commands typed on stdin act on ``console:default``; EOF ends reading, not the bot."""
    ctx = CommandContext(channel=CONSOLE_CHANNEL, user="console", platform="console")
    while True:
        line = await read_line()
        if not line:
            return
        if not line.strip():
            continue
        answer = await asyncio.to_thread(router.handle, line, ctx)
        reply(answer.text, answer.ok)


class Runtime:
    """Everything ``marketbot run`` runs, built from settings; tests inject clock and data."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        platforms: list[ChatPlatform] | None = None,
        commands_in: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        from bot.market.live import build_market_source
        from bot.market.volume import VolumeProfiles
        from bot.pipeline import Pipeline
        from bot.scheduler import JobScheduler

        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = open_store(settings)
        self._injected_platforms = platforms is not None
        self.platforms = platforms if platforms is not None else build_platforms(settings)
        self.pipeline = Pipeline(
            self.store,
            build_engine(settings),
            self.platforms,
            self.clock,
            grouping=grouping_config(settings),
            context_symbols=settings.alerts.context_symbols,
            charts=settings.alerts.charts,
            timezone=settings.timezone,
        )
        self.pipeline.load()
        self.source = build_market_source(settings, self.clock)
        self.volume_profiles = VolumeProfiles(self.source.poller, self.pipeline.engine, self.clock)
        self.news: NewsSource | None = self._build_news() if settings.news.enabled else None
        self.router = build_router(
            self.store, settings, market=self.pipeline, clock=self.clock, on_change=self.changed
        )
        self.scheduler = JobScheduler(timezone=settings.timezone)
        self._commands_in = commands_in
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics: MetricsServer | None = None
        self._discord: DiscordPlatform | None = None
        self._stop = asyncio.Event()

    def _build_news(self) -> NewsSource:
        """Feeds on the scheduler; stored headlines come back so a restart loses none."""
        from bot.news.source import build_news_source
        from bot.news.store import NewsStore

        poller = self.source.poller
        store = NewsStore(self.store.engine)

        async def company_names(symbols: Sequence[str]) -> dict[str, str]:
            # The same v7 quote answers the poller reads carry longName/shortName.
            unknown = [s for s in symbols if s not in poller.names]
            if unknown:
                await poller.fetch_quotes(unknown)
            return {s: poller.names[s] for s in symbols if s in poller.names}

        source = build_news_source(
            self.settings.news,
            clock=self.clock,
            store=store,
            yahoo_base_url=self.settings.yahoo.base_url,
            names=company_names,
        )
        self.pipeline.preload_news(store.recent(self.clock.now() - NEWS_PRELOAD))
        self.pipeline.delivery.explainer.name_terms = source.name_terms
        return source

    async def _read_news(self) -> None:
        if self.news is None:
            return
        report = await self.news.cycle(self.pipeline.symbols())
        if report.new:
            self.pipeline.ingest_news(report.new)

    def changed(self, channel: str | None = None) -> None:
        """A channel's watches, baskets or digest changed (here or via `marketbot cmd`).

        Commands run in worker threads (the store is synchronous), while the engine belongs to
        the event loop: the change is applied there, never from the command's thread.
        """
        loop = self._loop
        if loop is not None and not _in_loop(loop):
            loop.call_soon_threadsafe(self._apply_change, channel)
        else:
            self._apply_change(channel)

    def _apply_change(self, channel: str | None) -> None:
        self.pipeline.sync_watches(channel)
        self._apply_role_pings()
        self.source.set_symbols(self.pipeline.symbols())

    async def start(self) -> None:
        from bot.market.live import run_market_loop

        self._loop = asyncio.get_running_loop()
        pipeline = self.pipeline

        async def sync() -> None:
            self.changed()

        async def mutes() -> None:
            await pipeline.end_expired_mutes()

        async def digests() -> None:
            await pipeline.send_due_digests()

        self.scheduler.every("sync-watches", WATCH_SYNC_INTERVAL, sync)
        self.scheduler.every("mute-summaries", MUTE_CHECK_INTERVAL, mutes)
        self.scheduler.every("digests", DIGEST_CHECK_INTERVAL, digests)
        self.scheduler.every("volume-profiles", VOLUME_PROFILE_INTERVAL, self._refresh_volume)
        if self.news is not None:
            interval = timedelta(seconds=self.settings.news.poll_interval_seconds)
            self.scheduler.every("news", interval, self._read_news)
        self._spawn(run_market_loop(self.source, pipeline), "market")
        console = next((p for p in self.platforms if isinstance(p, ConsolePlatform)), None)
        if console is not None:
            console.reply("marketbot is running. Type /help, or /watch NVDA. Ctrl-C stops.")
            self._spawn(
                read_console_commands(
                    self.router,
                    lambda text, ok: console.reply(text, ok=ok),
                    self._commands_in or StdinLines(),
                ),
                "console",
            )
        self._start_chat_platforms()
        # Lanes per channel, woken by each committed outbox row (see bot/pipeline/delivery.py).
        self._spawn(pipeline.run_delivery(), "delivery")
        if self.settings.metrics_port is not None:
            from bot.metrics import MetricsServer

            self.metrics = MetricsServer(
                self.settings.metrics_port,
                pipeline,
                self.source.stats,
                addr=self.settings.metrics_addr,
            )
        self.scheduler.start()
        log.info(
            "marketbot started: %d watches, platforms: %s",
            len(self.store.list_watches()),
            ", ".join(p.name for p in self.platforms) or "none",
        )

    async def _refresh_volume(self) -> None:
        from bot.market.volume import volume_rule_symbols

        symbols = volume_rule_symbols(self.pipeline.engine.watches(), self.store.all_baskets())
        await self.volume_profiles.refresh(symbols)

    def _start_chat_platforms(self) -> None:
        """Slack and Discord, each when its token is set; both serve the same command router."""
        settings = self.settings
        if settings.slack.enabled and not self._injected_platforms:
            from bot.slack.app import create_slack_platform, run_slack

            self._add_platform(create_slack_platform(settings.slack, timezone=settings.timezone))
            self._spawn(run_slack(settings.slack, self.router, stop=self._stop), "slack")
        if settings.discord.enabled and not self._injected_platforms:
            from bot.discord.app import build_discord_client, run_discord
            from bot.discord.platform import DiscordPlatform

            client = build_discord_client(settings.discord, self.router)
            self._discord = DiscordPlatform(client, timezone=settings.timezone)
            self._apply_role_pings()
            self._add_platform(self._discord)
            self._spawn(
                run_discord(settings.discord, self.router, client=client, stop=self._stop),
                "discord",
            )

    def _apply_role_pings(self) -> None:
        """Channels that opted in (`/pingrole`) get their role pinged on critical alerts."""
        if self._discord is None:
            return
        pings: dict[str, int] = {}
        for channel in self.store.channels():
            role = self.store.channel_settings(channel).get("ping_role")
            if channel.startswith("discord:") and isinstance(role, str) and role.isdigit():
                pings[channel] = int(role)
        self._discord.role_pings = pings

    def _add_platform(self, platform: ChatPlatform) -> None:
        self.platforms.append(platform)
        self.pipeline.platforms.append(platform)

    def running(self) -> list[str]:
        """Names of the long-running tasks still alive (market, console, slack, discord)."""
        return [task.get_name() for task in self._tasks if not task.done()]

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(job, name=name))

    async def stop(self) -> None:
        self._stop.set()
        if self.metrics is not None:
            self.metrics.close()
        self.scheduler.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.news is not None:
            await self.news.close()
        await self.source.close()
        self.store.close()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def run_bot(settings: Settings) -> None:
    """``marketbot run``: every enabled platform, the market-data loop and the scheduled jobs.

    SIGINT and SIGTERM (Ctrl-C, ``docker stop``) stop it cleanly: platforms disconnect, the
    scheduler shuts down and the database is closed; pending deliveries stay in the outbox.
    """
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # APScheduler logs every run of every job at INFO: seconds-apart noise in the terminal.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    from bot.leadership import run_elected

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(signum, stop.set)

    async def serve(until: asyncio.Event) -> None:
        # Built only once elected: a new leader loads states, outbox and digest markers as
        # the previous leader committed them.
        runtime = Runtime(settings)
        await runtime.start()
        try:
            await until.wait()
            log.info("stopping")
        finally:
            await runtime.stop()

    # On SQLite a second run is refused (RunRefused); on PostgreSQL it waits as a standby.
    await run_elected(settings.database_url, stop, serve)
