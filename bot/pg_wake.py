"""Wakes delivery in this process when another process commits outbox rows (LISTEN/NOTIFY).

The outbox insert trigger (migration 0004) NOTIFYs ``marketbot_outbox`` on commit. A listener
holds one autocommit connection of its own and calls ``wake()`` for each notification; the
delivery loop's slow poll stays as the safety net for a notification lost while reconnecting.

The same connection says which platforms this process delivers to (its ``application_name``),
so every listener can count the live delivering processes per platform from
``pg_stat_activity``: a budget that is per bot token, not per process (Discord's 50 requests
a second), is shared out by that count. A process that dies drops its connection, and with it
its place in the count; no table, no heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.leadership import CONNECT_OPTIONS, libpq_url

if TYPE_CHECKING:
    from alerts.ports import ChatPlatform
    from bot.pipeline.delivery import Waker

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "marketbot_outbox"
# Without a notification for this long the listener checks its connection is alive.
IDLE_CHECK_SECONDS = 15.0
MAX_RECONNECT_DELAY = 30.0
STOP_CHECK_SECONDS = 0.5
# How often the live delivering processes are counted: a process that joins is seen by the
# others within this long (until then they keep their larger share).
PEER_CHECK_SECONDS = 1.0
APPLICATION_PREFIX = "marketbot-delivery"
PEER_COUNT_WAIT = 10.0  # seconds delivery waits for the first count of delivering processes


def application_name(platforms: Sequence[str]) -> str:
    """``marketbot-delivery discord slack``: what ``pg_stat_activity`` shows for a listener."""
    return " ".join([APPLICATION_PREFIX, *sorted(platforms)])[:63]  # PostgreSQL's NAMEDATALEN


def count_by_platform(names: Sequence[str]) -> dict[str, int]:
    """Delivering processes per platform, from the listeners' application names."""
    found: dict[str, int] = {}
    for name in names:
        head, *platforms = name.split()
        if head != APPLICATION_PREFIX:
            continue
        for platform in set(platforms):
            found[platform] = found.get(platform, 0) + 1
    return found


class OutboxListener:
    """LISTEN on the outbox channel; every notification (and every reconnect) wakes ``waker``.

    It runs in a thread of its own with a blocking connection: the delivery loop makes
    synchronous store calls, and a listener sharing that event loop would stall behind them.
    ``waker.wake()`` must be thread-safe (``DeliveryWorker.wake`` is).
    """

    def __init__(
        self,
        database_url: str,
        waker: Waker,
        *,
        channel: str = OUTBOX_CHANNEL,
        idle_check: float = IDLE_CHECK_SECONDS,
        platforms: Sequence[str] = (),
        on_peers: Callable[[Mapping[str, int]], object] | None = None,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self.waker = waker
        self.channel = channel
        self.idle_check = idle_check
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait for it)
        self.notifications = 0
        self.payloads: deque[str] = deque(maxlen=100)  # the latest notifications' payloads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = 0.0
        self.platforms = tuple(platforms)
        # Called from the listener's thread with the live count per platform (this process
        # included) once listening and whenever it changes.
        self.on_peers = on_peers
        self.peers: dict[str, int] = {}
        self._peers_checked = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.idle_check + 5)

    def _run(self) -> None:
        """Listen until stopped, reconnecting with backoff when the connection drops."""
        import psycopg

        delay = 1.0
        while not self._stop.is_set():
            try:
                self._listen_once()
                delay = 1.0
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning(
                    "outbox listener: %s; reconnecting in %.0f s (polling meanwhile)",
                    " ".join(str(exc).split()) or type(exc).__name__,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(MAX_RECONNECT_DELAY, delay * 2)

    def _listen_once(self) -> None:
        import psycopg
        from psycopg import sql

        options: dict[str, Any] = {
            **CONNECT_OPTIONS,
            "application_name": application_name(self.platforms),
        }
        with psycopg.connect(self._conninfo, autocommit=True, **options) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._count_peers(conn)
            self.listening.set()
            # Rows committed while we were not listening would otherwise wait for the poll.
            self.waker.wake()
            while not self._stop.is_set():
                # A short timeout so stop() is prompt; a quiet spell also checks the link.
                for notify in conn.notifies(timeout=STOP_CHECK_SECONDS):
                    self.payloads.append(notify.payload)
                    self.notifications += 1
                    self.waker.wake()
                    if self._stop.is_set():
                        return
                if time.monotonic() - self._peers_checked >= PEER_CHECK_SECONDS:
                    self._count_peers(conn)
                self._quiet += STOP_CHECK_SECONDS
                if self._quiet >= self.idle_check:
                    self._quiet = 0.0
                    conn.execute("SELECT 1")

    def _count_peers(self, conn: Any) -> None:
        """Count the live delivering processes; tell ``on_peers`` when the count changed."""
        self._peers_checked = time.monotonic()
        if self.on_peers is None:
            return
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE %s",
            (f"{APPLICATION_PREFIX}%",),
        ).fetchall()
        peers = count_by_platform([row[0] for row in rows])
        if peers != self.peers:
            self.peers = peers
            self.on_peers(dict(peers))


@runtime_checkable
class SharedBudget(Protocol):
    """A platform whose rate budget belongs to the bot token, shared by every process."""

    name: str

    def share_global_budget(self, processes: int) -> None: ...


def share_budgets(platforms: Sequence[ChatPlatform], peers: Mapping[str, int]) -> None:
    """A budget per bot token (Discord's global limit) split by the live processes."""
    for platform in platforms:
        if isinstance(platform, SharedBudget):
            platform.share_global_budget(peers.get(platform.name, 1))
    log.info(
        "delivering processes: %s",
        ", ".join(f"{n} {name}" for name, n in sorted(peers.items())) or "none",
    )


def delivery_listener(
    database_url: str, waker: Waker, platforms: Sequence[ChatPlatform]
) -> OutboxListener:
    """The listener of a process that delivers (``marketbot worker``, and the leading
    ``marketbot run`` on PostgreSQL): woken by other processes' rows, counted among the
    delivering processes, its shared budgets resized (on this event loop) as the count moves.
    ``platforms`` is read when the count comes, so platforms added later are included."""
    loop = asyncio.get_running_loop()
    return OutboxListener(
        database_url,
        waker,
        platforms=[p.name for p in platforms],
        on_peers=lambda peers: loop.call_soon_threadsafe(share_budgets, platforms, peers),
    )


async def counted(listener: OutboxListener, platforms: Sequence[ChatPlatform]) -> None:
    """Wait until the delivering processes were counted, if a shared budget depends on it
    (at most PEER_COUNT_WAIT: then the full budgets go on, and the count applies when it
    comes)."""
    if any(isinstance(p, SharedBudget) for p in platforms):
        await asyncio.to_thread(listener.listening.wait, PEER_COUNT_WAIT)
