"""Logs: JSON lines, no configured secret anywhere in a full run, and quiet when Yahoo is down."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.commands import CommandContext
from alerts.digest import DIGEST_INDEX_SYMBOLS
from alerts.engine import Engine, EngineConfig
from alerts.ports import ManualClock
from bot.fakes.discord_server import MANAGE_CHANNELS, MEMBER_PERMISSIONS, FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.fakes.yahoo_server import FakeYahoo
from bot.logs import REDACTED, configure_logging, secret_values
from bot.market.source import YahooMarketData
from bot.market.timer import VirtualSleeper
from bot.market.yahoo_poll import YahooPoller
from bot.market_loop import run_market_loop
from bot.pipeline import Pipeline
from bot.runner import Runtime, console_runtime
from bot.settings import Settings
from bot.store import SqlStore
from tests.conftest import premarket_quote, run_settings
from tests.support.runs import MarketbotRun, chat_env
from tests.test_cli import ROOT
from tests.test_run import WatchedConsole

PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)  # Monday 04:05 ET

SLACK_BOT_TOKEN = "xoxb-1111111111-2222222222-SeCrEtBoTtOkEn"
SLACK_APP_TOKEN = "xapp-1-A0FAKE-3333333333-SeCrEtApPtOkEn"
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GsEcRt.DiScOrDtOkEnSeCrEt"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """configure_logging as `run` calls it, into a buffer; the root logger is put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("yfinance", "apscheduler")}
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_json_format_is_one_object_per_line(log_stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=log_stream)
    log = logging.getLogger("marketbot.test")
    log.info("started: %d watches", 3, extra={"channel": "slack:C1"})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("delivery failed")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "started: 3 watches"
    assert first["level"] == "INFO"
    assert first["logger"] == "marketbot.test"
    assert first["channel"] == "slack:C1"
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]


def test_secrets_are_redacted_from_messages_and_tracebacks(log_stream: io.StringIO) -> None:
    settings = Settings.model_validate(
        {
            "database_url": "postgresql+psycopg://bot:pg-pass-123@db/marketbot",
            "slack": {"bot_token": SLACK_BOT_TOKEN, "app_token": SLACK_APP_TOKEN},
            "discord": {"token": DISCORD_TOKEN},
        }
    )
    secrets = secret_values(settings)
    assert set(secrets) == {SLACK_BOT_TOKEN, SLACK_APP_TOKEN, DISCORD_TOKEN, "pg-pass-123"}
    configure_logging("INFO", "text", secrets=secrets, stream=log_stream)
    log = logging.getLogger("marketbot.test")
    log.warning("auth failed for %s", SLACK_BOT_TOKEN)
    try:
        raise RuntimeError(f"bad token {DISCORD_TOKEN}")
    except RuntimeError:
        log.exception("discord")
    text = log_stream.getvalue()
    for secret in secrets:
        assert secret not in text
    assert text.count(REDACTED) == 2


async def test_full_run_logs_contain_no_configured_token(
    tmp_path: Path, fake_yahoo: FakeYahoo, discord_endpoints: None
) -> None:
    """`marketbot run` at DEBUG with Slack and Discord: commands, sync, shutdown, all scanned."""
    async with (
        FakeSlack(bot_token=SLACK_BOT_TOKEN, app_token=SLACK_APP_TOKEN) as slack,
        FakeDiscord(token=DISCORD_TOKEN) as discord_fake,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
        env.update(
            PYTHONPATH=str(ROOT),
            MARKETBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}",
            MARKETBOT_LOG_LEVEL="DEBUG",
            MARKETBOT_LOG_FORMAT="json",
            MARKETBOT_CONSOLE="false",
            MARKETBOT_METRICS_PORT="0",
            MARKETBOT_METRICS_ADDR="127.0.0.1",
            MARKETBOT_YAHOO__BASE_URL=fake_yahoo.base_url,
            MARKETBOT_YAHOO__STREAM_ENABLED="false",
            MARKETBOT_SLACK__SIGNING_SECRET=SLACK_SIGNING_SECRET,
            **chat_env(slack, discord_fake),  # the tokens above, as the fakes were given them
        )
        async with MarketbotRun(tmp_path, env, stop_within=120) as run:
            await asyncio.wait_for(slack.connected.wait(), 120)
            await slack.slash_command("/watch", "NVDA drop 10%")
            await slack.slash_command("/marketbot", "price NVDA")
            await slack.wait_for_responses(2, within=60)
            await discord_fake.wait_for(lambda: discord_fake.guild_id in discord_fake.commands, 120)
            done, _ = await discord_fake.interact(
                "watch", {"target": "AMD"}, permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS
            )
            await discord_fake.wait_for(lambda: done in discord_fake.callbacks, 60)
    assert run.returncode == 0, run.stderr[-2000:]
    output = run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) > 10  # DEBUG logging of a real run, not an empty scan
    records = [json.loads(line) for line in lines]  # every line one JSON object
    assert any("marketbot started" in r["message"] for r in records)
    for secret in (SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET, DISCORD_TOKEN):
        assert secret not in output
        assert secret.split("-")[-1].split(".")[-1] not in output  # nor its distinctive tail


