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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# The two 32-bit halves of the leader lock's key ("mktb", 1): pg_locks shows them as
# classid/objid, which is how the heartbeat checks the lock is still ours.
LEADER_LOCK_KEY = (0x6D6B7462, 1)

# A standby asks for the lock this often; takeover time is at most this plus TAKEOVER_GRACE
# plus start-up, well inside the 10 s budget.
RETRY_INTERVAL = 1.0
# The leader checks its session this often; a loss is noticed within it (plus the TCP timeout
# below when the network, not the server, went away).
HEARTBEAT_INTERVAL = 0.5
# A new leader waits this long before it starts work, so a previous leader whose session the
# server ended (but which is still alive) has had a heartbeat to notice and stop first.
TAKEOVER_GRACE = 2 * HEARTBEAT_INTERVAL + 0.5
# libpq settings for the lock connection: a dead peer is detected in seconds, not hours.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 3000,
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
        self._closing = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._on_lost: Callable[[], object] | None = None
        self.held = False
        self.backend_pid: int | None = None

    def try_acquire(self) -> bool:
        """One attempt (blocking): True if this process now leads."""
        import psycopg

        with self._io:
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
        return self.held

    def start_heartbeat(self, on_lost: Callable[[], object]) -> None:
        """Check the session every interval from a thread; ``on_lost`` runs once on a loss."""
        self._on_lost = on_lost
        self._heartbeat = threading.Thread(target=self._beat, name="leader-heartbeat", daemon=True)
        self._heartbeat.start()

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

    def _beat(self) -> None:
        while not self._closing.wait(self.heartbeat_interval):
            try:
                held = self._still_held()
            except Exception as exc:  # any error on the session means the lock may be gone
                log.error("leader lock: connection lost (%s); leadership lost", _one_line(exc))
                held = False
            else:
                if not held:
                    log.error("leader lock: the lock is no longer held; leadership lost")
            if not held:
                self.held = False
                with self._io:
                    self._drop_connection()
                if self._on_lost is not None:
                    self._on_lost()
                return

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def release(self) -> None:
        """Stop the heartbeat and close the session, which frees the lock for a standby."""
        self._closing.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        with self._io:
            self._drop_connection()
        self.held = False


Serve = Callable[[asyncio.Event], Awaitable[None]]


async def run_elected(
    database_url: str,
    stop: asyncio.Event,
    serve: Serve,
    *,
    retry_interval: float = RETRY_INTERVAL,
    takeover_grace: float = TAKEOVER_GRACE,
    warm_up: Callable[[], object] | None = None,
) -> None:
    """Run ``serve(until)`` only while this process may lead; return once ``stop`` is set.

    ``serve`` must build everything from the database when called (rule states, outbox,
    digest markers): a new leader starts from what the previous one committed, nothing else.
    On SQLite a second process is refused with RunRefused. On PostgreSQL this process waits as
    a standby until it holds the leader lock; if it loses the lock, ``until`` is set, ``serve``
    must return promptly, and the process goes back to waiting.
    """
    path = sqlite_path(database_url)
    if path is not None:
        lock = SqliteRunLock(path)
        lock.acquire()
        try:
            await serve(stop)
        finally:
            lock.release()
        return
    if not is_postgres(database_url):
        await serve(stop)  # in-memory SQLite: a private database, nobody to share it with
        return
    warmed = False
    while not stop.is_set():
        leader = PostgresLeaderLock(database_url)
        if not leader.try_acquire() and not warmed and warm_up is not None:
            warm_up()  # a standby: load what leading needs now, not after the leader died
            warmed = True
        if not leader.held and not await _wait_for_leadership(leader, stop, retry_interval):
            leader.release()
            return
        until = asyncio.Event()
        stop_waiter = asyncio.create_task(_relay(stop, until))
        # The heartbeat thread's alarm, handed to the event loop (asyncio is not thread-safe).
        leader.start_heartbeat(
            functools.partial(asyncio.get_running_loop().call_soon_threadsafe, until.set)
        )
        try:
            if takeover_grace > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(until.wait(), takeover_grace)
            if not until.is_set():
                log.info("leader: this process leads (session pid %s)", leader.backend_pid)
                await serve(until)
        finally:
            stop_waiter.cancel()
            leader.release()
        if not stop.is_set():
            log.warning("leader: stepped down; waiting as a standby")


async def _wait_for_leadership(
    leader: PostgresLeaderLock, stop: asyncio.Event, retry_interval: float
) -> bool:
    announced = False
    while not stop.is_set():
        if await asyncio.to_thread(leader.try_acquire):
            return True
        if not announced:
            log.info("standby: another `marketbot run` leads; taking over when it stops")
            announced = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_interval)
    return False


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
