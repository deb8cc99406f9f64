"""`marketbot replay`: a recorded market day through the real pipeline on a simulated clock."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

from rich.console import Console
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from alerts.commands import CommandContext
from alerts.models import AlertMessage
from alerts.ports import ManualClock, MessageRef
from alerts.scenario import Scenario, ScenarioError
from alerts.wording import plural
from bot.console import CONSOLE_CHANNEL, ConsolePlatform
from bot.market.replay import REPLAY_TICK_INTERVAL as REPLAY_TICK_INTERVAL  # re-exported
from bot.market.replay import ReplayFeed, ReplayMarketData
from bot.render import render_payload
from bot.render.console import render_reply
from bot.render.console_text import console_renderer
from bot.runner import JobIntervals, Runtime
from bot.scenarios import UnknownScenarioError, open_scenario
from bot.scheduler import JobScheduler
from bot.settings import Settings
from bot.store import SqlStore

RenderKind = Literal["console", "slack", "discord"]

# Simulated time jumps from event to event: the next tick, the next job or wait due. Only
# this process changes the replay's database and its commands all run before the day starts,
# so what the periodic jobs look for is known up front: each new alert wakes delivery, which
# sleeps until its next due row by itself; mute ends and digests get a job at their own times
# (``_schedule_known_ends``). The periodic rounds are a safety net only, and no watch sync.
# (Per simulated minute, they were 2,800 rounds and most of the replay's CPU.)
REPLAY_SAFETY_NET = timedelta(hours=1)
REPLAY_JOB_INTERVALS = JobIntervals(
    delivery=REPLAY_SAFETY_NET,
    watch_sync=None,
    mute_check=REPLAY_SAFETY_NET,
    digest_check=REPLAY_SAFETY_NET,
)


class ReplayError(Exception):
    """The scenario cannot be replayed (unknown name, invalid file); the message says why."""


class PayloadPrinter:
    """A platform that prints the exact payload Slack or Discord would receive.

    One JSON object per line, ``{"request", "message", "channel", "payload"}``, and nothing
    else on that stream, so ``marketbot replay ... --render slack | jq .payload`` works.
    """

    def __init__(
        self,
        kind: Literal["slack", "discord"],
        out: IO[str],
        *,
        timezone: str | None = None,
    ) -> None:
        self.name: str = kind
        self._kind: Literal["slack", "discord"] = kind
        self._out = out
        self._timezone = timezone
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
        request = {
            "slack": {"post": "chat.postMessage", "update": "chat.update"},
            "discord": {
                "post": "POST /channels/{channel.id}/messages",
                "update": "PATCH /channels/{channel.id}/messages/{message.id}",
            },
        }[self._kind][action]
        payload = json.loads(render_payload(message, self._kind, tz=self._timezone))
        line = {
            "request": request,
            "message": message_id,
            "channel": message.channel,
            "payload": payload,
        }
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._out.flush()
        self.sent.append((message_id, message))
        return MessageRef(channel=message.channel, message_id=message_id)


class ChartFiles:
    """Wraps a replay's platform so each chart it would upload is written to ``folder``.

    Delivery and digests post a chart only to a platform that takes images; this makes the
    replay's platform one, so the files are exactly the charts the live bot would post.
    """

    def __init__(self, inner: ConsolePlatform | PayloadPrinter, folder: Path, say: Console):
        self.inner = inner
        self.name = inner.name
        self.folder = folder
        self._say = say
        self.written: list[Path] = []

    @property
    def sent(self) -> list[tuple[str, AlertMessage]]:
        return self.inner.sent

    def handles(self, channel: str) -> bool:
        return self.inner.handles(channel)

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        return await self.inner.send(message, idempotency_key=idempotency_key)

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return await self.inner.edit(ref, message)

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> Path:
        # Numbered in posting order: the file of message #N sorts next to its neighbours.
        stem = Path(filename).stem or "chart"
        path = self.folder / f"{len(self.written) + 1:03d}-{stem}.png"
        path.write_bytes(image)
        self.written.append(path)
        self._say.print(f"[dim]chart for {title!r} written to {path}[/dim]", highlight=False)
        return path


@dataclass(frozen=True)
class ReplayResult:
    messages: list[tuple[str, AlertMessage]]  # (message id, message) in the order shown
    replies: list[str]
    charts: list[Path] = field(default_factory=list)  # files written for ``charts_dir``


@dataclass(frozen=True)
class ReplayOutput:
    """Where a replay speaks: prose on ``console``; payloads (``--render slack|discord``) as
    JSON lines on ``payloads``; chart PNGs into ``charts_dir`` when given."""

    console: Console
    payloads: IO[str]
    charts_dir: Path | None = None


async def run_replay(
    settings: Settings,
    scenario_name: str,
    *,
    speed: float | None = None,
    commands: Sequence[str] = (),
    render: RenderKind = "console",
    console: Console | None = None,
    payloads: IO[str] | None = None,
    database_dir: Path | None = None,
    database_url: str | None = None,
    charts_dir: Path | None = None,
) -> ReplayResult:
    """Replay into a throw-away SQLite database, so a demo never touches the real one.

    ``database_url`` (``replay FILE --db URL``) continues from that database instead: its
    watches, rule states and sent digests carry over, so market days can be replayed one
    after another and what a restart would send is what the next replay sends.
    ``payloads`` takes the JSON lines of ``render`` slack or discord (default: the console's
    file); ``charts_dir`` gets the chart PNG of every message that would carry one.
    """
    try:
        scenario = open_scenario(scenario_name)
    except (UnknownScenarioError, ScenarioError) as exc:
        raise ReplayError(str(exc)) from None
    out = console or Console()
    output = ReplayOutput(out, payloads or out.file, charts_dir)
    if charts_dir is not None and not settings.alerts.charts:
        # Asking for the files is asking for the charts, whatever the settings file says.
        alerts = settings.alerts.model_copy(update={"charts": True})
        settings = settings.model_copy(update={"alerts": alerts})
    if database_url is not None:
        return await _play_in(
            database_url, settings, scenario_name, scenario, speed, commands, render, output
        )
    with tempfile.TemporaryDirectory(prefix="marketbot-replay-", dir=database_dir) as tmp:
        url = f"sqlite:///{Path(tmp) / 'replay.db'}"
        return await _play_in(
            url, settings, scenario_name, scenario, speed, commands, render, output
        )


async def _play_in(
    url: str,
    settings: Settings,
    scenario_name: str,
    scenario: Scenario,
    speed: float | None,
    commands: Sequence[str],
    render: RenderKind,
    output: ReplayOutput,
) -> ReplayResult:
    try:
        store = SqlStore(url)
        store.upgrade()
    except (SQLAlchemyError, ValueError, OSError) as exc:  # bad URL, server down: one line
        raise ReplayError(f"cannot open the database for --db: {exc}") from None
    try:
        return await _play(
            settings, scenario_name, scenario, store, speed, commands, render, output
        )
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
    output: ReplayOutput,
) -> ReplayResult:
    """`marketbot run`'s composition with a replay feed, a simulated clock, a rendering platform."""
    clock = ManualClock(scenario.start)
    out = output.console
    shown: ConsolePlatform | PayloadPrinter
    if render == "console":
        shown = ConsolePlatform(console_renderer(settings.timezone), out)
    else:
        shown = PayloadPrinter(render, output.payloads, timezone=settings.timezone)
    platform: ConsolePlatform | PayloadPrinter | ChartFiles = shown
    if output.charts_dir is not None:
        platform = ChartFiles(shown, output.charts_dir, out)

    def replay_feed(scheduler: JobScheduler) -> ReplayFeed:
        # The recorded day moves the clock through the scheduler, so every job (delivery
        # after its group wait, mute ends, digests) runs at its own simulated time; at each
        # stop the runtime settles, delivery included, so what is sent then (a chart drawn
        # off the loop, say) is sent before the clock jumps on, however fast it jumps.
        async def advance(when: datetime) -> None:
            await scheduler.advance_to(when, inclusive=False, settle=runtime.settle)

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
    out.print(
        Text.assemble((f"Replaying {scenario.name}", "bold"), f": {scenario.description}"),
        highlight=False,
    )
    for line in commands or scenario.default_watches:
        reply = runtime.router.handle(line, ctx)
        replies.append(reply.text)
        # Typed lines and replies are text, never Rich markup (a note may hold "[/]"); the
        # replies' Slack-style markup is drawn as the console draws it.
        out.print(Text(f"> {line}"), highlight=False)
        out.print(render_reply(reply.text, ok=reply.ok), highlight=False)
    _schedule_known_ends(runtime, scenario)
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
    written = platform.written if isinstance(platform, ChartFiles) else []
    if output.charts_dir is not None:
        noun = "chart" if len(written) == 1 else "charts"
        out.print(f"[dim]{len(written)} {noun} written to {output.charts_dir}[/dim]")
    return ReplayResult(messages=list(platform.sent), replies=replies, charts=written)


