"""`marketbot replay`: a recorded market day through the real pipeline on a simulated clock."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from alerts.commands import CommandContext
from alerts.models import AlertMessage
from alerts.ports import ManualClock, MessageRef
from alerts.scenario import Scenario, ScenarioError
from alerts.wording import plural
from bot.console import CONSOLE_CHANNEL, ConsolePlatform
from bot.market.replay import REPLAY_TICK_INTERVAL, ReplayFeed, ReplayMarketData
from bot.render import render_payload
from bot.render.console_text import render_console
from bot.runner import JobIntervals, Runtime
from bot.scenarios import UnknownScenarioError, open_scenario
from bot.scheduler import JobScheduler
from bot.settings import Settings
from bot.store import SqlStore

RenderKind = Literal["console", "slack", "discord"]

# Simulated time steps from tick to tick and each new alert wakes delivery itself, so one
# safety-net round per tick is enough (per second would be 23,400 idle rounds a day); only
# this process changes the replay's database, and its commands apply at once: no watch sync.
REPLAY_JOB_INTERVALS = JobIntervals(
    delivery=REPLAY_TICK_INTERVAL,
    watch_sync=None,
    mute_check=REPLAY_TICK_INTERVAL,
    digest_check=REPLAY_TICK_INTERVAL,
)


class ReplayError(Exception):
    """The scenario cannot be replayed (unknown name, invalid file); the message says why."""


class PayloadPrinter:
    """A platform that prints the exact payload Slack or Discord would receive."""

    def __init__(self, kind: Literal["slack", "discord"], console: Console) -> None:
        self.name: str = kind
        self._kind: Literal["slack", "discord"] = kind
        self._console = console
        self._next = 0
        self.sent: list[tuple[str, AlertMessage]] = []

    def handles(self, channel: str) -> bool:
        return True

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self._next += 1
        return self._emit(str(self._next), message, "post")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return self._emit(ref.message_id, message, "update")

    def _emit(self, message_id: str, message: AlertMessage, action: str) -> MessageRef:
        verb = {
            "slack": {"post": "chat.postMessage", "update": "chat.update"},
            "discord": {"post": "POST message", "update": "PATCH message"},
        }[self._kind][action]
        self._console.print(f"# {verb} #{message_id}", style="bold", highlight=False)
        self._console.print(render_payload(message, self._kind), highlight=False, soft_wrap=True)
        self._console.file.flush()
        self.sent.append((message_id, message))
        return MessageRef(channel=message.channel, message_id=message_id)


@dataclass(frozen=True)
class ReplayResult:
    messages: list[tuple[str, AlertMessage]]  # (message id, message) in the order shown
    replies: list[str]


async def run_replay(
    settings: Settings,
    scenario_name: str,
    *,
    speed: float | None = None,
    commands: Sequence[str] = (),
    render: RenderKind = "console",
    console: Console | None = None,
    database_dir: Path | None = None,
    database_url: str | None = None,
) -> ReplayResult:
    """Replay into a throw-away SQLite database, so a demo never touches the real one.

    ``database_url`` (``replay FILE --db URL``) continues from that database instead: its
    watches, rule states and sent digests carry over, so market days can be replayed one
    after another and what a restart would send is what the next replay sends.
    """
    try:
        scenario = open_scenario(scenario_name)
    except (UnknownScenarioError, ScenarioError) as exc:
        raise ReplayError(str(exc)) from None
    out = console or Console()
    if database_url is not None:
        return await _play_in(
            database_url, settings, scenario_name, scenario, speed, commands, render, out
        )
    with tempfile.TemporaryDirectory(prefix="marketbot-replay-", dir=database_dir) as tmp:
        url = f"sqlite:///{Path(tmp) / 'replay.db'}"
        return await _play_in(url, settings, scenario_name, scenario, speed, commands, render, out)


async def _play_in(
    url: str,
    settings: Settings,
    scenario_name: str,
    scenario: Scenario,
    speed: float | None,
    commands: Sequence[str],
    render: RenderKind,
    out: Console,
) -> ReplayResult:
    try:
        store = SqlStore(url)
        store.upgrade()
    except (SQLAlchemyError, ValueError, OSError) as exc:  # bad URL, server down: one line
        raise ReplayError(f"cannot open the database for --db: {exc}") from None
    try:
        return await _play(settings, scenario_name, scenario, store, speed, commands, render, out)
    finally:
        store.close()


async def _play(
    settings: Settings,
    scenario_name: str,
    scenario: Scenario,
    store: SqlStore,
    speed: float | None,
    commands: Sequence[str],
    render: RenderKind,
    out: Console,
) -> ReplayResult:
    """`marketbot run`'s composition with a replay feed, a simulated clock, a rendering platform."""
    clock = ManualClock(scenario.start)
    platform: ConsolePlatform | PayloadPrinter
    if render == "console":
        platform = ConsolePlatform(render_console, out)
    else:
        platform = PayloadPrinter(render, out)

    def replay_feed(scheduler: JobScheduler) -> ReplayFeed:
        # The recorded day moves the clock through the scheduler, so every job (delivery
        # after its group wait, mute ends, digests) runs at its own simulated time.
        async def advance(when: datetime) -> None:
            await scheduler.advance_to(when, inclusive=False)

        return ReplayFeed(ReplayMarketData(scenario, clock, speed=speed, advance=advance))

    runtime = Runtime(
        settings,
        clock=clock,
        platforms=[platform],
        store=store,
        feed=replay_feed,
        context_symbols=scenario.context_symbols or settings.alerts.context_symbols,
        intervals=REPLAY_JOB_INTERVALS,
        front_ends=False,
    )
    ctx = CommandContext(channel=CONSOLE_CHANNEL, user="replay", platform="console")
    replies = []
    out.print(f"[bold]Replaying {scenario.name}[/bold]: {scenario.description}", highlight=False)
    for line in commands or scenario.default_watches:
        reply = runtime.router.handle(line, ctx)
        replies.append(reply.text)
        out.print(f"> {line}\n{reply.text}", style=None if reply.ok else "red", highlight=False)
    await runtime.start()
    try:
        await runtime.market_closed()
        # Let the last group's wait run out so nothing decided is left unsent.
        await runtime.advance(runtime.pipeline.grouping.group_wait + timedelta(seconds=1))
    finally:
        await runtime.stop()
    stats = runtime.pipeline.stats
    out.print(
        f"[dim]replay of {scenario_name} done: {plural(stats.alerts_stored, 'alert')}, "
        f"{plural(stats.messages_sent, 'message')}, {plural(stats.messages_edited, 'edit')}, "
        f"{plural(stats.digests_sent, 'digest')}[/dim]",
        highlight=False,
    )
    return ReplayResult(messages=list(platform.sent), replies=replies)
