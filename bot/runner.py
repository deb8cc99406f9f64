"""The composition root: builds store, engine, platforms and jobs from settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from alerts.commands import CommandContext, CommandRouter, MarketView
from alerts.engine import Engine, EngineConfig
from alerts.grouping import GroupingConfig
from alerts.ports import ChatPlatform, Clock, SymbolChecker, SystemClock
from bot.console import CONSOLE_CHANNEL, ConsolePlatform, ConsoleSession
from bot.database import open_store, wait_for_store
from bot.health import MarketFreshness, health_check, market_max_age, standby_health
from bot.logs import configure_from_settings
from bot.market_loop import MarketFeed, run_market_loop
from bot.settings import Settings
from bot.shutdown import DaemonThreadPool, StopBudget, close_within, stop_tasks
from bot.store import SqlStore

if TYPE_CHECKING:
    from bot.discord.platform import DiscordPlatform
    from bot.market.symbol_check import YahooSymbolCheck
    from bot.market.volume import VolumeProfiles
    from bot.market.yahoo_poll import YahooPoller
    from bot.metrics import MetricsServer
    from bot.news.source import NewsSource
    from bot.pg_wake import OutboxListener
    from bot.scheduler import JobScheduler

log = logging.getLogger("marketbot")

WATCH_SYNC_INTERVAL = timedelta(seconds=30)
MUTE_CHECK_INTERVAL = timedelta(seconds=30)
# Digests are checked against the clock rather than put on per-channel cron triggers: a bot
# that was down at 08:00 still posts when it comes back (within the digest window), and the
# check runs on whatever clock the pipeline has, simulated or not.
DIGEST_CHECK_INTERVAL = timedelta(seconds=20)
VOLUME_PROFILE_INTERVAL = timedelta(minutes=5)
NEWS_PRELOAD = timedelta(days=4)  # a long weekend's headlines survive a restart


@dataclass(frozen=True)
class JobIntervals:
    """How often the periodic jobs run; ``None`` leaves a job out."""

    # Delivery's safety-net look at the outbox (None: the worker's own); commits wake it at once.
    delivery: timedelta | None = None
    watch_sync: timedelta | None = WATCH_SYNC_INTERVAL  # changes made by other processes
    mute_check: timedelta = MUTE_CHECK_INTERVAL
    digest_check: timedelta = DIGEST_CHECK_INTERVAL
    volume_profiles: timedelta = VOLUME_PROFILE_INTERVAL


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
    symbols: SymbolChecker | None = None,
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
        symbols=symbols,
    )


def build_platforms(settings: Settings) -> list[ChatPlatform]:
    platforms: list[ChatPlatform] = []
    if settings.console:
        from bot.render.console_text import console_renderer

        platforms.append(ConsolePlatform(console_renderer(settings.timezone)))
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


FeedFactory = Callable[["JobScheduler"], "MarketFeed"]
Job = Callable[[], Awaitable[None]]


class Runtime:
    """The composition root: everything ``marketbot run`` runs, built from settings.

    ``marketbot replay`` is the same composition with three parts swapped (``bot.replay``): a
    replay feed instead of Yahoo, a ManualClock instead of the system clock, and a platform
    that renders to the terminal; tests swap the same three. Where things plug in:

    - a periodic job: add it to :meth:`periodic_jobs` (id, interval, coroutine function);
    - a daily or one-off job: ``self.scheduler.daily(...)`` / ``self.scheduler.once(...)``;
    - a long-running service (a front end, a listener): add it to :meth:`services`.

    Every job runs on ``self.clock`` through ``self.scheduler``; nothing reads wall time.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        platforms: list[ChatPlatform] | None = None,
        commands_in: Callable[[], Awaitable[str]] | None = None,
        store: SqlStore | None = None,
        feed: FeedFactory | None = None,
        context_symbols: Sequence[str] | None = None,
        intervals: JobIntervals | None = None,
        front_ends: bool = True,
        metrics: MetricsServer | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        """``metrics``: a process-wide /metrics and /healthz server to attach to while this
        runtime leads (``run_bot`` keeps it up for standbys); else one of its own if set.
        ``leading``: whether this process may act as the leader right now (see
        ``bot.leadership.Term.current``); the market loop drops batches while it is False."""
        from bot.pipeline import Pipeline
        from bot.scheduler import JobScheduler

        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = store if store is not None else open_store(settings)
        self._owns_store = store is None
        self._injected_platforms = platforms is not None
        self.platforms = platforms if platforms is not None else build_platforms(settings)
        self.pipeline = Pipeline(
            self.store,
            build_engine(settings),
            self.platforms,
            self.clock,
            grouping=grouping_config(settings),
            context_symbols=(
                settings.alerts.context_symbols if context_symbols is None else context_symbols
            ),
            charts=settings.alerts.charts,
            timezone=settings.timezone,
            lease=timedelta(seconds=settings.delivery.lease_seconds),
            poll_interval=settings.delivery.poll_seconds,
        )
        self.pipeline.load()
        self.scheduler = JobScheduler(timezone=settings.timezone, clock=self.clock)
        self.volume_profiles: VolumeProfiles | None = None  # live Yahoo only
        self.news: NewsSource | None = None  # live feeds only
        self.symbol_check: YahooSymbolCheck | None = None  # live Yahoo only; closed at stop
        self.source: MarketFeed = (feed or self._live_feed)(self.scheduler)
        self.router = build_router(
            self.store,
            settings,
            market=self.pipeline,
            clock=self.clock,
            on_change=self.changed,
            symbols=self.symbol_check,
        )
        self.intervals = intervals or JobIntervals()
        self.front_ends = front_ends
        self._commands_in = commands_in
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared_metrics = metrics
        self.leading = leading
        self.metrics: MetricsServer | None = None
        self.freshness = MarketFreshness(
            self.clock, market_max_age(settings.yahoo.poll_interval_seconds)
        )
        self._discord: DiscordPlatform | None = None
        self._stop = asyncio.Event()
        self.stop_budget = StopBudget()
        self.listener: OutboxListener | None = None  # PostgreSQL: see _deliver_counted

    def _live_feed(self, scheduler: JobScheduler) -> MarketFeed:
        from bot.chart_backfill import ChartBackfill
        from bot.market.live import build_market_source
        from bot.market.symbol_check import YahooSymbolCheck
        from bot.market.volume import VolumeProfiles

        source = build_market_source(self.settings, self.clock, sleep=scheduler.sleep)
        # A new symbol is asked about once, so a typo is refused instead of never alerting.
        self.symbol_check = YahooSymbolCheck(
            clock=self.clock, base_url=self.settings.yahoo.base_url
        )
        # Yahoo's intraday history gives `volume Nx` rules their profiles; a recorded day not.
        self.volume_profiles = VolumeProfiles(source.poller, self.pipeline.engine, self.clock)
        # A chart's path starts with Yahoo's day so far, not when this process started.
        backfill = ChartBackfill.of(self.pipeline.market, source.poller.history(), self.clock)
        self.pipeline.delivery.chart_paths = backfill.paths
        # Live headlines come from the feeds' own job; a recorded day brings its news along.
        if self.settings.news.enabled:
            self.news = self._build_news(source.poller)
        return source

    def _build_news(self, poller: YahooPoller) -> NewsSource:
        """Feeds on the scheduler; stored headlines come back so a restart loses none."""
        from bot.news.source import build_news_source
        from bot.news.store import NewsStore

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
        try:
            report = await self.news.cycle(self.pipeline.symbols())
        except asyncio.CancelledError:
            if self._stop.is_set():
                return  # stopping: a cycle cut short is read again at the next start
            raise
        if report.new:
            self.pipeline.ingest_news(report.new)

    # -- what runs ------------------------------------------------------------------------

    def periodic_jobs(self) -> list[tuple[str, timedelta, Job]]:
        """Scheduled work, on the runtime's clock: (stable id, interval, job)."""
        every = self.intervals
        jobs: list[tuple[str, timedelta, Job]] = [
            ("mute-summaries", every.mute_check, self._end_mutes),
            ("digests", every.digest_check, self._send_digests),
        ]
        if every.watch_sync is not None:
            jobs.append(("sync-watches", every.watch_sync, self._sync))
        if self.volume_profiles is not None:
            jobs.append(("volume-profiles", every.volume_profiles, self._refresh_volume))
        if self.news is not None:
            interval = timedelta(seconds=self.settings.news.poll_interval_seconds)
            jobs.append(("news", interval, self._read_news))
        return jobs

    def services(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """Long-running tasks besides the market loop: delivery, console input, front ends."""
        found: list[tuple[str, Coroutine[Any, Any, None]]] = []
        if self.front_ends:
            found += self._front_ends()
        # Lanes per channel, woken by each committed outbox row (see bot/pipeline/delivery.py);
        # its waits are the scheduler's, so they run on the runtime's clock.
        self.pipeline.delivery.sleep = self.scheduler.sleep
        if self.intervals.delivery is not None:
            self.pipeline.delivery.poll_interval = self.intervals.delivery.total_seconds()
        if self.store.engine.dialect.name == "postgresql":
            # `marketbot worker`s may share this outbox: claim only the lanes this process
            # has a client for, leaving the others' rows to them rather than marking them dead.
            self.pipeline.delivery.shared = True
            found.append(("delivery", self._deliver_counted()))
        else:
            found.append(("delivery", self.pipeline.run_delivery()))
        return found

    async def _deliver_counted(self) -> None:
        """PostgreSQL: this process is one of the delivering processes, as each worker is.

        Its listener names its platforms in ``pg_stat_activity``, so Discord's global budget
        (the bot token's 50 requests a second) is split over the leader and the workers, and
        other processes' rows (``marketbot cmd``) wake delivery at once. Delivery starts once
        the processes were counted (bounded), so the leader never spends the whole budget.
        """
        from bot.pg_wake import counted, delivery_listener

        self.listener = delivery_listener(
            self.settings.database_url, self.pipeline.delivery, self.platforms
        )
        self.listener.start()
        await counted(self.listener, self.platforms)
        await self.pipeline.run_delivery()

    def _front_ends(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        found: list[tuple[str, Coroutine[Any, Any, None]]] = []
        console = next((p for p in self.platforms if isinstance(p, ConsolePlatform)), None)
        if console is not None:
            console.reply("marketbot is running. Type /help, or /watch NVDA. Ctrl-C stops.")
            found.append(
                (
                    "console",
                    read_console_commands(
                        self.router,
                        lambda text, ok: console.reply(text, ok=ok),
                        self._commands_in or StdinLines(),
                    ),
                )
            )
        found += self._chat_front_ends()
        return found

    async def _sync(self) -> None:
        self.changed()

    async def _end_mutes(self) -> None:
        await self.pipeline.end_expired_mutes()

    async def _send_digests(self) -> None:
        await self.pipeline.send_due_digests()

    # -- changes --------------------------------------------------------------------------

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

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for job_id, interval, job in self.periodic_jobs():
            self.scheduler.every(job_id, interval, job)
        self._spawn(
            run_market_loop(
                self.source, self.pipeline, on_data=self.freshness.arrived, leading=self.leading
            ),
            "market",
        )
        for name, service in self.services():
            self._spawn(service, name)
        health = health_check(self._loop, self.store, self.pipeline, self.freshness)
        if self._shared_metrics is not None:
            self.metrics = self._shared_metrics
            self.metrics.attach(self.pipeline, self.source.stats, health)
        elif self.front_ends and self.settings.metrics_port is not None:
            from bot.metrics import MetricsServer

            self.metrics = MetricsServer(
                self.settings.metrics_port,
                self.pipeline,
                self.source.stats,
                addr=self.settings.metrics_addr,
                health=health,
            )
        self.scheduler.start()
        log.info(
            "marketbot started: %d watches, platforms: %s",
            len(self.store.list_watches()),
            ", ".join(p.name for p in self.platforms) or "none",
        )

    async def market_closed(self) -> None:
        """Wait until the market feed ended (a recorded day played out; live never ends)."""
        market = next(task for task in self._tasks if task.get_name() == "market")
        await asyncio.wait({market})

    async def settle(self) -> None:
        """Let everything started finish: the feed's work in flight, every due job, and what
        delivery has due now (simulated time moves on only after it was sent)."""
        await self.source.settled()
        await self.scheduler.idle()
        await self.pipeline.delivery.settled()
        await self.source.settled()

    async def advance(self, delta: timedelta) -> None:
        """Simulated time (a ManualClock): move on, running each job at its own due time."""
        await self.scheduler.advance(delta, settle=self.settle)

    async def _refresh_volume(self) -> None:
        from bot.market.volume import volume_rule_symbols

        if self.volume_profiles is None:
            return
        symbols = volume_rule_symbols(self.pipeline.engine.watches(), self.store.all_baskets())
        await self.volume_profiles.refresh(symbols)

    def _chat_front_ends(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """Slack and Discord, each when its token is set; both serve the same command router."""
        settings = self.settings
        found: list[tuple[str, Coroutine[Any, Any, None]]] = []
        if settings.slack.enabled and not self._injected_platforms:
            from bot.slack.app import create_slack_platform, run_slack

            self._add_platform(create_slack_platform(settings.slack, timezone=settings.timezone))
            found.append(("slack", run_slack(settings.slack, self.router, stop=self._stop)))
        if settings.discord.enabled and not self._injected_platforms:
            from bot.discord.app import build_discord_client, run_discord
            from bot.discord.platform import DiscordPlatform

            client = build_discord_client(settings.discord, self.router)
            self._discord = DiscordPlatform(client, timezone=settings.timezone)
            self._apply_role_pings()
            self._add_platform(self._discord)
            found.append(
                (
                    "discord",
                    run_discord(settings.discord, self.router, client=client, stop=self._stop),
                )
            )
        return found

    def _apply_role_pings(self) -> None:
        """Channels that opted in (`/pingrole`) get their role pinged on critical alerts."""
        if self._discord is not None:
            from bot.discord.roles import role_pings

            self._discord.role_pings = role_pings(self.store)

    def _add_platform(self, platform: ChatPlatform) -> None:
        self.platforms.append(platform)
        self.pipeline.platforms.append(platform)

    def running(self) -> list[str]:
        """Names of the long-running tasks still alive (market, console, slack, discord)."""
        return [task.get_name() for task in self._tasks if not task.done()]

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(job, name=name))

    async def stop(self) -> None:
        """Stop everything within ``self.stop_budget``, whatever state it is in.

        The stop event lets Slack and Discord say goodbye; every task (market loop, delivery
        lanes, front ends, the scheduler and its running jobs) is cancelled together and
        insisted on (``bot.shutdown``); the feeds close after them, so no request is cut from
        under a running poll; anything slow is logged by name. Pending deliveries stay in the
        outbox for the next start.
        """
        self._stop.set()
        began = time.monotonic()
        budget = self.stop_budget
        tasks = {task.get_name(): task for task in self._tasks}
        tasks.update(self.scheduler.tasks())
        self.scheduler.shutdown()
        if self.metrics is not None and self.metrics is self._shared_metrics:
            self.metrics.detach()
        await stop_tasks(tasks, budget)
        if self.listener is not None:  # after delivery stopped: it leaves the count then
            await close_within("outbox listener", asyncio.to_thread(self.listener.stop), budget)
        if self.metrics is not None and self.metrics is not self._shared_metrics:
            # Its serve_forever notices a shutdown within its poll interval: not on the loop.
            await close_within("metrics server", asyncio.to_thread(self.metrics.close), budget)
        if self.news is not None:
            await close_within("news feeds", self.news.close(), budget)
        await close_within("market feed", self.source.close(), budget)
        if self.symbol_check is not None:
            # Blocking (it waits for a check in flight): off the loop, within the budget.
            await close_within("symbol check", asyncio.to_thread(self.symbol_check.close), budget)
        if self._owns_store:
            self.store.close()
        log.info("stopped in %.1f s", time.monotonic() - began)


def console_runtime(
    settings: Settings, clock: Clock, **options: Any
) -> tuple[Runtime, ConsoleSession]:
    """`marketbot run` on the console, driven as a transcript: ``async with
    session.running(runtime)``, then ``session.type``, ``session.advance`` (tests, demos)."""
    session = ConsoleSession(clock)
    runtime = Runtime(
        settings, clock=clock, platforms=[session.console], commands_in=session.read_line, **options
    )
    return runtime, session


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _import_leader_modules() -> None:
    import bot.market.live
    import bot.market.volume
    import bot.news.source
    import bot.news.store
    import bot.pipeline
    import bot.scheduler  # noqa: F401 (imported for their side effect: loaded modules)


async def run_bot(settings: Settings) -> None:
    """``marketbot run``: every enabled platform, the market-data loop and the scheduled jobs.

    SIGINT and SIGTERM (Ctrl-C, ``docker stop``) stop it cleanly: platforms disconnect, the
    scheduler shuts down and the database is closed; pending deliveries stay in the outbox.
    """
    configure_from_settings(settings)
    from bot.leadership import Term, run_elected

    # Blocking calls (Yahoo requests, feed fetches, commands) on daemon threads: a request in
    # flight to a server that went quiet no longer holds the exit for its whole timeout.
    asyncio.get_running_loop().set_default_executor(DaemonThreadPool())
    # A compose stack may start the database after the bot: wait for it instead of crashing.
    (await wait_for_store(settings)).close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(signum, stop.set)

    # /healthz answers from the start, so a standby reports itself ready as a standby.
    metrics = None
    if settings.metrics_port is not None:
        from bot.metrics import MetricsServer

        metrics = MetricsServer(
            settings.metrics_port,
            addr=settings.metrics_addr,
            health=standby_health(loop, settings.database_url),
        )

    async def serve(until: Term) -> None:
        # Built only once elected: a new leader loads states, outbox and digest markers as
        # the previous leader committed them.
        runtime = Runtime(settings, metrics=metrics, leading=until.current)
        await runtime.start()
        try:
            await until.wait()
            log.info("stopping")
        finally:
            await runtime.stop()

    # On SQLite a second run is refused (RunRefused); on PostgreSQL it waits as a standby,
    # with the modules a leader needs already imported, so a takeover is not slowed by them.
    try:
        await run_elected(settings.database_url, stop, serve, warm_up=_import_leader_modules)
    finally:
        if metrics is not None:
            metrics.close()