def _schedule_known_ends(runtime: Runtime, scenario: Scenario) -> None:
    """A job at each mute's end and each digest time after the start, so they run exactly when
    due while the clock jumps from event to event (see ``REPLAY_JOB_INTERVALS``); those past
    the day's end are never reached."""
    pipeline, scheduler = runtime.pipeline, runtime.scheduler
    start, end = scenario.start.astimezone(UTC), scenario.end.astimezone(UTC)

    async def end_mutes() -> None:
        await pipeline.end_expired_mutes()

    async def send_digests() -> None:
        await pipeline.send_due_digests()

    # Mutes first, digests second: the order their periodic jobs run in at one time.
    for until in sorted({m.until.astimezone(UTC) for m in runtime.store.all_mutes()}):
        if until > start:
            scheduler.once(f"mute-end {until.isoformat()}", until, end_mutes)
    for when in sorted(_digest_times(runtime, start, end)):
        scheduler.once(f"digest {when.isoformat()}", when, send_digests)


def _digest_times(runtime: Runtime, start: datetime, end: datetime) -> set[datetime]:
    """Every channel's digest time after ``start`` on each local day up to the day after
    ``end`` (the digest job itself decides whether it is due: trading day, already sent)."""
    times: set[datetime] = set()
    for channel in runtime.store.channels():
        schedule = runtime.pipeline.digests.schedule(channel)
        if schedule is None:
            continue
        day = schedule.local_day(start) - timedelta(days=1)
        last = schedule.local_day(end) + timedelta(days=1)
        while day <= last:
            when = schedule.scheduled(day).astimezone(UTC)
            if when > start:
                times.add(when)
            day += timedelta(days=1)
    return times
