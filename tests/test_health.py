"""`/healthz` beside `/metrics`: liveness, readiness (database, fresh data, role), 404 elsewhere."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.health import Check, HealthCheck, MarketFreshness, market_max_age
from bot.runner import Runtime, console_runtime
from tests.conftest import premarket_quote, run_settings
from tests.test_run import WatchedConsole

PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)  # Monday 04:05 ET


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_running_bot_serves_healthz_metrics_and_404(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    settings = run_settings(tmp_path, fake_yahoo, metrics_port=0, metrics_addr="127.0.0.1")
    runtime, bot = console_runtime(settings, clock)
    async with bot.running(runtime):
        assert runtime.metrics is not None
        base = f"http://127.0.0.1:{runtime.metrics.port}"
        await bot.type("/watch NVDA")
        assert len(bot.transcript.posts()) == 1  # quotes came in, an alert went out
        assert runtime.freshness.last_data is not None
        ready = await asyncio.to_thread(_get, base + "/healthz")
        live = await asyncio.to_thread(_get, base + "/healthz/live")
        metrics = await asyncio.to_thread(_get, base + "/metrics")
        unknown = await asyncio.to_thread(_get, base + "/nope")
        root = await asyncio.to_thread(_get, base + "/")
        # Yahoo stops answering and five minutes pass: data is stale while NVDA trades.
        fake_yahoo.fail("/v7/finance/quote", times=-1)
        await bot.advance(minutes=5)
        errors = runtime.source.poller.errors  # type: ignore[attr-defined]
        assert errors["server_error"], errors
        last = runtime.freshness.last_data
        assert last is not None
        assert clock.now() - last > timedelta(minutes=4)
        stale = await asyncio.to_thread(_get, base + "/healthz/ready")
        still_live = await asyncio.to_thread(_get, base + "/healthz/live")
    assert ready[0] == 200, ready
    body = json.loads(ready[1])
    assert body["ready"] is True
    assert body["live"] is True
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["market_data"]["ok"] is True
    assert body["checks"]["role"] == {"ok": True, "detail": "leader"}
    assert live[0] == 200
    assert json.loads(live[1])["checks"] == {}
    assert metrics[0] == 200
    assert "marketbot_symbols_watched" in metrics[1]
    assert unknown[0] == 404
    assert root[0] == 404
    assert stale[0] == 503
    stale_body = json.loads(stale[1])
    assert stale_body["status"] == "not ready"
    assert stale_body["checks"]["market_data"]["ok"] is False
    assert "NVDA" in stale_body["checks"]["market_data"]["detail"]
    assert still_live[0] == 200


async def test_standby_answers_healthz_and_a_leader_takes_the_server_over(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    """`run` keeps one server for the process: standby health until a Runtime leads."""
    from bot.health import standby_health
    from bot.metrics import MetricsServer

    settings = run_settings(tmp_path, fake_yahoo)
    server = MetricsServer(
        0,
        addr="127.0.0.1",
        health=standby_health(asyncio.get_running_loop(), settings.database_url),
    )
    base = f"http://127.0.0.1:{server.port}"
    try:
        waiting = await asyncio.to_thread(_get, base + "/healthz")
        idle_metrics = await asyncio.to_thread(_get, base + "/metrics")
        nothing_typed: asyncio.Queue[str] = asyncio.Queue()
        runtime = Runtime(
            settings,
            clock=ManualClock(PREMARKET),
            platforms=[WatchedConsole()],
            commands_in=nothing_typed.get,
            metrics=server,
        )
        await runtime.start()
        try:
            leading = await asyncio.to_thread(_get, base + "/healthz")
            leading_metrics = await asyncio.to_thread(_get, base + "/metrics")
        finally:
            await runtime.stop()
        stepped_down = await asyncio.to_thread(_get, base + "/healthz")
    finally:
        server.close()
    assert waiting[0] == 200, waiting
    assert json.loads(waiting[1])["checks"]["role"] == {"ok": True, "detail": "standby"}
    assert "marketbot_outbox_rows" not in idle_metrics[1]
    assert leading[0] == 200, leading
    assert json.loads(leading[1])["checks"]["role"]["detail"] == "leader"
    assert "marketbot_outbox_rows" in leading_metrics[1]
    assert json.loads(stepped_down[1])["checks"]["role"]["detail"] == "standby"


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, as the bot's is from the HTTP thread's view."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    # A check that timed out (the blocked-loop test) may leave its call scheduled but never
    # run: finish it here, or it is reported as a coroutine never awaited at teardown.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _check(loop: asyncio.AbstractEventLoop, **kwargs: object) -> HealthCheck:
    def fine() -> None:
        return None

    def fresh() -> Check:
        return Check("market_data", True, "fresh")

    values: dict[str, object] = {"database": fine, "market": fresh, "loop_timeout": 0.3}
    values.update(kwargs)
    return HealthCheck(loop, **values)  # type: ignore[arg-type]


def test_every_check_passing_is_ready(loop_thread: asyncio.AbstractEventLoop) -> None:
    report = _check(loop_thread).report()
    assert report.ready
    assert [c.name for c in report.checks] == ["database", "market_data", "role"]


def test_unreachable_database_is_not_ready(loop_thread: asyncio.AbstractEventLoop) -> None:
    def down() -> None:
        raise ConnectionRefusedError("no")

    report = _check(loop_thread, database=down).report()
    assert report.live
    assert not report.ready
    assert report.as_json()["checks"]["database"] == {  # type: ignore[index]
        "ok": False,
        "detail": "unreachable: ConnectionRefusedError",
    }


@pytest.mark.parametrize(("role", "ready"), [("leader", True), ("standby", True), ("none", False)])
def test_leader_or_standby_is_ready(
    loop_thread: asyncio.AbstractEventLoop, role: str, ready: bool
) -> None:
    report = _check(loop_thread, role=lambda: role).report()
    assert report.ready is ready
    assert report.checks[-1].detail == role


def test_blocked_event_loop_is_not_live(loop_thread: asyncio.AbstractEventLoop) -> None:
    loop_thread.call_soon_threadsafe(time.sleep, 1.0)  # something blocks the loop
    started = time.monotonic()
    report = _check(loop_thread).report()
    assert time.monotonic() - started < 0.9  # answered by the timeout, not after the block
    assert not report.live
    assert report.as_json()["status"] == "not live"


def test_freshness_counts_arrival_only_while_a_market_is_open() -> None:
    clock = ManualClock(PREMARKET)
    freshness = MarketFreshness(clock, market_max_age(15))
    assert freshness.max_age == timedelta(minutes=3)
    assert freshness.check([]).ok  # nothing open: nothing to expect
    assert freshness.check(["NVDA"]).ok  # just started
    clock.advance(timedelta(minutes=4))
    never = freshness.check(["NVDA"])
    assert not never.ok
    assert never.detail == "no market data yet for 240 s while NVDA open"
    freshness.arrived()
    assert freshness.check(["NVDA"]).ok
    clock.advance(timedelta(minutes=3, seconds=1))
    assert not freshness.check(["NVDA", "NQ=F"]).ok
    assert freshness.check([]).ok
