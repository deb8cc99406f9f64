"""The composition root: builds store, engine, platforms and jobs from settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from datetime import timedelta

from alerts.commands import CommandContext, CommandRouter, MarketView
from alerts.engine import Engine, EngineConfig
from alerts.grouping import GroupingConfig
from alerts.ports import ChatPlatform, Clock, SystemClock
from bot.settings import Settings
from bot.store import SqlStore

log = logging.getLogger("marketbot")

DELIVERY_INTERVAL = timedelta(seconds=1)
WATCH_SYNC_INTERVAL = timedelta(seconds=30)
MUTE_CHECK_INTERVAL = timedelta(seconds=30)


def open_store(settings: Settings) -> SqlStore:
    """Open the database and apply pending migrations (start-up always upgrades)."""
    store = SqlStore(settings.database_url)
    store.upgrade()
    return store


def build_engine(settings: Settings) -> Engine:
    return Engine(
        EngineConfig(
            hysteresis_pct=settings.alerts.hysteresis_pct,
            escalation_step_pct=settings.alerts.escalation_step_pct,
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
    )


def build_platforms(settings: Settings) -> list[ChatPlatform]:
    platforms: list[ChatPlatform] = []
    if settings.console:
        from bot.console import ConsolePlatform
        from bot.render.console_text import render_console

        platforms.append(ConsolePlatform(render_console))
    return platforms


async def read_console_commands(router: CommandRouter, reply: Callable[[str, bool], None]) -> None:
    """Commands typed on stdin act on ``console:default``; EOF ends reading, not the bot."""
    from bot.console import CONSOLE_CHANNEL

    ctx = CommandContext(channel=CONSOLE_CHANNEL, user="console", platform="console")
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        if not line.strip():
            continue
        answer = await asyncio.to_thread(router.handle, line, ctx)
        reply(answer.text, answer.ok)


async def run_bot(settings: Settings) -> None:
    """``marketbot run``: every enabled platform, the market-data loop and the scheduled jobs."""
    from bot.scheduler import JobScheduler

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(settings)
    clock = SystemClock()
    platforms = build_platforms(settings)
    from bot.pipeline import Pipeline

    pipeline = Pipeline(
        store,
        build_engine(settings),
        platforms,
        clock,
        grouping=grouping_config(settings),
        context_symbols=settings.alerts.context_symbols,
    )
    pipeline.load()
    from bot.market.live import build_market_source, run_market_loop

    source = build_market_source(settings, clock)

    def watches_changed(channel: str | None = None) -> None:
        pipeline.sync_watches(channel)
        source.set_symbols(pipeline.symbols())

    router = build_router(store, settings, market=pipeline, clock=clock, on_change=watches_changed)

    scheduler = JobScheduler(timezone=settings.timezone)

    async def deliver() -> None:
        await pipeline.deliver_due()

    async def sync() -> None:
        watches_changed()

    async def mutes() -> None:
        await pipeline.end_expired_mutes()

    scheduler.every("deliver", DELIVERY_INTERVAL, deliver)
    scheduler.every("sync-watches", WATCH_SYNC_INTERVAL, sync)
    scheduler.every("mute-summaries", MUTE_CHECK_INTERVAL, mutes)

    tasks: list[asyncio.Task[None]] = []
    tasks.append(asyncio.create_task(run_market_loop(source, pipeline), name="market"))
    console = next((p for p in platforms if p.name == "console"), None)
    if console is not None:
        from bot.console import ConsolePlatform

        assert isinstance(console, ConsolePlatform)
        console.reply("marketbot is running. Type /help, or /watch NVDA. Ctrl-C stops.", ok=True)
        tasks.append(
            asyncio.create_task(
                read_console_commands(router, lambda text, ok: console.reply(text, ok=ok)),
                name="console",
            )
        )
    scheduler.start()
    log.info(
        "marketbot started: %d watches, platforms: %s",
        len(store.list_watches()),
        ", ".join(p.name for p in platforms) or "none",
    )
    try:
        await asyncio.Event().wait()
    finally:
        scheduler.shutdown()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await source.close()
        store.close()
