"""Who may run the leader's work (market data, engine, scheduler, chat front ends).

On PostgreSQL any number of ``marketbot run`` processes may start: one holds a session advisory
lock on a dedicated connection and leads, the others wait as standbys and take over when the
leader's session ends (a crash closes its socket, the server drops the lock). On SQLite there
is no server to arbitrate, so a second ``run`` on the same file is refused: an exclusive OS lock
on a sidecar file, which the kernel releases when the holder dies, even by ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from bot.market.timer import Sleep, real_sleep, sleep_or_set
from bot.shutdown import DaemonThreadPool

log = logging.getLogger(__name__)

# The two 32-bit halves of the leader lock's key ("mktb", 1): pg_locks shows them as
# classid/objid, which is how the heartbeat checks the lock is still ours.
LEADER_LOCK_KEY = (0x6D6B7462, 1)

# A standby asks for the lock this often (one trivial query each). A leader killed with
# `kill -9` closes its socket, its backend exits at once and frees the lock, so takeover is
# at most this, plus TAKEOVER_GRACE, plus start-up: measured 2.7 s with a 1 s retry at load
# 12, of which 0.2-0.3 s start-up (tests/test_run_processes.py prints it).
RETRY_INTERVAL = 0.25
# The leader checks its session this often; a loss is noticed within it (plus the TCP timeout
# below when the network, not the server, went away).
HEARTBEAT_INTERVAL = 0.5
# A new leader waits this long before it starts work, so a previous leader whose session the
# server ended (but which is still alive) has had a heartbeat to notice and stop first.
TAKEOVER_GRACE = 2 * HEARTBEAT_INTERVAL + 0.5
# libpq settings for the lock connection: a dead peer is detected in seconds, not hours, on
# both ends. The client's keepalives tell this process its server went away. The server's
# (`options`, per session) matter for takeover: a leader whose host died or dropped off the
# network sends no FIN, and without them its backend, and the lock, would live until the
# server's own keepalive ends it (tcp_keepalives_idle 0 means the kernel's: two hours).
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 2,
    "tcp_keepalives_interval": 1,
    "tcp_keepalives_count": 2,
    "tcp_user_timeout": 3000,
}
# How long after its last confirmation of the lock a leader may still act on it (ingest a
# batch of quotes into alerts). Another process can lead only once the server ended this
# session, after at least tcp_keepalives_idle (2 s) of silence since the confirming query,
# and then waits TAKEOVER_GRACE (1.5 s): acting within 2 s of it leaves 1.5 s of margin. A
# heartbeat confirms every HEARTBEAT_INTERVAL, so a healthy leader's confirmation is about
# 0.5 s old; an older one means this process stalled (a frozen VM or host, SIGSTOP, a loop
# blocked that long) and may have been replaced meanwhile. Resumed, its overdue work runs
# before its overdue heartbeat can tell: tests/test_leader_dead_host.py, where a poll
# answered while the host was dead was ingested after the takeover, without this.
LEADER_LEASE = float(SERVER_KEEPALIVES["tcp_keepalives_idle"])
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 3000,
    "options": " ".join(f"-c {name}={value}" for name, value in SERVER_KEEPALIVES.items()),
    "application_name": "marketbot-leader-lock",
}


class RunRefused(Exception):
    """This process must not run the leader's work; the message says why, in one line."""


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://...``) as a URL psycopg itself accepts."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


# -- SQLite: one run per file ----------------------------------------------------------------


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for in-memory databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database).resolve()


