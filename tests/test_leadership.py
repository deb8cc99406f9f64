"""Leader election: the PostgreSQL advisory lock (held, lost, taken over) and SQLite's run lock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from alerts.ports import ManualClock
from bot.fakes.pg_database import fresh_database
from bot.leadership import (
    LEADER_LEASE,
    LEADER_LOCK_KEY,
    PostgresLeaderLock,
    RunRefused,
    SqliteRunLock,
    Term,
    libpq_url,
    run_elected,
    sqlite_path,
)
from bot.store import SqlStore


def test_a_second_sqlite_run_lock_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    first = SqliteRunLock(tmp_path / "bot.db")
    first.acquire()
    try:
        with pytest.raises(RunRefused, match=rf"pid {os.getpid()}\).*one run per database file"):
            SqliteRunLock(tmp_path / "bot.db").acquire()
    finally:
        first.release()
    again = SqliteRunLock(tmp_path / "bot.db")
    again.acquire()  # released with the first holder
    again.release()


def test_sqlite_paths_and_libpq_urls_come_from_the_settings_url(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite:///{tmp_path}/x.db") == (tmp_path / "x.db").resolve()
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None
    assert libpq_url("postgresql+psycopg://u:pw@h:5433/db") == "postgresql://u:pw@h:5433/db"


async def test_an_in_memory_sqlite_database_runs_without_a_lock() -> None:
    served = asyncio.Event()

    async def serve(until: asyncio.Event) -> None:
        served.set()

    await run_elected("sqlite://", asyncio.Event(), serve)
    assert served.is_set()


def _terminate(store: SqlStore, backend_pid: int | None) -> None:
    """What a server restart, an admin or a dead network does to the leader's session; it
    returns once the session has ended (the server has freed its locks by then)."""
    assert backend_pid is not None
    with store.engine.connect() as conn:
        ended = conn.execute(
            text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": backend_pid}
        ).scalar_one()
    assert ended, f"session {backend_pid} did not end"


@pytest.mark.postgres
def test_one_process_holds_the_lock_and_a_heartbeat_after_losing_the_session_says_so(
    postgres_store: SqlStore,
) -> None:
    leader = PostgresLeaderLock(postgres_store.url)
    standby = PostgresLeaderLock(postgres_store.url)
    try:
        assert leader.try_acquire()
        assert not standby.try_acquire()
        assert not standby.try_acquire()  # a retry on the same session does not steal it
        assert leader.check()  # a healthy session keeps the lock
        assert leader.check()
        _terminate(postgres_store, leader.backend_pid)
        assert not leader.check(), "the heartbeat did not notice the lost session"
        assert not leader.held
        assert standby.try_acquire()  # the server freed the lock with the session
        assert not leader.check()  # no session: stays lost, never "found" again
    finally:
        leader.release()
        standby.release()


@pytest.mark.postgres
def test_the_lock_session_asks_the_server_for_keepalives_of_seconds(
    postgres_store: SqlStore,
) -> None:
    """A leader whose host died sends no FIN: the server's own keepalives end its session
    (and free the lock) within about 4 s, instead of the kernel's two hours."""
    leader = PostgresLeaderLock(postgres_store.url)
    try:
        assert leader.try_acquire()
        with postgres_store.engine.connect() as conn:
            row = conn.execute(
                text("SELECT client_addr IS NOT NULL FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": leader.backend_pid},
            ).one()
        assert row[0], "the lock session is not on TCP: keepalives would not apply"
        seen = {
            name: leader._conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        }
        assert seen == {
            "tcp_keepalives_idle": "2",
            "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "2",
        }
        assert leader._conn.execute("SHOW tcp_user_timeout").fetchone()[0] == "3000"
    finally:
        leader.release()


