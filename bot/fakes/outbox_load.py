"""A loaded outbox and N delivery workers draining it: the PostgreSQL scale-out test and bench.

``fill_outbox`` stores one alert (one group, one ``post`` row) per message; ``drain`` runs N
``bot.worker.Worker`` instances, each in a thread with
its own event loop and its own connections (as separate processes would have), against one
``RecordingPlatform`` that notes every message, which worker sent it, and whether two sends
to one channel ever overlapped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alerts.models import Alert, AlertKind, AlertMessage, MarketSession, Severity
from alerts.ports import MessageRef
from bot.settings import Settings
from bot.store import SqlStore

STORED_AT = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)


def load_channel(index: int) -> str:
    return f"slack:CLOAD{index:04d}"


def load_key(channel: str, sequence: int) -> str:
    return f"load:{channel}:{sequence:06d}"


def fill_outbox(store: SqlStore, *, channels: int, per_channel: int) -> int:
    """``channels * per_channel`` post rows, one alert and group each, in one transaction.

    Written in bulk (as a storm's ingest would leave them, without paying 10,000 ingest
    transactions in a test's set-up); within a channel, sequence order is id order.
    """
    from sqlalchemy import func, insert, select

    from bot.store.codec import alert_to_record
    from bot.store.schema import AlertGroupRow, AlertRow, ChannelRow, OutboxRow

    names = [load_channel(c) for c in range(channels)]
    with store.engine.begin() as conn:
        conn.execute(
            insert(ChannelRow),
            [{"id": n, "platform": n.split(":")[0], "created_at": STORED_AT} for n in names],
        )
        order = [(names[c], n) for n in range(per_channel) for c in range(channels)]
        first = conn.execute(
            insert(AlertGroupRow).returning(AlertGroupRow.id, sort_by_parameter_order=True),
            [
                {"channel_id": ch, "opened_at": STORED_AT, "updated_at": STORED_AT}
                for ch, _ in order
            ],
        ).scalars()
        group_ids = list(first)
        conn.execute(
            insert(AlertRow),
            [
                {
                    "key": load_key(ch, n),
                    "channel_id": ch,
                    "kind": AlertKind.FIRING.value,
                    "symbol": "NVDA",
                    "at": STORED_AT,
                    "data": alert_to_record(_alert(ch, n)),
                    "group_id": gid,
                    "muted": False,
                    "summarized": False,
                }
                for (ch, n), gid in zip(order, group_ids, strict=True)
            ],
        )
        conn.execute(
            insert(OutboxRow),
            [
                {
                    "channel_id": ch,
                    "group_id": gid,
                    "action": "post",
                    "status": "pending",
                    "attempts": 0,
                    "not_before": STORED_AT,
                    "created_at": STORED_AT,
                }
                for (ch, _), gid in zip(order, group_ids, strict=True)
            ],
        )
        count = conn.execute(select(func.count(OutboxRow.id))).scalar_one()
    return int(count)


def _alert(channel: str, sequence: int) -> Alert:
    return Alert(
        key=load_key(channel, sequence),
        channel=channel,
        kind=AlertKind.FIRING,
        symbol="NVDA",
        at=STORED_AT,
        severity=Severity.WARNING,
        rule_text="drop 5%",
        price=95.0,
        reference_price=100.0,
        change_pct=-5.0,
        session=MarketSession.REGULAR,
    )


@dataclass
class RecordingPlatform:
    """A chat platform that accepts everything at once and remembers it (thread-safe)."""

    name: str = "slack"
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (worker, channel, key)
    overlaps: int = 0  # sends to a channel that began while another was in flight
    _in_flight: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: int = 0

    def handles(self, channel: str) -> bool:
        return channel.startswith(f"{self.name}:")

    def for_worker(self, worker: str) -> WorkerPlatform:
        return WorkerPlatform(self, worker)

    async def deliver(self, worker: str, message: AlertMessage) -> MessageRef:
        with self._lock:
            if message.channel in self._in_flight:
                self.overlaps += 1
            self._in_flight.add(message.channel)
        await asyncio.sleep(0)  # a real send yields here: let a concurrent one show itself
        with self._lock:
            self._in_flight.discard(message.channel)
            self._ids += 1
            for alert in message.alerts:
                self.sent.append((worker, message.channel, alert.key))
            return MessageRef(channel=message.channel, message_id=str(self._ids))

    def keys_by_channel(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for _, channel, key in self.sent:
            found[channel].append(key)
        return found


@dataclass
class WorkerPlatform:
    """One worker's view of the shared recording platform (so sends carry the worker's name)."""

    shared: RecordingPlatform
    worker: str

    @property
    def name(self) -> str:
        return self.shared.name

    def handles(self, channel: str) -> bool:
        return self.shared.handles(channel)

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        return await self.shared.deliver(self.worker, message)

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        await self.shared.deliver(self.worker, message)
        return ref


@dataclass(frozen=True)
class DrainReport:
    workers: int
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


def drain(
    settings: Settings,
    platform: RecordingPlatform,
    *,
    workers: int,
    expected: int,
    timeout: float = 120.0,
) -> DrainReport:
    """Start ``workers`` workers at once; time until ``expected`` messages were sent."""
    from bot.worker import Worker

    started = threading.Barrier(workers + 1)
    done = threading.Event()
    errors: list[BaseException] = []

    async def run_one(name: str) -> None:
        worker = Worker(settings, platforms=[platform.for_worker(name)], owner=name)  # type: ignore[list-item]
        try:
            await worker.connect()
            await asyncio.to_thread(started.wait)  # every worker starts claiming at once
            worker.begin()
            await asyncio.to_thread(done.wait)
        finally:
            await worker.stop()

    def thread_main(name: str) -> None:
        try:
            asyncio.run(run_one(name))
        except BaseException as exc:  # reported to the caller; a thread would swallow it
            errors.append(exc)
            with _suppress_broken_barrier():
                started.abort()

    threads = [
        threading.Thread(target=thread_main, args=(f"worker-{i}",), daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    with _suppress_broken_barrier():
        started.wait(timeout=60)
    began = time.perf_counter()
    deadline = began + timeout
    while len(platform.sent) < expected and time.perf_counter() < deadline and not errors:
        time.sleep(0.01)
    seconds = time.perf_counter() - began
    done.set()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
    return DrainReport(workers=workers, rows=len(platform.sent), seconds=seconds)


class _suppress_broken_barrier:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is threading.BrokenBarrierError


def in_channel_order(keys: Sequence[str]) -> bool:
    return list(keys) == sorted(keys)
