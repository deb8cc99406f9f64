"""One quote's path, traced: a frame from the fake Yahoo stream to a post on the fake Slack.

The whole bot runs (``Runtime``: the Yahoo source with its stream, the market loop, ingest,
the engine, the SQLite store, delivery, the Slack platform) against the loopback fakes. While
one pricing frame travels from the websocket to ``chat.postMessage`` and its outbox row is
confirmed, a ``sys.setprofile`` tracer records every entry into a project module (``alerts.*``,
``bot.*``; fakes and tests aside). The test asserts the path is the documented one below, so a
new module on the way or a new call back up into a module the quote already left fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from pydantic import SecretStr

from alerts.commands import CommandContext
from alerts.ports import ManualClock
from bot.fakes.slack_server import FakeSlack
from bot.fakes.yahoo_server import FakeYahoo
from bot.fakes.yahoo_streamer import PRE_MARKET, FakeStreamer, encode_pricing
from bot.runner import Runtime
from bot.settings import Settings, SlackSettings
from bot.slack.app import create_slack_platform
from tests.conftest import premarket_quote

PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)
CHANNEL = "C0MARKETS"


def _project(module: object) -> bool:
    return (
        isinstance(module, str)
        and module.split(".")[0] in ("alerts", "bot")
        and not module.startswith("bot.fakes")
    )


# (caller module, module, function, task, thread): the caller is the nearest project frame
# below on the stack, None when the event loop resumed a task (a coroutine's resumption is a
# profile "call" too) or a worker thread began a call; for those the task's coroutine is
# named (None on a worker thread), so each step can be told apart, thread by thread.
Entry = tuple[str | None, str, str, str | None, int]


class Tracer:
    """Records each entry into a project module as an :data:`Entry`, while :meth:`tracing`."""

    OWN_TASK = "(the test)"

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._on = False
        self._own: asyncio.Task[object] | None = None

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or not self._on:
            return
        module = frame.f_globals.get("__name__")
        if not _project(module):
            return
        below = frame.f_back
        while below is not None and not _project(below.f_globals.get("__name__")):
            below = below.f_back
        caller = below.f_globals["__name__"] if below is not None else None
        task = None
        if caller is None:
            with contextlib.suppress(RuntimeError):  # a worker thread has no running loop
                current = asyncio.current_task()
                if current is self._own:
                    task = self.OWN_TASK
                elif current is not None:
                    task = current.get_coro().__qualname__  # type: ignore[union-attr]
        self.entries.append((caller, module, frame.f_code.co_qualname, task, threading.get_ident()))

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        """On this thread, and on fresh worker threads for ``asyncio.to_thread`` (the SQLite
        store runs inline, so none are used here; PostgreSQL's lanes would use them)."""
        self._own = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=4, initializer=self._traced))
        sys.setprofile(self)
        self._on = True
        try:
            yield
        finally:
            self._on = False
            sys.setprofile(None)

    def _traced(self) -> None:
        """A worker thread of the executor ``tracing`` installs; no other thread is traced."""
        sys.setprofile(self)


@dataclass(frozen=True)
class QuotePath:
    """What the entries say: modules in the order the quote first reached them, the calls
    between modules, and the calls back into a module the path had already left."""

    modules: list[str]  # every project module entered, in first-entry order
    edges: list[tuple[str, str]]  # (caller, callee) across modules, first occurrence order
    helpers: set[str]  # modules that call no other project module: they answer and return
    spine: list[str]  # the others, in first-entry order: the modules that pass the quote on
    back_up: list[tuple[str, str]]  # calls into a spine module entered before the caller
    tasks: list[str]  # the tasks the quote's work ran in, in turn (hand-offs)

    @classmethod
    def of(cls, entries: list[Entry], observers: set[str]) -> QuotePath:
        """``observers``: tasks not on the quote's path (the test's own, the scheduler's)."""
        kept: list[Entry] = []
        current: dict[int, str | None] = {}  # thread -> the task (or None) it runs now
        tasks: list[str] = []
        for entry in entries:
            caller, _, _, task, thread = entry
            if caller is None:
                current[thread] = task
                if task is not None and task not in observers and task not in tasks[-1:]:
                    tasks.append(task)
            if current.get(thread) not in observers:
                kept.append(entry)
        modules = list(dict.fromkeys(module for _, module, _, _, _ in kept))
        edges = list(
            dict.fromkeys(
                (caller, module)
                for caller, module, _, _, _ in kept
                if caller is not None and caller != module
            )
        )
        callers = {caller for caller, _ in edges}
        helpers = {m for m in modules if m not in callers}
        spine = [m for m in modules if m not in helpers]
        first = {m: i for i, m in enumerate(modules)}
        back_up = [(a, b) for a, b in edges if b not in helpers and first[b] < first[a]]
        return cls(modules, edges, helpers, spine, back_up, tasks)


