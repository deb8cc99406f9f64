"""Delivery: claim outbox rows (lease) -> render -> send or edit -> confirm, one lane per channel.

Each channel is its own ordered lane, run by its own asyncio task: a lane that is rate
limited, slow or dead waits alone while every other lane goes on. A dispatcher starts lanes
for channels with due rows; it wakes the moment ingest commits new rows (``wake``) and polls
slowly only as a safety net. Retry-After is counted from the moment the refusal arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from alerts.baskets import all_baskets
from alerts.compose import compose_message
from alerts.models import AlertMessage
from alerts.ports import (
    ChatPlatform,
    Clock,
    DeliveryError,
    GloballyPaced,
    ImageUploader,
    MessageRef,
    PacedPlatform,
    SentFinder,
)
from bot.news.explain import Explainer
from bot.pipeline.lane_starts import LaneStarts
from bot.pipeline.market_view import MarketState
from bot.pipeline.platforms import platform_for
from bot.pipeline.stats import PipelineStats
from bot.store import Delivery, SqlStore

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(minutes=5)
LEASE = timedelta(seconds=30)
SAFETY_POLL_SECONDS = 5.0
CLAIM_BATCH = 200
# With other processes on the same outbox, a dispatcher takes lanes a few at a time and lets
# the others claim in between, so a backlog's channels spread over every worker instead of
# going to whoever looked first (a lane keeps its channel until the channel is drained).
SHARED_CLAIM_BATCH = 4
SHARED_CLAIM_PAUSE = 0.05
# A live dispatcher claims lanes this many at a time (per platform), and lets them take their
# first step (render, request on the wire; one per loop iteration, ``LaneStarts``) before it
# claims the next few: a storm's thousand lanes started in one go would each wait behind all
# the others' renders before its request left (seconds).
START_BATCH = 25

T = TypeVar("T")
ChartPaths = Callable[[Sequence[str]], Awaitable[Mapping[str, Sequence[tuple[datetime, float]]]]]


# How long a request already written may still take to land on the platform after the lease
# of the process that wrote it ran out (that process died or stalled mid-send).
IN_FLIGHT_GRACE = timedelta(seconds=2)


# What a lane learns from one delivered row: until when its channel is paced, and whether the
# channel has another row to deliver (None: not known, ask).
Delivered = tuple[datetime | None, bool | None]


class LeaseLost(Exception):
    """This claim's row was taken over by another (its lease ran out): do nothing more."""


