"""Fixtures shared by the suite: clocks, stores on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.settings import Settings
from bot.store import SqlStore

if TYPE_CHECKING:
    from bot.fakes.discord_server import FakeDiscord
    from bot.fakes.slack_server import FakeSlack

SHARED = Path(__file__).resolve().parents[2] / "shared"
POSTGRES_URL_VAR = "MARKETBOT_TEST_POSTGRES_URL"

# Monday 2025-01-27, 04:00 ET: the DeepSeek premarket.
DEEPSEEK_PREMARKET = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _logging_put_back() -> Iterator[None]:
    """Put the logging tree back after each test.

    `marketbot` commands invoked in-process (Typer's CliRunner) configure logging as the real
    process does: they replace the root handlers with one on the runner's stream, which is
    closed afterwards, and raise yfinance's logger to CRITICAL. Left in place, that breaks
    later tests that read logs through caplog, depending on test order.
    """
    root = logging.getLogger()
    root_handlers, root_level = [h for h in root.handlers if _not_pytests(h)], root.level
    loggers = {
        name: (logger.level, logger.propagate, logger.disabled, list(logger.handlers))
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    # pytest adds and removes its own capture handlers around each phase: leave those alone.
    for handler in [h for h in root.handlers if _not_pytests(h) and h not in root_handlers]:
        root.removeHandler(handler)
    for handler in root_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(root_level)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        if name not in loggers:  # created during the test: only a level set on it is undone
            logger.setLevel(logging.NOTSET)
            continue
        level, propagate, disabled, handlers = loggers[name]
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled
        logger.handlers[:] = handlers


def _not_pytests(handler: logging.Handler) -> bool:
    return not type(handler).__module__.startswith("_pytest")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DEEPSEEK_PREMARKET)


@pytest.fixture
def fake_yahoo(tmp_path: Path) -> Iterator[FakeYahoo]:
    """The loopback fake Yahoo, with yfinance's time-zone cache kept inside the test."""
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))
    with FakeYahoo() as fake:
        yield fake


def premarket_quote(
    fake: FakeYahoo, symbol: str, *, previous_close: float, price: float, at: datetime
) -> None:
    """A Monday-premarket quote: Friday's regular price, and a premarket trade at ``at``."""
    fake.set_quote(
        symbol,
        price=previous_close,
        previous_close=previous_close,
        market_state="PRE",
        pre_price=price,
        at=at - timedelta(days=3),
        pre_time=at,
    )
    fake.set_closes(symbol, [((at - timedelta(days=3)).date(), previous_close)])


def run_settings(tmp_path: Path, yahoo: FakeYahoo, **sections: Any) -> Settings:
    """Settings for a whole `marketbot run` in a test: SQLite in tmp_path, the fake Yahoo
    polled fast (no stream), no group wait (so no clock move is needed before delivery), no
    context futures; ``sections`` override or add (``console=False``, ``slack={...}``)."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'run.db'}",
        "yahoo": {
            "base_url": yahoo.base_url,
            "stream_enabled": False,
            "poll_interval_seconds": 0.05,
        },
        "alerts": {"context_symbols": [], "group_wait_seconds": 0},
    }
    values.update(sections)
    return Settings.model_validate(values)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """The loopback fake Slack: Web API and Socket Mode (``tests.support.runs.slack_section``)."""
    from bot.fakes.slack_server import FakeSlack

    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """The loopback fake Discord: REST and gateway (``tests.support.runs.discord_section``)."""
    from bot.fakes.discord_server import FakeDiscord

    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def discord_endpoints() -> Iterator[None]:
    """discord.py keeps its REST and gateway URLs in class attributes: put them back after."""
    import discord
    from discord.gateway import DiscordWebSocket

    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'marketbot.db'}")
    store.upgrade()
    yield store
    store.close()


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: no PostgreSQL to test against")
    return url


@pytest.fixture
def postgres_store() -> Iterator[SqlStore]:
    """A store on a fresh, uniquely named PostgreSQL database, dropped afterwards."""
    from bot.fakes.pg_database import fresh_database

    with fresh_database(_postgres_admin_url()) as url:
        store = SqlStore(url)
        try:
            store.upgrade()
            yield store
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> SqlStore:
    """Every store test runs on SQLite, and on PostgreSQL where one is configured."""
    fixture = "sqlite_store" if request.param == "sqlite" else "postgres_store"
    result: SqlStore = request.getfixturevalue(fixture)
    return result


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@pytest.fixture
def processes() -> Iterator[list[_Stoppable]]:
    """The subprocesses a test started (``tests.test_run_processes.RunProcess``): append each;
    every one is stopped when the test ends, however it ended."""
    started: list[_Stoppable] = []
    yield started
    for process in started:
        process.stop()
