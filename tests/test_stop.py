"""`marketbot run` stops within seconds of SIGTERM, whatever it is doing.

Subprocesses: Slack's Socket Mode socket and Discord's gateway are connected, a delivery to
each is in flight against a server that stopped answering (and a Yahoo request too): the stop
still ends the process in a bounded time, exit 0, and the undelivered alerts stay in the outbox
for the next start. In process: the mechanisms behind the bound (bot.shutdown).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.engine import Engine, EngineConfig
from alerts.ports import ManualClock
from bot.fakes.discord_server import MANAGE_CHANNELS, MEMBER_PERMISSIONS, FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.fakes.yahoo_server import FakeYahoo
from bot.pipeline import Pipeline
from bot.runner import Runtime
from bot.shutdown import DaemonThreadPool, StopBudget
from bot.store import SqlStore
from tests.conftest import run_settings
from tests.support.runs import MarketbotRun, SlowToCancel, chat_env
from tests.test_run import WatchedConsole
from tests.test_run_processes import Ticker, run_env

# The runtime's own stop budget is about 5 s (bot.shutdown); docker stop allows 10 s.
EXIT_WITHIN = 8.0


@pytest.fixture
def ticker(fake_yahoo: FakeYahoo) -> Iterator[Ticker]:
    with Ticker(fake_yahoo) as running:
        yield running


async def _sigterm_mid_delivery(
    tmp_path: Path, fake_yahoo: FakeYahoo, ticker: Ticker, *, yahoo_stalls: bool
) -> float:
    # BTC-USD trades around the clock: the run has an open market whatever the wall clock says.
    now = datetime.now(UTC)
    fake_yahoo.set_closes("BTC-USD", [(now.date() - timedelta(days=1), 100.0)])
    ticker.set("BTC-USD", 85.0)  # -15%: the watches below fire at the first poll
    database_url = f"sqlite:///{tmp_path / 'bot.db'}"
    async with FakeSlack() as slack, FakeDiscord() as discord_fake:
        # Both servers take the alert and never answer: each delivery stays in flight.
        slack.stall(r"chat\.postMessage")
        discord_fake.stall(r"POST /channels/\d+/messages")
        env = run_env(database_url, fake_yahoo, tmp_path / "cache")
        env.update(MARKETBOT_CONSOLE="false", **chat_env(slack, discord_fake))
        async with MarketbotRun(tmp_path, env) as run:
            await asyncio.wait_for(slack.connected.wait(), 120)
            await slack.slash_command("/watch", "BTC-USD drop 10%")
            await discord_fake.wait_for(lambda: discord_fake.guild_id in discord_fake.commands, 120)
            await discord_fake.interact(
                "watch",
                {"target": "BTC-USD", "rule": "drop 10%"},
                permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS,
            )
            await slack.wait_stalled(1, within=60)
            await discord_fake.wait_stalled(1, within=60)
            if yahoo_stalls:
                # Yahoo goes quiet too: the next poll waits on its 10 s request timeout.
                polls = fake_yahoo.counts["quote"]
                fake_yahoo.fail("/v7/finance/quote", "slow", delay=30.0, times=-1)
                async with asyncio.timeout(30):
                    # The fake Yahoo is a threaded server that counts, it signals nothing.
                    while fake_yahoo.counts["quote"] <= polls:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            assert discord_fake.identified.is_set()  # the gateway session is up
        elapsed = run.stop_seconds  # SIGTERM (leaving the block) to the exit
    for line in run.stderr.splitlines():
        if "stopp" in line:
            print(line)  # what the stop did, for `pytest -s`
    assert run.returncode == 0, run.stderr[-3000:]
    assert elapsed <= EXIT_WITHIN, (elapsed, run.stderr[-3000:])
    store = SqlStore(database_url)
    try:
        # Neither server answered: both alerts wait in the outbox (leased rows are taken up
        # again at the next start), none is lost or marked sent.
        counts = store.outbox_counts()
        assert sum(counts.values()) == 2, counts
        assert set(counts) <= {"pending", "sending"}, counts
    finally:
        store.close()
    return elapsed


async def test_sigterm_mid_delivery_with_slack_and_discord_connected_exits_within_seconds(
    tmp_path: Path, fake_yahoo: FakeYahoo, ticker: Ticker, discord_endpoints: None
) -> None:
    elapsed = await _sigterm_mid_delivery(tmp_path, fake_yahoo, ticker, yahoo_stalls=False)
    print(f"exit {elapsed:.2f} s after SIGTERM")


async def test_sigterm_while_a_yahoo_request_hangs_too_exits_within_seconds(
    tmp_path: Path, fake_yahoo: FakeYahoo, ticker: Ticker, discord_endpoints: None
) -> None:
    """The poll's thread waits on a 10 s request timeout; the exit does not (it took 11.9 s)."""
    elapsed = await _sigterm_mid_delivery(tmp_path, fake_yahoo, ticker, yahoo_stalls=True)
    print(f"exit {elapsed:.2f} s after SIGTERM")


# -- in process: the mechanisms behind the bound --------------------------------------------


