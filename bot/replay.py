"""`marketbot replay`: a recorded market day through the real pipeline on a simulated clock."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from alerts.commands import CommandContext
from alerts.models import AlertMessage
from alerts.ports import ManualClock, MessageRef
from alerts.quality import QualityGate
from alerts.scenario import Scenario, ScenarioError
from bot.console import CONSOLE_CHANNEL, ConsolePlatform
from bot.market.replay import ReplayMarketData
from bot.pipeline import Pipeline
from bot.render import render_payload
from bot.render.console_text import render_console
from bot.runner import build_engine, build_router, grouping_config
from bot.scenarios import UnknownScenarioError, open_scenario
from bot.settings import Settings
from bot.store import SqlStore

RenderKind = Literal["console", "slack", "discord"]

# Scenario ticks are a minute apart; a quote older than two of them is stale, as live.
REPLAY_TICK_INTERVAL = timedelta(minutes=1)


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
    clock = ManualClock(scenario.start)
    market = ReplayMarketData(scenario, clock, speed=speed)
    platform: ConsolePlatform | PayloadPrinter
    if render == "console":
        platform = ConsolePlatform(render_console, out)
    else:
        platform = PayloadPrinter(render, out)
    pipeline = Pipeline(
        store,
        build_engine(settings),
        [platform],
        clock,
        grouping=grouping_config(settings),
        context_symbols=scenario.context_symbols or settings.alerts.context_symbols,
    )
    router = build_router(store, settings, market=pipeline, clock=clock)
    ctx = CommandContext(channel=CONSOLE_CHANNEL, user="replay", platform="console")
    replies = []
    out.print(f"[bold]Replaying {scenario.name}[/bold]: {scenario.description}", highlight=False)
    for line in commands or scenario.default_watches:
        reply = router.handle(line, ctx)
        replies.append(reply.text)
        out.print(f"> {line}\n{reply.text}", style=None if reply.ok else "red", highlight=False)
    pipeline.load()

    gate = QualityGate()
    # News published before the start is the feed's backlog: all of it is there at once.
    last_news_check = min([clock.now(), *(n.published for n in scenario.news)]) - timedelta(
        seconds=1
    )
    async for quotes in market.stream(sorted(pipeline.symbols())):
        now = clock.now()
        pipeline.ingest_news(market.news_between(last_news_check, now))
        last_news_check = now
        batch = gate.judge_batch(
            [q.symbol for q in quotes],
            {q.symbol: q for q in quotes},
            now=now,
            expected_interval=REPLAY_TICK_INTERVAL,
            source="replay",
        )
        if pipeline.ingest_quotes(batch.quotes, batch.unavailable):
            # New alerts go out when their group_wait has run, on the simulated clock.
            clock.advance(pipeline.grouping.group_wait)
        await pipeline.deliver_due()
        await pipeline.send_due_digests()
    # Let the last group's wait run out so nothing decided is left unsent.
    clock.advance(pipeline.grouping.group_wait + timedelta(seconds=1))
    await pipeline.deliver_due()
    stats = pipeline.stats
    out.print(
        f"[dim]replay of {scenario_name} done: {stats.alerts_stored} alerts, "
        f"{stats.messages_sent} messages, {stats.messages_edited} edits[/dim]",
        highlight=False,
    )
    return ReplayResult(messages=list(platform.sent), replies=replies)