async def test_offline_one_unreachable_line_then_quiet_backoff(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """Two hours with Yahoo unreachable (connections refused): one warning, retries thinning."""
    configure_logging("INFO", "text", stream=log_stream)
    clock = ManualClock(PREMARKET)
    sleeper = VirtualSleeper(clock)
    poller = YahooPoller(clock=clock, base_url="http://127.0.0.1:9")  # discard port: refused
    source = YahooMarketData(
        clock=clock, poller=poller, stream_url=None, poll_interval=15.0, sleep=sleeper.sleep
    )
    store = SqlStore(f"sqlite:///{tmp_path / 'offline.db'}")
    store.upgrade()
    store.add_watch("console:default", "NVDA", "drop 10%", now=PREMARKET)
    pipeline = Pipeline(store, Engine(EngineConfig()), [], clock, context_symbols=["NQ=F"])
    pipeline.load()
    loop = asyncio.create_task(run_market_loop(source, pipeline))
    requests_after: list[int] = []
    try:
        for _ in range(8):  # 8 x 15 minutes
            await sleeper.wait_pending()
            await sleeper.advance(timedelta(minutes=15))
            requests_after.append(poller.requests)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await source.close()
        store.close()
    text = log_stream.getvalue()
    warnings = [line for line in text.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "Yahoo unreachable" in warnings[0]
    assert "crumb" not in text.lower()  # yfinance's own per-request warning stays quiet
    assert poller.errors["unreachable"] >= 5  # it kept trying...
    # ...ever less often: at the 300 s cap, at most about one try per 150-300 s.
    second_hour = requests_after[-1] - requests_after[3]
    assert second_hour <= 3600 / 150 + 1, requests_after
    assert requests_after[-1] < 8 * 15 * 60 / 15  # far fewer than one per poll interval


async def test_no_watch_means_no_context_futures_polled(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NQ=F", previous_close=21500.0, price=20600.0, at=PREMARKET)
    settings = run_settings(tmp_path, fake_yahoo, alerts={"context_symbols": ["NQ=F", "ES=F"]})
    runtime, bot = console_runtime(settings, clock)
    assert runtime.pipeline.symbols() == frozenset()
    async with bot.running(runtime):
        await bot.advance(minutes=10)  # premarket: a watch would be polled every 0.05 s
    assert fake_yahoo.counts["quote"] == 0
    # One watch anywhere, and the futures come along for its alerts' context.
    runtime = Runtime(settings, clock=clock, platforms=[WatchedConsole()])
    runtime.store.add_watch("console:default", "NVDA", "drop 10%", now=PREMARKET)
    runtime.changed()
    assert runtime.pipeline.symbols() == {"NVDA", "NQ=F", "ES=F", *DIGEST_INDEX_SYMBOLS}
    # A digest alone (no watch) needs the index futures too.
    runtime.store.remove_watches("console:default", "NVDA", None)
    runtime.changed()
    assert runtime.pipeline.symbols() == frozenset()
    ctx = CommandContext(channel="slack:C1", user="u", platform="slack")
    assert runtime.router.handle("/digest on 08:00", ctx).ok
    assert runtime.pipeline.symbols() == frozenset(DIGEST_INDEX_SYMBOLS)
    runtime.store.close()
