"""`/healthz`: liveness (the event loop answers) and readiness (database, fresh data, role).

The HTTP server runs in its own thread (``bot.metrics``), so a blocked event loop is reported
as not live instead of making the health check hang with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from alerts.ports import Clock

if TYPE_CHECKING:
    from bot.pipeline import Pipeline
    from bot.store import SqlStore

T = TypeVar("T")

LOOP_TIMEOUT_SECONDS = 2.0
# Roles a process can have; "leader" evaluates and sends, "standby" waits to take over. Both
# are ready: a standby is healthy by design. Anything else (e.g. "starting") is not.
READY_ROLES = frozenset({"leader", "standby", "worker"})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    live: bool
    checks: tuple[Check, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return self.live and all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ready else ("not ready" if self.live else "not live"),
            "live": self.live,
            "ready": self.ready,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


class MarketFreshness:
    """When market data last arrived; fed by the market loop, read by readiness.

    Freshness is measured by arrival, not by the quotes' own trade times: a thin name can go
    an hour without a premarket trade while the data source is perfectly healthy.
    """

    def __init__(self, clock: Clock, max_age: timedelta) -> None:
        self.clock = clock
        self.max_age = max_age
        self.started = clock.now()
        self.last_data: datetime | None = None

    def arrived(self) -> None:
        self.last_data = self.clock.now()

    def check(self, open_symbols: Sequence[str]) -> Check:
        if not open_symbols:
            return Check("market_data", True, "no watched market is open")
        now = self.clock.now()
        since = self.last_data or self.started
        age = now - since
        if age <= self.max_age:
            return Check("market_data", True, f"fresh ({len(open_symbols)} open symbols)")
        what = "no market data yet" if self.last_data is None else "no market data"
        names = ", ".join(open_symbols[:5])
        return Check(
            "market_data", False, f"{what} for {age.total_seconds():.0f} s while {names} open"
        )


class HealthCheck:
    """Answers from any thread; reads market state only on the bot's own event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        database: Callable[[], None],
        market: Callable[[], Check],
        role: Callable[[], str] = lambda: "leader",
        loop_timeout: float = LOOP_TIMEOUT_SECONDS,
    ) -> None:
        self.loop = loop
        self.loop_timeout = loop_timeout
        self.database = database
        self.market = market
        self.role = role

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return future.result(self.loop_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def live(self) -> bool:
        try:
            self._on_loop(lambda: None)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False  # blocked, or closed
        return True

    def report(self, *, readiness: bool = True) -> HealthReport:
        if not self.live():
            return HealthReport(live=False)
        if not readiness:
            return HealthReport(live=True)
        return HealthReport(live=True, checks=(self._database(), self._market(), self._role()))

    def _database(self) -> Check:
        try:
            self.database()
        except Exception as exc:
            return Check("database", False, f"unreachable: {type(exc).__name__}")
        return Check("database", True, "reachable")

    def _market(self) -> Check:
        try:
            return self._on_loop(self.market)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return Check("market_data", False, "event loop did not answer")

    def _role(self) -> Check:
        role = self.role()
        return Check("role", role in READY_ROLES, role)


def market_max_age(poll_interval_seconds: float) -> timedelta:
    """How long without data counts as stale: a few missed polls, never under three minutes."""
    return timedelta(seconds=max(180.0, 6 * poll_interval_seconds))


def health_check(
    loop: asyncio.AbstractEventLoop,
    store: SqlStore,
    pipeline: Pipeline,
    freshness: MarketFreshness,
    *,
    role: Callable[[], str] = lambda: "leader",
) -> HealthCheck:
    """The checks of a running bot: its store, its followed symbols, its role."""
    from sqlalchemy import text

    from bot.market import sessions

    def database() -> None:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def market() -> Check:
        now = freshness.clock.now()
        open_now = [s for s in sorted(pipeline.symbols()) if sessions.is_open(s, now)]
        return freshness.check(open_now)

    return HealthCheck(loop, database=database, market=market, role=role)


def standby_health(loop: asyncio.AbstractEventLoop, database_url: str) -> HealthCheck:
    """A process waiting to lead: ready when it can reach the database the leader uses."""
    from sqlalchemy import create_engine, text

    engine = (
        create_engine(database_url, pool_pre_ping=True, pool_size=1, max_overflow=0)
        if (not database_url.startswith("sqlite"))
        else create_engine(database_url)
    )

    def database() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def market() -> Check:
        return Check("market_data", True, "standby: the leader follows the markets")

    return HealthCheck(loop, database=database, market=market, role=lambda: "standby")