class SqliteRunLock:
    """An exclusive ``flock`` on ``<database>.run-lock``, held for the life of the process.

    ``flock`` belongs to the open file, so the kernel releases it when the process dies however
    it dies; a stale lock file left behind is harmless (it is locked again, not checked for).
    ``marketbot cmd`` does not take it: commands are short transactions WAL handles.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".run-lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunRefused(
                f"another `marketbot run` (pid {holder}) is using {self.database}; SQLite "
                "allows one run per database file (use PostgreSQL to run several)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


# -- PostgreSQL: leader election -------------------------------------------------------------


class PostgresLeaderLock:
    """A session advisory lock on a connection of its own, checked by a heartbeat thread.

    The lock lives exactly as long as the server session: when this process dies the server
    ends the session and a standby's next ``pg_try_advisory_lock`` wins. Losing the connection
    means losing the lock, so any heartbeat failure sets ``lost`` at once; the caller must stop
    the leader's work when it does.
    """

    def __init__(
        self,
        database_url: str,
        *,
        key: tuple[int, int] = LEADER_LOCK_KEY,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self.key = key
        self.heartbeat_interval = heartbeat_interval
        self._conn: Any = None  # psycopg.Connection, imported lazily (an optional extra)
        self._io = threading.Lock()  # one statement at a time on the connection
        self._calls = DaemonThreadPool(1)  # the heartbeat's checks: a daemon never holds an exit
        self.held = False
        self.backend_pid: int | None = None
        self.monotonic: Callable[[], float] = time.monotonic
        # When the last query that found the lock ours was sent (``monotonic``'s time).
        self.confirmed_at: float | None = None

    def confirmed_within(self, lease: float) -> bool:
        """True if the lock is held and was last confirmed at most ``lease`` seconds ago."""
        at = self.confirmed_at
        return self.held and at is not None and self.monotonic() - at <= lease

    def try_acquire(self) -> bool:
        """One attempt (blocking): True if this process now leads."""
        import psycopg

        with self._io:
            asked = self.monotonic()
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._conninfo, autocommit=True, **CONNECT_OPTIONS)
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()", self.key
                ).fetchone()
            except psycopg.Error as exc:
                log.warning("leader lock: database unavailable (%s)", _one_line(exc))
                self._drop_connection()
                return False
        self.held = bool(row and row[0])
        self.backend_pid = int(row[1]) if row else None
        self.confirmed_at = asked if self.held else None
        return self.held

    def check(self) -> bool:
        """One heartbeat (blocking): True while the lock is ours. Any error on the session
        means the lock may be gone: ``held`` turns False and the session is closed."""
        asked = self.monotonic()
        try:
            held = self._still_held()
        except Exception as exc:
            log.error("leader lock: connection lost (%s); leadership lost", _one_line(exc))
            held = False
        else:
            if not held:
                log.error("leader lock: the lock is no longer held; leadership lost")
        if not held:
            self.held = False
            self.confirmed_at = None
            with self._io:
                self._drop_connection()
        else:
            self.confirmed_at = asked
        return held

    async def watch(self, sleep: Sleep = real_sleep) -> None:
        """Check the session every ``heartbeat_interval`` of ``sleep``'s time; return once
        the lock is lost. The checks run on a thread of this lock's own: a default executor
        busy with slow Yahoo requests must not delay noticing that another process leads."""
        loop = asyncio.get_running_loop()
        while True:
            await sleep(self.heartbeat_interval)
            if not await loop.run_in_executor(self._calls, self.check):
                return

    def _still_held(self) -> bool:
        with self._io:
            if self._conn is None:
                return False
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 2",
                self.key,
            ).fetchone()
            return bool(row and row[0])

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def release(self) -> None:
        """Close the session, which frees the lock for a standby."""
        with self._io:
            self._drop_connection()
        self.held = False
        self.confirmed_at = None
        self._calls.shutdown(wait=False)


class Term(asyncio.Event):
    """One term of leadership, as ``serve`` sees it: set when it ends (the lock was lost, or
    the process stops); :meth:`current` says whether leader work may act right now."""

    def __init__(self, current: Callable[[], bool] = lambda: True) -> None:
        super().__init__()
        self._current = current

    def current(self) -> bool:
        """False once the term ended, and while the lock's last confirmation is older than
        LEADER_LEASE: after a stall, until the heartbeat has confirmed the lock again."""
        return not self.is_set() and self._current()


Serve = Callable[[Term], Awaitable[None]]


async def run_elected(
    database_url: str,
    stop: asyncio.Event,
    serve: Serve,
    *,
    retry_interval: float = RETRY_INTERVAL,
    takeover_grace: float = TAKEOVER_GRACE,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    lease: float = LEADER_LEASE,
    warm_up: Callable[[], object] | None = None,
    sleep: Sleep = real_sleep,
) -> None:
    """Run ``serve(until)`` only while this process may lead; return once ``stop`` is set.

    ``serve`` must build everything from the database when called (rule states, outbox,
    digest markers): a new leader starts from what the previous one committed, nothing else.
    On SQLite a second process is refused with RunRefused. On PostgreSQL this process waits as
    a standby until it holds the leader lock; if it loses the lock, ``until`` is set, ``serve``
    must return promptly, and the process goes back to waiting. ``until.current()`` is False
    while the lock's last confirmation is older than ``lease`` (real, monotonic time): leader
    work that commits (alerts) checks it, so a process resuming from a stall does not act
    before its heartbeat has found whether another process leads now. Every wait (the standby's
    retries, the grace, the heartbeat) is on ``sleep``'s time: tests move a ManualClock.
    """
    path = sqlite_path(database_url)
    if path is not None:
        lock = SqliteRunLock(path)
        lock.acquire()
        try:
            await _serve_until(stop, serve)
        finally:
            lock.release()
        return
    if not is_postgres(database_url):
        await _serve_until(stop, serve)  # in-memory SQLite: a private database, no one to share
        return
    warmed = False
    while not stop.is_set():
        leader = PostgresLeaderLock(database_url, heartbeat_interval=heartbeat_interval)
        if not await asyncio.to_thread(leader.try_acquire) and not warmed and warm_up is not None:
            warm_up()  # a standby: load what leading needs now, not after the leader died
            warmed = True
        if not leader.held and not await _wait_for_leadership(leader, stop, retry_interval, sleep):
            leader.release()
            return
        until = Term(functools.partial(leader.confirmed_within, lease))
        waiters = [
            asyncio.create_task(_relay(stop.wait(), until)),
            asyncio.create_task(_relay(leader.watch(sleep), until)),  # returns on a loss
        ]
        try:
            log.info(
                "leader: lock won (session pid %s); leading after %.1f s of grace",
                leader.backend_pid,
                takeover_grace,
            )
            if takeover_grace <= 0 or not await sleep_or_set(until, takeover_grace, sleep):
                log.info("leader: this process leads (session pid %s)", leader.backend_pid)
                await serve(until)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            leader.release()
        if not stop.is_set():
            # The standbys ask first: they have waited, and this process just lost its
            # session (a database restart, a network fault); it asks again after the grace.
            log.warning("leader: stepped down; waiting as a standby")
            await sleep_or_set(stop, takeover_grace, sleep)


async def _serve_until(stop: asyncio.Event, serve: Serve) -> None:
    """One term that ends with ``stop`` and is current until then (no lock to lose)."""
    term = Term()

    async def relay_stop() -> None:
        await stop.wait()
        term.set()

    relay = asyncio.create_task(relay_stop())
    try:
        await serve(term)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)


async def _wait_for_leadership(
    leader: PostgresLeaderLock, stop: asyncio.Event, retry_interval: float, sleep: Sleep
) -> bool:
    announced = False
    while not stop.is_set():
        if await asyncio.to_thread(leader.try_acquire):
            return True
        if not announced:
            log.info("standby: another `marketbot run` leads; taking over when it stops")
            announced = True
        await sleep_or_set(stop, retry_interval, sleep)
    return False


async def _relay(source: Awaitable[object], target: asyncio.Event) -> None:
    """Set ``target`` once ``source`` is done."""
    await source
    target.set()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
