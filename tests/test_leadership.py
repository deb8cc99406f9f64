"""Leader election: the PostgreSQL advisory lock (held, lost, taken over) and SQLite's run lock."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.fakes.pg_database import fresh_database
from bot.leadership import (
    LEADER_LOCK_KEY,
    PostgresLeaderLock,
    RunRefused,
    SqliteRunLock,
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
    """What a server restart, an admin or a dead network does to the leader's session."""
    assert backend_pid is not None
    with store.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid})


@pytest.mark.postgres
def test_one_process_holds_the_lock_and_losing_the_session_is_noticed_at_once(
    postgres_store: SqlStore,
) -> None:
    leader = PostgresLeaderLock(postgres_store.url, heartbeat_interval=0.1)
    standby = PostgresLeaderLock(postgres_store.url)
    lost = threading.Event()
    try:
        assert leader.try_acquire()
        assert not standby.try_acquire()
        assert not standby.try_acquire()  # a retry on the same session does not steal it
        leader.start_heartbeat(lost.set)
        assert not lost.wait(0.5)  # a healthy session keeps the lock
        _terminate(postgres_store, leader.backend_pid)
        assert lost.wait(3), "the heartbeat did not notice the lost session"
        assert not leader.held
        assert standby.try_acquire()  # the server freed the lock with the session
    finally:
        leader.release()
        standby.release()


@pytest.mark.postgres
async def test_the_standby_serves_only_after_the_leader_lost_its_lock_then_waits_again(
    postgres_store: SqlStore,
) -> None:
    serving: list[str] = []
    log: list[tuple[str, str]] = []

    def serve_as(name: str):  # type: ignore[no-untyped-def]
        async def serve(until: asyncio.Event) -> None:
            serving.append(name)
            log.append((name, "start"))
            try:
                await until.wait()
            finally:
                serving.remove(name)
                log.append((name, "stop"))

        return serve

    async def wait_for(predicate, within: float) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 (the state changes in other tasks)
                await asyncio.sleep(0.02)

    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    options = {"retry_interval": 0.1, "takeover_grace": 0.3}
    task_a = asyncio.create_task(run_elected(postgres_store.url, stop_a, serve_as("a"), **options))
    await wait_for(lambda: serving == ["a"], 10)
    task_b = asyncio.create_task(run_elected(postgres_store.url, stop_b, serve_as("b"), **options))
    await asyncio.sleep(0.6)
    assert serving == ["a"]  # b is a standby

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
    _terminate(postgres_store, pid)
    await wait_for(lambda: serving == ["b"], 10)
    assert log[:3] == [("a", "start"), ("a", "stop"), ("b", "start")]  # never both at once
    await asyncio.sleep(0.6)
    assert serving == ["b"]  # a stepped down and waits as a standby

    stop_b.set()
    await wait_for(lambda: serving == ["a"], 10)  # b's clean stop hands over to a
    stop_a.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), 10)
    assert serving == []


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