async def test_a_stop_while_delivery_puts_its_wait_away_is_not_swallowed(tmp_path: Path) -> None:
    """The race a7bfcdd worked around by ordering: delivery woke, is cancelling its sleep, and
    the stop's cancel arrives right then. It used to be taken for the sleep's own cancel and
    swallowed; delivery then looped on and the stop waited for it forever."""
    clock = ManualClock(datetime(2025, 1, 27, 9, 0, tzinfo=UTC))
    store = SqlStore(f"sqlite:///{tmp_path / 'race.db'}")
    store.upgrade()
    delivery = Pipeline(store, Engine(EngineConfig()), [], clock).delivery
    slow = SlowToCancel()
    delivery.sleep = slow.sleep
    run = asyncio.create_task(delivery.run())
    try:
        await slow.sleeping.wait()
        delivery.wake()  # the wait ends; delivery cancels its sleep and waits for it...
        await slow.cancelling.wait()
        run.cancel()  # ...when the stop arrives
        slow.release.set()
        done, _ = await asyncio.wait({run}, timeout=5)
        assert run in done, "delivery swallowed the stop and kept running"
        assert run.cancelled()
    finally:
        run.cancel()
        await asyncio.wait({run}, timeout=5)
        store.close()


class _Stubborn:
    """A service that ignores the first ``ignores`` cancels (a swallowed one), then ends."""

    def __init__(self, ignores: int) -> None:
        self.ignores = ignores
        self.cancels = 0
        self.started, self.ended = asyncio.Event(), asyncio.Event()

    async def run(self) -> None:
        self.started.set()
        try:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancels += 1
                    if self.cancels > self.ignores:
                        raise
        finally:
            self.ended.set()


class _RuntimeWith(Runtime):
    def __init__(self, extra: _Stubborn, *args: Any, **kwargs: Any) -> None:
        self.extra = extra
        super().__init__(*args, **kwargs)

    def services(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [*super().services(), ("stubborn", self.extra.run())]


def _runtime(tmp_path: Path, fake_yahoo: FakeYahoo, service: _Stubborn) -> Runtime:
    runtime = _RuntimeWith(
        service,
        run_settings(tmp_path, fake_yahoo),
        clock=ManualClock(datetime(2025, 1, 27, 9, 5, tzinfo=UTC)),
        platforms=[WatchedConsole()],
        commands_in=asyncio.Queue[str]().get,
    )
    runtime.stop_budget = StopBudget(grace=0.3, insist=0.5, slow=0.2, close=1.0)
    return runtime


async def test_a_service_that_swallowed_its_cancel_is_stopped_and_named_as_slow(
    tmp_path: Path, fake_yahoo: FakeYahoo, caplog: pytest.LogCaptureFixture
) -> None:
    service = _Stubborn(ignores=1)
    runtime = _runtime(tmp_path, fake_yahoo, service)
    await runtime.start()
    await service.started.wait()
    caplog.set_level("INFO", logger="marketbot")
    await runtime.stop()
    assert service.ended.is_set()
    assert service.cancels == 2  # the grace's cancel was swallowed; the next one was not
    assert runtime.running() == []
    slow = [r.getMessage() for r in caplog.records if "slow to stop" in r.getMessage()]
    assert len(slow) == 1, slow
    assert slow[0].startswith("stopping: stubborn was slow to stop"), slow


async def test_a_service_that_never_stops_is_left_behind_named_and_the_stop_ends_in_budget(
    tmp_path: Path, fake_yahoo: FakeYahoo, caplog: pytest.LogCaptureFixture
) -> None:
    service = _Stubborn(ignores=10**9)
    runtime = _runtime(tmp_path, fake_yahoo, service)
    await runtime.start()
    await service.started.wait()
    caplog.set_level("INFO", logger="marketbot")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await runtime.stop()
    took = loop.time() - began
    budget = runtime.stop_budget
    assert took < budget.tasks + 3 * budget.close, took
    assert runtime.running() == ["stubborn"]  # everything else stopped
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["stopping: stubborn did not stop within 0.8 s; left behind"], errors
    service.ignores = 0  # let the test's loop end it
    for task in runtime._tasks:
        task.cancel()
    await service.ended.wait()


def test_the_daemon_pool_does_not_wait_out_a_blocking_call_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hanging_request() -> None:
        entered.set()
        release.wait(60)

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(DaemonThreadPool(grace=0.2))
        assert await asyncio.to_thread(lambda: 42) == 42
        hanging = asyncio.ensure_future(asyncio.to_thread(hanging_request))
        await asyncio.to_thread(entered.wait, 5)
        assert not hanging.done()

    began = time.monotonic()
    try:
        asyncio.run(main())  # shuts the default executor down, as `marketbot run` ends
    finally:
        release.set()
    assert time.monotonic() - began < 5
    [warning] = [r.getMessage() for r in caplog.records if "blocking call" in r.getMessage()]
    assert warning.startswith("stopping: not waiting for 1 blocking call(s) still running: ")
    assert warning.endswith(".hanging_request"), warning