# The documented path: the modules that pass the quote on, in the order it reaches them.
SPINE = [
    "bot.market.yahoo_stream",  # the frame decoded into a Quote
    "bot.market.source",  # reference close, quality gate, queued as a batch
    "bot.market_loop",  # the batch taken off the queue, handed to the pipeline
    "bot.pipeline",  # Pipeline.ingest_quotes: the facade forwards
    "bot.pipeline.ingest",  # quotes remembered, engine asked, decisions, one transaction
    "bot.pipeline.market_view",  # latest quote kept (for /price, context lines)
    "alerts.engine.core",  # Engine.on_quotes: candidates, readings, lifecycle, keys
    "alerts.engine.readings",  # the rule family's reading (bands.crossing below it)
    "alerts.engine.keys",  # alert key, severity, the Alert
    "bot.store.sql",  # known keys, decision inputs, record_evaluation commits
    "alerts.grouping",  # which message the alert goes into
    "bot.store.codec",  # the alert as a row (and back, for the claim)
    "bot.pipeline.delivery",  # woken by ingest, claims, renders, sends, confirms
    "bot.health",  # the market loop marks the data fresh (a side branch of the loop)
    "bot.store.outbox",  # claim, then confirm once Slack accepted
    "bot.pipeline.platforms",  # which platform serves slack:C0MARKETS
    "bot.slack.platform",  # handles(); later send() -> chat.postMessage
    "bot.news.explain",  # headlines and broad-move attribution for the message
    "alerts.compose",  # the AlertMessage
    "bot.news.window",  # the news window since the previous close (market calendar)
    "bot.render.slack_blocks",  # Block Kit (alerts.mentions escapes and fits: it only answers)
    "bot.render.format",  # the alert line's numbers
]

# Calls back into a module the quote had already left (by first entry), each for a reason
# written here. One more fails the test: a new hop back up is a change of design, to be
# written down. They come in two kinds.
#
# By design: calls the order rule counts as "back up" that are no dependency on an upstream
# stage's internals: the consumer pulling from its producer's queue, a sibling module of the
# same package, or a read of the state both stages share (the store, the market view).
BY_DESIGN = {
    ("bot.market_loop", "bot.market.source"): "pull: the loop takes the next batch off the "
    "source's queue (async iterator); the consumer asks the producer, nothing flows back",
    ("bot.store.outbox", "bot.store.codec"): "sibling: a claimed row decoded back into an "
    "Alert by the store package's codec",
    ("bot.pipeline.delivery", "bot.pipeline.market_view"): "shared state: the read model "
    "ingest keeps (futures context, headlines, the engine's latest moves handed down)",
    ("bot.pipeline.delivery", "bot.store.sql"): "shared state: the channel's watches and "
    "baskets, read from the store both stages share",
}

# Design debts: a stage reaching into an upstream stage's internals, or a helper calling back
# into its caller. Removed (and so not listed): delivery -> pipeline.ingest (Ingest.baskets:
# now read from the store), delivery -> alerts.engine.core (latest_changes: ingest hands the
# engine's moves down into the market view), alerts.mentions -> render.slack_blocks (fit()
# called the renderer's do-nothing escape back: "already escaped" is now data, escape=None),
# and with it render.format -> alerts.mentions, no longer back up once mentions only answers.
BACK_UP: dict[tuple[str, str], str] = {}

# The tasks the quote's work runs in, in turn: the stream's reader queues a batch, the market
# loop ingests it and the commit wakes delivery (the documented wake), which claims and starts
# a lane; the lane sends in its own task (no send task of its own since the storm work: a
# request leaves right after its render) and confirms.
TASKS = [
    "YahooStream._reader",
    "run_market_loop",
    "Pipeline.run_delivery",
    "DeliveryWorker._lane",
    "Pipeline.run_delivery",
    "DeliveryWorker._lane",
]