class Processes:
    """Two ``run_elected`` "processes" in one event loop, on one simulated timeline.

    Each gets a sleep of its own that parks on the timeline; :meth:`next` moves the clock to
    the earliest wait, ends it and waits (real time, bounded: the database calls run on
    threads) until its process waits again or its leading changed. No wall-clock sleeps.
    """

    RETRY = 0.25
    HEARTBEAT = 1.0
    GRACE = 2.5  # > a heartbeat: an old leader that lost its session has noticed by then

    def __init__(self, url: str) -> None:
        self.url = url
        self.clock = ManualClock(datetime(2026, 12, 1, 22, 0, tzinfo=UTC))
        self._timeline: list[tuple[datetime, int, str, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.waits: Counter[str] = Counter()
        self.serving: list[str] = []
        self.log: list[tuple[str, str, float]] = []  # (process, start/stop, seconds)
        self.stops: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def seconds(self) -> float:
        return (self.clock.now() - datetime(2026, 12, 1, 22, 0, tzinfo=UTC)).total_seconds()

    def events(self) -> list[tuple[str, str]]:
        return [(name, what) for name, what, _ in self.log]

    def start(self, name: str) -> None:
        async def sleep(seconds: float) -> None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            due = self.clock.now() + timedelta(seconds=seconds)
            heapq.heappush(self._timeline, (due, next(self._seq), name, future))
            self.waits[name] += 1
            await future

        async def serve(until: asyncio.Event) -> None:
            self.serving.append(name)
            self.log.append((name, "start", self.seconds))
            try:
                await until.wait()
            finally:
                self.serving.remove(name)
                self.log.append((name, "stop", self.seconds))

        self.stops[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(
            run_elected(
                self.url,
                self.stops[name],
                serve,
                retry_interval=self.RETRY,
                heartbeat_interval=self.HEARTBEAT,
                takeover_grace=self.GRACE,
                sleep=sleep,
            )
        )

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(10):
                while not predicate():  # noqa: ASYNC110 (threads move it; nothing to await)
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise AssertionError(f"{what}: {self.log}, waits {dict(self.waits)}") from None

    async def next(self) -> str:
        """End the earliest wait (moving the clock to it); returns whose it was."""
        while self._timeline:
            due, _, name, future = heapq.heappop(self._timeline)
            if future.done():
                continue  # cut short (a stop, a lost lock): not a wait any more
            if due > self.clock.now():
                self.clock.set(due)
            future.set_result(None)
            await self._moved_on(name, self.waits[name], len(self.log))
            return name
        raise AssertionError(f"nobody waits: {self.log}")

    async def _moved_on(self, name: str, waits: int, events: int) -> None:
        """``name`` waits again, started or stopped leading, or ended."""
        await self.until(
            lambda: self.waits[name] > waits or len(self.log) > events or self.tasks[name].done(),
            f"{name} after its wait at {self.seconds:.2f} s",
        )

    async def run_until(self, predicate: Callable[[], bool], what: str) -> None:
        for _ in range(200):
            if predicate():
                return
            await self.next()
        raise AssertionError(f"{what}: {self.log}")


@pytest.mark.postgres
async def test_the_standby_serves_only_after_the_leader_lost_its_lock_then_waits_again(
    postgres_store: SqlStore,
) -> None:
    p = Processes(postgres_store.url)
    p.start("a")
    await p.until(lambda: p.waits["a"] >= 2, "a won the lock")  # its grace and heartbeat
    won = p.seconds
    await p.run_until(lambda: p.serving == ["a"], "a leading")
    assert p.seconds - won == Processes.GRACE  # not before its grace, not after it
    p.start("b")
    await p.until(lambda: p.waits["b"] >= 1, "b a standby")
    retries = p.waits["b"]
    await p.run_until(lambda: p.waits["b"] >= retries + 12, "b retrying")
    assert p.serving == ["a"]  # twelve retries later, b is still a standby: a leads
    assert p.waits["a"] >= 3  # and a's heartbeat found its lock held meanwhile

    with postgres_store.engine.connect() as conn:
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :classid AND objid = :objid"
                # pg_locks is cluster-wide: other databases' leaders hold the same key.
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"classid": LEADER_LOCK_KEY[0], "objid": LEADER_LOCK_KEY[1]},
        ).scalar_one()
    lost = p.seconds
    _terminate(postgres_store, pid)
    await p.run_until(lambda: p.serving == ["b"], "b took over")
    # b's next retry wins the lock, then its grace; a noticed at its next heartbeat.
    assert p.seconds - lost <= Processes.RETRY + Processes.GRACE
    assert p.events()[:3] == [("a", "start"), ("a", "stop"), ("b", "start")]  # never both
    a_stopped = p.log[1][2]
    assert a_stopped - lost <= Processes.HEARTBEAT
    retries = p.waits["a"]
    await p.run_until(lambda: p.waits["a"] >= retries + 12, "a retrying")
    assert p.serving == ["b"]  # a stepped down and waits as a standby

    p.stops["b"].set()  # b's clean stop hands over to a
    await p.until(lambda: p.tasks["b"].done(), "b stopped")
    await p.run_until(lambda: p.serving == ["a"], "a leading again")
    p.stops["a"].set()
    async with asyncio.timeout(10):
        await asyncio.gather(*p.tasks.values())
    assert p.serving == []


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A fresh database with no schema yet, dropped afterwards."""
    admin_url = os.environ.get("MARKETBOT_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("MARKETBOT_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    with fresh_database(admin_url) as url:
        yield url


@pytest.mark.postgres
def test_processes_starting_at_once_migrate_the_database_once(empty_postgres_url: str) -> None:
    stores = [SqlStore(empty_postgres_url) for _ in range(4)]
    errors: list[BaseException] = []

    def upgrade(store: SqlStore) -> None:
        try:
            store.upgrade()
        except BaseException as exc:  # collected: an exception in a thread is lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert len({store.current_revision() for store in stores}) == 1
        assert stores[0].current_revision() is not None
    finally:
        for store in stores:
            store.close()


# -- a leader resuming from a stall (a frozen host) ------------------------------------------


class _Stall:
    """``bot.leadership``'s monotonic clock, moved on by hand: a stall without waiting one."""

    def __init__(self) -> None:
        import time

        self.offset = 0.0
        self._real = time.monotonic

    def monotonic(self) -> float:
        return self._real() + self.offset


@pytest.mark.postgres
def test_a_lock_confirmed_longer_ago_than_the_lease_is_not_current_until_a_heartbeat_says_so(
    postgres_store: SqlStore,
) -> None:
    """A leader frozen for longer than its lease may have been replaced: its overdue work runs
    before its overdue heartbeat can tell, so the lock counts as confirmed only that long."""
    stall = _Stall()
    leader = PostgresLeaderLock(postgres_store.url)
    leader.monotonic = stall.monotonic
    try:
        assert leader.try_acquire()
        assert leader.confirmed_within(LEADER_LEASE)
        stall.offset += LEADER_LEASE + 0.1  # frozen that long, the session still alive
        assert leader.held  # nothing has said it is lost...
        assert not leader.confirmed_within(LEADER_LEASE)  # ...nor that it is still ours
        assert leader.check()  # the heartbeat confirms it again
        assert leader.confirmed_within(LEADER_LEASE)
        _terminate(postgres_store, leader.backend_pid)
        assert not leader.check()
        assert not leader.confirmed_within(LEADER_LEASE)
    finally:
        leader.release()


@pytest.mark.postgres
async def test_a_term_is_current_only_while_its_lock_is_confirmed_within_the_lease(
    postgres_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import bot.leadership

    stall = _Stall()
    monkeypatch.setattr(bot.leadership, "time", types.SimpleNamespace(monotonic=stall.monotonic))
    stop = asyncio.Event()
    seen: list[bool] = []
    serving = asyncio.Event()
    stalled = asyncio.Event()

    async def serve(until: Term) -> None:
        seen.append(until.current())
        serving.set()
        await stalled.wait()
        seen.append(until.current())
        await until.wait()
        seen.append(until.current())

    task = asyncio.create_task(
        run_elected(postgres_store.url, stop, serve, takeover_grace=0, heartbeat_interval=3600)
    )
    async with asyncio.timeout(20):
        await serving.wait()
        stall.offset += LEADER_LEASE + 0.1  # no heartbeat for an hour: nothing confirms it
        stalled.set()
        await asyncio.sleep(0)
        stop.set()
        await task
    assert seen == [True, False, False]


def test_the_market_loop_drops_a_batch_that_arrives_while_leadership_is_unconfirmed() -> None:
    """The resumed leader's overdue poll may answer before its heartbeat found the lock lost:
    those prices may have been alerted on by the new leader already."""
    from alerts.models import MarketSession, Quote
    from alerts.quality import QuoteBatch
    from bot.market_loop import run_market_loop

    at = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    quote = Quote("ETH-USD", 80.0, at, MarketSession.REGULAR, previous_close=100.0)
    leading = iter([False, True])

    class Feed:
        def set_symbols(self, symbols: object) -> None:
            pass

        async def batches(self):  # type: ignore[no-untyped-def]
            yield QuoteBatch(at, (quote,))  # while unconfirmed: dropped
            yield QuoteBatch(at, (quote,))  # confirmed again: ingested

        def news(self) -> list[object]:
            return []

        def failures(self) -> int:
            return 0

    class Pipeline:
        def __init__(self) -> None:
            self.ingested: list[object] = []

        def symbols(self) -> list[str]:
            return ["ETH-USD"]

        def ingest_news(self, items: object) -> list[object]:
            return []

        def ingest_quotes(self, quotes: object, unavailable: object) -> list[object]:
            self.ingested.append(quotes)
            return []

    pipeline = Pipeline()
    asyncio.run(run_market_loop(Feed(), pipeline, leading=lambda: next(leading)))  # type: ignore[arg-type]
    assert pipeline.ingested == [(quote,)]