class Waker(Protocol):
    """Something that can wake a delivery worker: ingest in process, LISTEN/NOTIFY across."""

    def wake(self) -> None: ...


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DeliveryWorker:
    """Drains the outbox: ``run`` for a live bot, ``deliver_due`` for one pass (replay, tests)."""

    def __init__(
        self,
        store: SqlStore,
        market: MarketState,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
        stats: PipelineStats,
        *,
        rng: random.Random | None = None,
        charts: bool = False,
        timezone: str = "America/New_York",
        owner: str | None = None,
        lease: timedelta = LEASE,
        poll_interval: float = SAFETY_POLL_SECONDS,
        in_flight_grace: timedelta = IN_FLIGHT_GRACE,
    ) -> None:
        self.store = store
        self.market = market
        self.platforms = platforms
        self.clock = clock
        self.stats = stats
        self._rng = rng or random.Random()
        self.charts = charts
        # Where a chart's paths come from: the bot's own view unless something better is set
        # (``bot.chart_backfill`` puts Yahoo's day so far in front of what the bot saw).
        self.chart_paths: ChartPaths | None = None
        self.timezone = timezone
        self.explainer = Explainer()
        self.owner = owner or default_owner()
        self.lease = lease
        self.in_flight_grace = in_flight_grace
        self.poll_interval = poll_interval
        self._lanes: dict[str, asyncio.Task[None]] = {}
        # (lease token, row) -> until when its lease was last renewed. A claim's token is
        # shared by every row it took: one row's renewal says nothing of another's.
        self._held: dict[tuple[str, int], datetime] = {}
        # Rows with a request in flight, kept leased by one heartbeat for all of them.
        self._in_flight: dict[tuple[str, int], Delivery] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        # The heartbeat's pause: wall time whatever the clock (a lease is held against other
        # processes' clocks, not a simulated one); tests step it.
        self.heartbeat_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: dict[str, datetime] = {}  # platform name -> paused until (a global limit)
        self._live = False
        # Waits go through the runtime's clock (bot.scheduler.JobScheduler.sleep): wall time
        # live, simulated time when a test or a replay moves a ManualClock.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # Several processes share a PostgreSQL outbox: each then claims only the lanes of the
        # platforms it has clients for (instead of marking the others' rows dead), and takes
        # lanes in small batches so every process gets its share.
        self.shared = False
        self._more_to_claim = False
        # For settled(): lanes waiting out their pace on the clock, and a signal each time a
        # lane starts waiting or ends.
        self._pacing: set[str] = set()
        self._charts: set[asyncio.Task[None]] = set()  # charts still being drawn or sent
        self._lane_moved: asyncio.Event | None = None
        self._starts: LaneStarts | None = None  # live: lanes' first steps, one per iteration
        # PostgreSQL: a lane's store calls run on a thread of their own (each takes its own
        # pooled connection), so one lane's round trips to the database never hold up the
        # others'. Off elsewhere: SQLite has one writer, and inline calls keep a test on a
        # ManualClock deterministic.
        self.offload_store = False
        self._store_calls: set[asyncio.Future[Any]] = set()

    async def _store(self, call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """A lane's store call: on a thread when ``offload_store``, else inline.

        A cancelled lane (a stop) cannot stop the thread: the call runs to its end, and
        ``run`` waits for it before returning, so the store is never closed under it.
        """
        if not self.offload_store:
            return call(*args, **kwargs)
        running = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs))
        self._store_calls.add(running)
        running.add_done_callback(self._store_calls.discard)
        return await asyncio.shield(running)

    @property
    def live(self) -> bool:
        """``run`` is delivering: committed rows go out without a pass of their own."""
        return self._live

    # -- waking ---------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed: look now. Safe to call from any thread."""
        loop, event = self._loop, self._wakeup
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    # -- the live loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled: lanes start as rows come due; a wake skips the wait."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._starts = LaneStarts()
        self._live = True
        if self.store.engine.dialect.name == "sqlite":
            # One writer per SQLite file: a lease still held was held by a process now dead.
            self.store.expire_leases(self.clock.now())
        try:
            while True:
                self._wakeup.clear()
                if self._start_lanes(SHARED_CLAIM_BATCH if self.shared else START_BATCH):
                    # New lanes render and send first; the dispatcher's own reads (a claim,
                    # when to look next) are not on their way to the platform.
                    await self._starts.drained()
                await self._sleep_until_due()
        finally:
            self._live = False
            for task in [*self._lanes.values(), *self._charts]:
                task.cancel()
            await asyncio.gather(*self._lanes.values(), *self._charts, return_exceptions=True)
            await asyncio.gather(*self._store_calls, return_exceptions=True)

    async def _sleep_until_due(self) -> None:
        assert self._wakeup is not None
        if self._more_to_claim and not self.shared:
            return  # the lanes just started had their turns (run waited): claim more
        if self._more_to_claim:
            # Wall time, whatever clock this process runs on: the pause lets the other
            # processes claim their share, then this one takes more.
            # asyncio.timeout: Python 3.11's wait_for can drop a cancel (a stop) here.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHARED_CLAIM_PAUSE):
                    await self._wakeup.wait()
            return
        timeout = self.poll_interval
        now = self.clock.now()
        due = self.store.next_due_at(now)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - now).total_seconds()))
        woken = asyncio.ensure_future(self._wakeup.wait())
        slept = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (woken, slept):
                waiter.cancel()
            # gather, not `suppress(CancelledError): await waiter`: a stop that cancels this
            # task while it waits here must not be swallowed as the waiter's own cancel.
            await asyncio.gather(woken, slept, return_exceptions=True)

    def _start_lanes(self, batch: int = CLAIM_BATCH) -> list[asyncio.Task[None]]:
        """Claim and start lanes: one pass (``deliver_due``) takes every due lane, ``batch``
        at a time; live (``run``) one batch of each platform's, leaving ``_more_to_claim``
        set when any batch was full."""
        started: list[asyncio.Task[None]] = []
        if not self._live:
            while True:
                claimed = self._claim_heads(batch, self._served(), ())
                started += self._start(claimed)
                if len(claimed) < batch:
                    return started
        # Each platform's lanes are claimed on their own, so the lanes of one start beside
        # the other's: a storm's Discord lanes (the floor is Discord's 50 a second) do not
        # wait for five hundred Slack lanes to start first, whose rows came first.
        names = list(dict.fromkeys(p.name for p in self.platforms))
        budgets = self._free_slots(names)
        # A platform with a global budget (Discord's 50 a second) claims first, and as many
        # lanes as it can send now: its lanes run first, so the burst leaves before the
        # others' renders (a storm's floor is that budget's; Slack's pace is per channel).
        names.sort(key=lambda name: budgets.get(name) is None)
        rounds: list[tuple[list[str] | None, list[str], int]] = []
        for name in names:
            free = budgets.get(name)
            size = batch if self.shared or free is None else max(batch, free)
            rounds.append(([name], [], size))
        if not self.shared:
            rounds.append((None, names, batch))  # channels none of them serves (marked dead)
        more = False
        for platforms, other_than, size in rounds:
            claimed = self._claim_heads(size, platforms, other_than)
            started += self._start(claimed)
            more = more or len(claimed) == size
        self._more_to_claim = more
        return started

    def _free_slots(self, names: Sequence[str]) -> dict[str, int]:
        """Per platform name with a global budget: the requests it can let go now."""
        free: dict[str, int] = {}
        for platform in self.platforms:
            if platform.name in names and isinstance(platform, GloballyPaced):
                free[platform.name] = free.get(platform.name, 0) + platform.free_slots()
        return free

    def _claim_heads(
        self, batch: int, platforms: list[str] | None, other_than: Sequence[str]
    ) -> list[Delivery]:
        return self.store.claim(
            self.owner,
            self.clock.now(),
            self.lease,
            limit=batch,
            exclude=list(self._lanes),
            platforms=platforms,
            other_than=other_than,
        )

    def _start(self, claimed: Sequence[Delivery]) -> list[asyncio.Task[None]]:
        started = []
        for delivery in claimed:
            turn = self._starts.queue() if self._starts is not None and self._live else None
            task = asyncio.create_task(self._lane(delivery, turn), name=f"lane {delivery.channel}")
            self._lanes[delivery.channel] = task
            started.append(task)
        return started

    # -- one pass -------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Deliver everything due now, each lane until it has nothing due; returns accepted."""
        self._loop = asyncio.get_running_loop()
        before = sum(self.stats.by_platform.values())
        while True:
            started = self._start_lanes()
            if not started:
                break
            await asyncio.gather(*started)
        await asyncio.gather(*self._charts)  # the pass ends with its charts sent
        return sum(self.stats.by_platform.values()) - before

    # -- a lane ---------------------------------------------------------------------------

    async def _lane(self, first: Delivery, turn: asyncio.Future[None] | None = None) -> None:
        channel = first.channel
        delivery: Delivery | None = first
        emptied = False
        try:
            if turn is not None:
                await turn
            while delivery is not None:
                outcome = await self._deliver(delivery)
                if outcome is None:
                    break  # the lane waits (retry, broken): the store knows until when
                pace_until, more = outcome
                if more is None:
                    more = await self._store(self.store.lane_open, channel)
                if not more:
                    # Nothing more for this channel: end now rather than claim (and, paced,
                    # sleep and claim again) to find nothing. A row committed from here on
                    # wakes the dispatcher itself, and finds this lane gone. Not so when the
                    # check ran on a thread: a wake may have come (and found the lane still
                    # here) while it ran, so the dispatcher looks again.
                    emptied = not self.offload_store
                    break
                claimed = await self._store(self._claim_lane, channel)
                if not claimed and self._live and isinstance(pace_until, datetime):
                    # The next message of this lane may be due once the pace allows: wait here,
                    # in this lane's own task, then look again.
                    self._pacing.add(channel)
                    self._moved()
                    try:
                        await self.sleep(max(0.0, (pace_until - self.clock.now()).total_seconds()))
                    finally:
                        self._pacing.discard(channel)
                    claimed = await self._store(self._claim_lane, channel)
                delivery = claimed[0] if claimed else None
        finally:
            self._lanes.pop(channel, None)
            self._moved()
            if self._live and not emptied:
                # Rows it leaves (not due yet, paced, to retry) are the dispatcher's again; an
                # emptied lane leaves none, and waking for it would cost a claim per message.
                self.wake()

    def _moved(self) -> None:
        if self._lane_moved is not None:
            self._lane_moved.set()

    async def settled(self) -> None:
        """Return once delivery did all it can at the clock's time now: every lane ended or
        waits out its pace on the clock, and no wake is left unanswered. For simulated time
        (a test, a replay): what is due now has been sent before the clock moves on."""
        while True:
            for _ in range(5):  # a woken dispatcher claims and starts its lanes
                await asyncio.sleep(0)
            busy = [task for channel, task in self._lanes.items() if channel not in self._pacing]
            busy += self._charts
            woken = self._live and (
                self._more_to_claim or (self._wakeup is not None and self._wakeup.is_set())
            )
            if not busy and not woken:
                return
            if busy:
                moved = self._lane_moved = asyncio.Event()
                waiter = asyncio.ensure_future(moved.wait())
                try:
                    await asyncio.wait({*busy, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    self._lane_moved = None

    def _claim_lane(self, channel: str) -> list[Delivery]:
        return self.store.claim(self.owner, self.clock.now(), self.lease, channel=channel, limit=1)

    def _served(self) -> list[str] | None:
        return [p.name for p in self.platforms] if self.shared else None

    async def _deliver(self, delivery: Delivery) -> Delivered | None:
        """One claimed row through its platform: the lane's pace and whether its channel has
        more to deliver (None: not known), or None when the lane stops."""
        try:
            return await self._deliver_claimed(delivery)
        finally:
            self._held.pop(_held_key(delivery), None)

    async def _deliver_claimed(self, delivery: Delivery) -> Delivered | None:
        platform = platform_for(self.platforms, delivery.channel)
        if platform is None:
            self.store.give_up(delivery, f"no platform handles {delivery.channel}")
            self.stats.dead_letters += 1
            log.error(
                "no platform for channel %s; outbox row %s kept as dead",
                delivery.channel,
                delivery.outbox_id,
            )
            return None, None
        paused = self._paused.get(platform.name)
        if paused is not None and paused > self.clock.now():
            self.store.retry_later(delivery, f"{platform.name} paused", retry_at=paused)
            return None
        message = await self._store(self.render, delivery)
        try:
            ref, posted = await self._attempt(platform, delivery, message)
        except LeaseLost:
            log.warning(
                "outbox row %s to %s passed to another claim before it was sent; left to it",
                delivery.outbox_id,
                delivery.channel,
            )
            return None
        except DeliveryError as exc:
            self._failed(platform, delivery, exc)
            return None
        except Exception as exc:  # an SDK bug or a network error we did not map
            log.exception("delivery to %s failed", delivery.channel)
            self._failed(
                platform,
                delivery,
                DeliveryError(repr(exc), retryable=True, outcome_unknown=True),
            )
            return None
        now = self.clock.now()
        interval = platform.per_channel_interval if isinstance(platform, PacedPlatform) else 0.0
        pace_until = now + timedelta(seconds=interval) if interval else None
        was_broken, more = await self._store(
            self.store.confirm_and_look, delivery, ref.message_id, now, pace_until=pace_until
        )
        if was_broken:
            log.warning(
                "%s accepts messages again; it is no longer marked broken", delivery.channel
            )
        self.stats.by_platform[platform.name] = self.stats.by_platform.get(platform.name, 0) + 1
        if delivery.kind == "digest":
            self.stats.digests_sent += 1
        elif delivery.kind == "summary":
            self.stats.summaries_sent += 1
        if posted and self.charts and isinstance(platform, ImageUploader):
            # On a task of its own: the chart (a Yahoo backfill, a render) must not hold the
            # lane, or the channel's next message (an edit with the names that joined) waits.
            chart = asyncio.create_task(self._send_chart(platform, delivery, message))
            self._charts.add(chart)
            chart.add_done_callback(self._charts.discard)
        return pace_until, more

    async def _attempt(
        self, platform: ChatPlatform, delivery: Delivery, message: AlertMessage
    ) -> tuple[MessageRef, bool]:
        """Send, edit, or first find the post an earlier attempt may have made."""
        if delivery.message_id is not None:
            ref = MessageRef(channel=delivery.channel, message_id=delivery.message_id)
            # An edit shows the whole group: repeating one is harmless.
            edited = await self._leased(delivery, platform.edit(ref, message))
            self.stats.messages_edited += 1
            return edited, False
        if delivery.reconcile and isinstance(platform, SentFinder):
            found = await self._reconcile(platform, delivery)
            if found is not None:
                self.stats.reconciled += 1
                log.info("outbox row %s was already posted; recorded", delivery.outbox_id)
                return found, False
        # Discord answers a repeated nonce with the message it already made.
        sent = await self._leased(
            delivery, platform.send(message, idempotency_key=delivery.idempotency_key)
        )
        if delivery.group_id is not None:
            self.stats.messages_sent += 1  # alert messages; notices have their own counts
        return sent, True

    async def _reconcile(self, platform: SentFinder, delivery: Delivery) -> MessageRef | None:
        """The post an earlier attempt made, or None once it is certain there is none.

        An attempt whose lease ran out unheard (its process died or stalled mid-send) may
        still land: "not in the history" proves nothing until ``in_flight_grace`` after its
        lease ended, so the look waits until then (renewing this claim meanwhile).
        """
        if delivery.lapsed_at is not None:
            settled = delivery.lapsed_at + self.in_flight_grace
            wait = (settled - self.clock.now()).total_seconds()
            if wait > 0:
                await self._leased(delivery, self._wait(wait))
        return await self._leased(
            delivery,
            platform.find_sent(
                delivery.channel, delivery.idempotency_key, after=delivery.after_message_id
            ),
        )

    async def _wait(self, seconds: float) -> None:
        await self.sleep(seconds)

    async def _leased(self, delivery: Delivery, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` under the row's lease, kept by the heartbeat while it takes long.

        Where the lease may have run out before the request starts (a third of it gone: a
        stall, a slow render) it is renewed first, which fences a claim that lost its row to
        another process: it sends nothing.

        ``work`` runs in this lane's own task, at once: a request leaves right after its
        render, not behind every other lane's render (a storm starts a thousand lanes in one
        go). Renewals run beside it, only once it has taken a third of the lease.
        """
        key = _held_key(delivery)
        held = self._held.get(key, delivery.lease_expires_at)
        stale = held is None or held - self.clock.now() < self.lease * 2 / 3
        if stale and not await self._renew(delivery):
            work.close()
            raise LeaseLost(delivery.outbox_id)
        self._in_flight[key] = delivery
        # Most requests are answered within a third of a lease; for one that is not, the
        # heartbeat keeps its lease (and every other one in flight) from then on.
        timer = asyncio.get_running_loop().call_later(
            max(0.05, self.lease.total_seconds() / 3), self._start_heartbeat
        )
        try:
            return await work
        finally:
            timer.cancel()
            del self._in_flight[key]
            if not self._in_flight and self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None and self._in_flight:
            self._heartbeat = asyncio.create_task(self._keep_leases(), name="lease heartbeat")

    async def _keep_leases(self) -> None:
        """Renew the lease of every row with a request in flight, in one statement, now and
        a third of a lease apart. A renewal per lane was a commit on the event loop every
        0.7 s per lane with a 2 s lease: forty lanes in flight on a loaded machine spent the
        loop on renewals, their answers waited, and the rows stayed ``sending`` past the
        crash test's 90 s. A failed renewal (the database away) is logged: the requests go
        on, and should a lease run out meanwhile, the row is reconciled before anything is
        sent again."""
        every = max(0.05, self.lease.total_seconds() / 3)
        while True:
            held = list(self._in_flight.items())
            until = self.clock.now() + self.lease
            try:
                kept = await self._store(self.store.renew_many, [d for _, d in held], until)
            except Exception:
                log.exception("outbox leases not renewed")
                kept = set()
            for key, delivery in held:
                if delivery.outbox_id in kept:
                    self._held[key] = until
                else:
                    self._held.pop(key, None)
            await self.heartbeat_sleep(every)

    async def _renew(self, delivery: Delivery) -> bool:
        until = self.clock.now() + self.lease
        if not await self._store(self.store.renew, delivery, until):
            self._held.pop(_held_key(delivery), None)
            return False
        self._held[_held_key(delivery)] = until
        return True

    def _failed(self, platform: ChatPlatform, delivery: Delivery, exc: DeliveryError) -> None:
        now = self.clock.now()  # when the refusal arrived: Retry-After counts from here
        self.stats.delivery_failures += 1
        error = str(exc)
        if exc.destination_gone:
            newly, dropped = self.store.mark_broken(delivery, error, now)
            self.stats.rows_dropped += dropped
            if newly:
                self.stats.destinations_broken += 1
                log.error(
                    "%s refuses delivery (%s): marked broken, %d queued message(s) dropped; "
                    "a new alert to it is tried again after a backoff",
                    delivery.channel,
                    error,
                    dropped,
                )
            return
        if exc.message_gone:
            log.warning("%s: the message to edit is gone; posting the group anew", delivery.channel)
            self.store.repost(delivery, error, now)
            return
        if not exc.retryable:
            self.stats.dead_letters += 1
            log.error(
                "outbox row %s to %s refused: %s", delivery.outbox_id, delivery.channel, error
            )
            self.store.give_up(delivery, error)
            return
        if exc.retry_after is not None:
            self.stats.rate_limited += 1
            delay = exc.retry_after  # never less than asked
        else:
            backoff = min(MAX_RETRY_DELAY.total_seconds(), 2.0 ** max(0, delivery.attempts - 1))
            delay = backoff * (0.5 + self._rng.random() / 2)
        retry_at = now + timedelta(seconds=delay)
        if exc.platform_wide:
            self._paused[platform.name] = max(retry_at, self._paused.get(platform.name, now))
            log.warning("%s paused for %.1fs: %s", platform.name, delay, error)
        else:
            log.warning(
                "delivery to %s failed (%s); retrying in %.1fs", delivery.channel, error, delay
            )
        if exc.outcome_unknown:
            # A request cut short by a timeout or a reset may still be on its way (a loaded
            # platform processes it after the client gave up): until the in-flight grace has
            # passed the history cannot prove it was not posted, so the reconcile waits.
            reconcile_at = max(retry_at, now + self.in_flight_grace)
            self.store.outcome_unknown(delivery, error, reconcile_at=reconcile_at)
        else:
            self.store.retry_later(delivery, error, retry_at=retry_at)

    async def _send_chart(
        self, platform: ChatPlatform, delivery: Delivery, message: AlertMessage
    ) -> None:
        """A chart under a new alert message (the names' moves) or digest, where it can.

        Best effort: the message itself is already delivered and recorded, so a failed chart
        is logged and dropped rather than retried (a retry could only duplicate the image).
        """
        if not self.charts or not isinstance(platform, ImageUploader):
            return
        if delivery.kind == "summary":
            return
        try:
            if delivery.kind == "digest":
                image, filename = await asyncio.to_thread(_digest_chart, message), "digest.png"
            else:
                from bot.charts import render_move_chart

                symbols = list(dict.fromkeys(a.symbol for a in message.alerts))
                moves: Mapping[str, Sequence[tuple[datetime, float]]]
                if self.chart_paths is not None:
                    moves = await self.chart_paths(symbols)
                else:
                    moves = {symbol: self.market.path(symbol) for symbol in symbols}
                if not any(len(points) >= 2 for points in moves.values()):
                    return
                filename = "moves.png"
                image = await asyncio.to_thread(
                    render_move_chart,
                    moves,
                    title=message.title,
                    timezone=self.timezone,
                    message=message,  # the rule lines and the fire markers
                )
            if image is not None:
                await platform.upload_image(
                    message.channel, image, filename=filename, title=message.title
                )
                self.stats.charts_sent += 1
        except Exception:
            log.exception("chart for %s not sent", message.channel)

    def render(self, delivery: Delivery) -> AlertMessage:
        if delivery.notice is not None:
            return delivery.notice  # composed when it was queued
        now = self.clock.now()
        context = self.market.context()
        # The message's context is read from what both stages share, never from ingest or the
        # engine: the channel's baskets from the store, the latest moves from the market view.
        baskets = all_baskets(self.store.list_baskets(delivery.channel))
        # Price groups carry the headlines that explain the move, ranked by relevance.
        latest = self.market.moves()
        attribution = self.explainer.explain(
            delivery.alerts,
            self.market.news(),
            baskets=baskets,
            context=context,
            watched={w.target for w in self.store.list_watches(delivery.channel)},
            now=now,
            latest_moves=latest,
        )
        return compose_message(
            delivery.channel,
            delivery.alerts,
            context=context,
            headlines=self.market.headlines_for({a.symbol for a in delivery.alerts}, now),
            baskets=baskets,
            now=now,
            # The whole basket's latest moves, so a follow-up counts every name that is down,
            # not only those in its own group.
            moves=latest,
            attribution=attribution,
        )


def _held_key(delivery: Delivery) -> tuple[str, int]:
    return (delivery.lease_token, delivery.outbox_id)


def _digest_chart(message: AlertMessage) -> bytes | None:
    if not message.alerts:
        return None
    from alerts.digest import digest_moves
    from bot.digest_chart import render_digest_chart

    return render_digest_chart(digest_moves(message), title=message.title)