# The previous note's count, read from the code: 16 stations.
READ_PATH = [
    "bot.market.yahoo_stream",
    "bot.market.source",
    "bot.market_loop",
    "bot.pipeline.ingest",
    "alerts.engine.core",
    "alerts.engine.index",
    "alerts.engine.readings",  # with bands
    "alerts.lifecycle",  # advance
    "alerts.engine.keys",
    "alerts.grouping",
    "bot.store.sql",  # commit and wake
    "bot.pipeline.delivery",
    "bot.store.outbox",  # claim, later confirm
    "alerts.compose",
    "bot.render.slack_blocks",  # with format
    "bot.slack.platform",
]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def streamer() -> AsyncIterator[FakeStreamer]:
    fake = FakeStreamer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def _traced_quote(
    tmp_path: Path, fake_yahoo: FakeYahoo, streamer: FakeStreamer, slack: FakeSlack
) -> Tracer:
    """The bot running; one frame pushed and traced until its message is confirmed."""
    # The poll before the stream covers NVDA sees -8.9%: no alert. The streamed frame is the
    # one quote that crosses `drop 10%` (-11.0%).
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=130.0, at=PREMARKET)
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'run.db'}",
            "console": False,
            "yahoo": {
                "base_url": fake_yahoo.base_url,
                "stream_url": streamer.url,
                "stream_enabled": True,
                "poll_interval_seconds": 60,
            },
            "news": {"enabled": False},
            # No chart: its own task would run after the post; the path is the text message.
            "alerts": {"context_symbols": [], "group_wait_seconds": 0, "charts": False},
        }
    )
    platform = create_slack_platform(
        SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
    )
    runtime = Runtime(
        settings, clock=ManualClock(PREMARKET), platforms=[platform], front_ends=False
    )
    ctx = CommandContext(f"slack:{CHANNEL}", "U1", "slack")
    assert runtime.router.handle("/watch NVDA drop 10%", ctx).ok
    tracer = Tracer()
    await runtime.start()
    try:
        # Bounds, not sleeps: generous, the machine running the suite may be loaded.
        await streamer.wait_for(lambda f: "NVDA" in f.subscribed, limit=30)
        await runtime.settle()
        assert slack.messages == {}
        frame = encode_pricing(
            "NVDA", 127.0, PREMARKET, market_hours=PRE_MARKET, previous_close=142.62
        )
        with tracer.tracing():
            assert await streamer.push_frame("NVDA", frame) == 1
            await asyncio.wait_for(slack.message_posted.wait(), 30)
            await runtime.settle()  # the outbox row confirmed
        assert runtime.store.outbox_counts() == {"sent": 1}
    finally:
        await runtime.stop()
    [posted] = slack.messages.values()
    assert posted.channel == CHANNEL
    assert "NVDA" in (posted.text or "")
    return tracer


async def test_one_streamed_quote_takes_the_documented_path_to_slack(
    tmp_path: Path, fake_yahoo: FakeYahoo, streamer: FakeStreamer, slack: FakeSlack
) -> None:
    tracer = await _traced_quote(tmp_path, fake_yahoo, streamer, slack)
    observers = {
        Tracer.OWN_TASK,  # the test's settle and waits
        "JobScheduler._loop",  # the scheduler's loop: nothing due on the frozen clock
        "JobScheduler.sleep",  # delivery's timer, cancelled by the wake
    }
    path = QuotePath.of(tracer.entries, observers)
    print(
        f"\nquote path: {len(path.modules)} modules entered, {len(path.spine)} pass the quote "
        f"on, {len(path.helpers)} only answer; {len(path.edges)} cross-module calls; "
        f"{len(path.back_up)} back up ({sum(e in BY_DESIGN for e in path.back_up)} by design, "
        f"{sum(e in BACK_UP for e in path.back_up)} design debts); "
        f"read from the code: {len(READ_PATH)}"
    )
    entered: dict[str, list[str]] = {}
    for _, module, function, _, _ in tracer.entries:
        names = entered.setdefault(module, [])
        if function not in names and "<" not in function:
            names.append(function)
    for n, module in enumerate(path.modules, 1):
        kind = "passes on" if module in path.spine else "answers  "
        print(f"  {n:2d} {kind} {module}: {', '.join(entered[module][:4])}")
    print("  back up:", ", ".join(f"{a} -> {b}" for a, b in path.back_up))
    assert path.tasks == TASKS
    assert path.spine == SPINE
    documented = BY_DESIGN | BACK_UP
    assert {edge: documented.get(edge, "undocumented") for edge in path.back_up} == documented
    assert not any(m.startswith(("bot.fakes", "tests")) for m in path.modules)
    # Every module the reading named is on the traced path.
    assert set(READ_PATH) <= set(path.modules)


def test_the_path_rule_sees_a_hop_back_up() -> None:
    entries: list[Entry] = [
        (None, "bot.market_loop", "run", "loop", 1),
        ("bot.market_loop", "bot.pipeline.ingest", "quotes", None, 1),
        ("bot.pipeline.ingest", "bot.store.sql", "record", None, 1),
        (None, "bot.store.sql", "commit", None, 2),  # on a worker thread
        ("bot.store.sql", "alerts.models", "Alert.__init__", None, 2),
        ("bot.store.sql", "bot.pipeline.ingest", "callback", None, 1),  # the store calls back up
        (None, "bot.scheduler", "tick", "observer", 1),
        ("bot.store.sql", "alerts.models", "Alert.__init__", None, 2),  # still the worker's
        ("bot.scheduler", "bot.pipeline.ingest", "sync", None, 1),  # an observer's, ignored
    ]
    path = QuotePath.of(entries, {"observer"})
    assert path.modules == [
        "bot.market_loop",
        "bot.pipeline.ingest",
        "bot.store.sql",
        "alerts.models",
    ]
    assert path.helpers == {"alerts.models"}
    assert path.back_up == [("bot.store.sql", "bot.pipeline.ingest")]
    assert path.tasks == ["loop"]


def test_delivery_renders_with_the_moves_the_engine_judged(tmp_path: Path) -> None:
    """Delivery no longer asks the engine (``latest_changes``): ingest hands the engine's
    verdict down into the market view after each evaluation. The view's moves must stay the
    engine's through good quotes, a bad print (NoData), the gate's unavailable symbols, a
    benchmark, an unwatched symbol, a watch added and one removed."""
    from datetime import timedelta

    from alerts.engine import Engine
    from alerts.models import MarketSession, Quote
    from bot.pipeline import Pipeline
    from bot.store import SqlStore

    clock = ManualClock(PREMARKET)
    store = SqlStore(f"sqlite:///{tmp_path / 'moves.db'}")
    store.upgrade()
    pipeline = Pipeline(store, Engine(), [], clock, context_symbols=("NQ=F",))
    store.add_watch("console:a", "NVDA", "drop 10%", now=clock.now())
    store.add_watch("console:a", "AMD", "drop 5% vs QQQ", now=clock.now())
    pipeline.load()

    def quote(symbol: str, price: float, close: float = 100.0) -> Quote:
        return Quote(symbol, price, clock.now(), MarketSession.PRE, previous_close=close)

    def same() -> dict[str, float]:
        moves = pipeline.market.moves()
        assert moves == pipeline.engine.latest_changes()
        return moves

    steps = [
        ([quote("NVDA", 95.0), quote("QQQ", 99.0), quote("NQ=F", 101.0)], None),
        ([quote("AMD", 90.0), quote("TSLA", 80.0)], None),
        ([quote("NVDA", 0.0)], None),  # a bad print: NVDA in NoData, no move
        ([], {"AMD": "no data"}),  # the gate found AMD unusable
        ([quote("NVDA", 93.0), quote("AMD", 91.0)], None),  # both back
    ]
    seen = []
    for quotes, unavailable in steps:
        clock.advance(timedelta(seconds=5))
        pipeline.ingest_quotes(quotes, unavailable)
        seen.append(sorted(same()))
    assert seen[0] == ["NQ=F", "NVDA", "QQQ"]  # NQ=F: the benchmark of relative moves
    assert "NVDA" not in seen[2]
    assert "AMD" not in seen[3]
    assert seen[4] == ["AMD", "NQ=F", "NVDA", "QQQ"]
    store.add_watch("console:a", "TSLA", "drop 10%", now=clock.now())
    store.remove_watches("console:a", "NVDA", None)
    assert pipeline.sync_watches()
    same()
    clock.advance(timedelta(seconds=5))
    pipeline.ingest_quotes([quote("TSLA", 85.0), quote("NVDA", 97.0)])
    same()
    store.close()
