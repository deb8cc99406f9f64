"""The outbox's leases under a slow, loaded process, each at the exact interleaving.

The crash test (tests/test_delivery_crash.py) storms a bot it kills; on a loaded machine it
failed twice: rows stuck ``sending`` with live leases while the bot made almost no progress,
and one Slack post sent twice. Each test here drives one cause to its moment on an injected
clock, on SQLite and on PostgreSQL (where configured):

- renewing the leases of the requests in flight took one write per lane every third of a
  lease, on the event loop: forty lanes in flight spent the loop on renewals;
- a request cut short by a client timeout was reconciled before it could have landed (the
  Slack fake, like Slack, still posts a request whose client gave up);
- a claim's rows share its lease token, so one row's renewal stood in for another's and a
  row another process had taken over was still sent (no fence).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.models import AlertMessage
from alerts.ports import DeliveryError, ManualClock, MessageRef
from bot.fakes.slack_server import FakeSlack
from bot.pipeline.delivery import DeliveryWorker, LeaseLost
from bot.pipeline.market_view import MarketState
from bot.pipeline.stats import PipelineStats
from bot.settings import SlackSettings
from bot.slack.app import create_slack_platform
from bot.slack.platform import SlackPlatform
from bot.store import Delivery, SqlStore


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (other tasks change it)
            await asyncio.sleep(0.01)


def _worker(
    store: SqlStore, platforms: list[Any], clock: ManualClock, owner: str
) -> DeliveryWorker:
    return DeliveryWorker(
        store,
        MarketState(()),
        platforms,
        clock,
        PipelineStats(),
        owner=owner,
    )


def _queue_notice(store: SqlStore, channel: str, clock: ManualClock, text: str = "notice") -> None:
    store.add_watch(channel, "NVDA", "drop 5%", now=clock.now())  # the channel's row
    message = AlertMessage(channel=channel, title=text, alerts=(), at=clock.now())
    assert store.queue_digest(
        message, day=None, now=clock.now(), expires_at=clock.now() + timedelta(hours=1)
    )


def _leases(store: SqlStore) -> dict[int, object]:
    from sqlalchemy import select

    from bot.store.schema import OutboxRow

    with store.engine.connect() as conn:
        return dict(
            conn.execute(
                select(OutboxRow.id, OutboxRow.lease_expires_at).where(
                    OutboxRow.status == "sending"
                )
            ).all()
        )


class _Stalled:
    """A platform whose sends are all held until released: requests in flight."""

    name = "stub"

    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    def handles(self, channel: str) -> bool:
        return channel.startswith("stub:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self.entered += 1
        await self.release.wait()
        return MessageRef(channel=message.channel, message_id=f"m-{idempotency_key}")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref


async def test_requests_in_flight_keep_their_leases_with_one_write_a_beat(
    store: SqlStore, clock: ManualClock
) -> None:
    lanes = 8
    for n in range(lanes):
        _queue_notice(store, f"stub:{n}", clock)
    platform = _Stalled()
    worker = _worker(store, [platform], clock, "one")
    # A short lease: the requests outlive its first third (0.1 s) at once, and the
    # heartbeat takes them; its beats are the test's.
    worker.lease = timedelta(seconds=0.3)
    writes: list[int] = []
    renew, renew_many = store.renew, store.renew_many

    def counted_renew(delivery: Delivery, until: object) -> bool:
        writes.append(1)
        return renew(delivery, until)  # type: ignore[arg-type]

    def counted_renew_many(deliveries: list[Delivery], until: object) -> set[int]:
        writes.append(len(deliveries))
        return renew_many(deliveries, until)  # type: ignore[arg-type]

    store.renew = counted_renew  # type: ignore[method-assign]
    store.renew_many = counted_renew_many  # type: ignore[method-assign]
    beats: asyncio.Queue[None] = asyncio.Queue()

    async def beat(seconds: float) -> None:
        await beats.get()

    worker.heartbeat_sleep = beat
    passing = asyncio.create_task(worker.deliver_due())
    try:
        await _until(lambda: platform.entered == lanes)
        # Past a third of the lease the heartbeat starts and renews what is in flight.
        await _until(lambda: len(writes) == 1)
        for n in range(2, 5):
            # A whole lease passes between beats: only a renewal keeps the rows this claim's.
            clock.advance(worker.lease)
            beats.put_nowait(None)
            await _until(lambda n=n: len(writes) == n)  # type: ignore[misc]
        # Four writes (the start and three beats), each for every lane in flight: not one
        # write per lane. No lane renewed on its own (fresh claims need no fence either).
        assert writes[1:] == [lanes, lanes, lanes]
        assert writes[0] <= lanes
        assert set(_leases(store).values()) == {clock.now() + worker.lease}
        platform.release.set()
        await passing
    finally:
        platform.release.set()
        passing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await passing
    assert store.outbox_counts() == {"sent": lanes}


async def test_a_row_taken_over_is_not_sent_though_its_claims_other_row_was_renewed(
    store: SqlStore, clock: ManualClock
) -> None:
    # Worker one claims two lanes at once (one token). It stalls past the lease; worker two
    # takes lane B over. Worker one renews lane A (it still holds it), then goes to send B:
    # B's own lease ran out and is another's, so the fence must stop it.
    _queue_notice(store, "stub:a", clock)
    _queue_notice(store, "stub:b", clock)
    one = _worker(store, [_Stalled()], clock, "one")
    a, b = store.claim("one", clock.now(), one.lease, limit=10)
    assert a.lease_token == b.lease_token
    clock.advance(one.lease + timedelta(seconds=1))
    assert await one._renew(a)
    [taken] = store.claim("two", clock.now(), one.lease, channel=b.channel)
    assert taken.outbox_id == b.outbox_id
    assert taken.reconcile
    sent: list[str] = []

    async def send() -> str:
        sent.append(b.channel)
        return "sent"

    with pytest.raises(LeaseLost):
        await one._leased(b, send())
    assert sent == []


FAULTY = "C0SLOW"


@dataclass
class _SlackDesk:
    store: SqlStore
    clock: ManualClock
    slack: FakeSlack
    worker: DeliveryWorker

    def posts(self) -> list[str]:
        return [
            json.dumps(m.metadata)
            for (channel, _), m in sorted(self.slack.messages.items())
            if channel == FAULTY
        ]


class _TimesOutOnce(SlackPlatform):
    """The real Slack platform, whose first post gives up once Slack has the request: what
    a client timeout does on a loaded machine. The request itself goes on (Slack processes
    what it received); its answer reaches no one."""

    fake: FakeSlack
    abandoned: asyncio.Future[MessageRef] | None = None

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        if self.abandoned is not None:
            return await super().send(message, idempotency_key=idempotency_key)
        elsewhere = SlackPlatform(self.client)  # what this platform will never hear of
        self.abandoned = asyncio.ensure_future(
            elsewhere.send(message, idempotency_key=idempotency_key)
        )
        await _until(lambda: bool(self.fake.calls("chat.postMessage")))
        raise DeliveryError(
            "slack chat.postMessage: TimeoutError", retryable=True, outcome_unknown=True
        )


@pytest.fixture
async def slack_desk(tmp_path: Path, clock: ManualClock) -> AsyncIterator[_SlackDesk]:
    async with FakeSlack() as slack:
        store = SqlStore(f"sqlite:///{tmp_path / 'leases.db'}")
        store.upgrade()
        settings = SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
        real = create_slack_platform(settings)
        platform = _TimesOutOnce(real.client)
        platform.fake = slack
        try:
            yield _SlackDesk(store, clock, slack, _worker(store, [platform], clock, "one"))
        finally:
            store.close()


async def test_a_post_cut_short_by_a_timeout_is_not_sent_again_before_it_could_land(
    slack_desk: _SlackDesk,
) -> None:
    desk = slack_desk
    held = asyncio.Event()
    desk.slack.fail("chat.postMessage", hold=held, channel=FAULTY)
    _queue_notice(desk.store, f"slack:{FAULTY}", desk.clock, "the post")
    await desk.worker.deliver_due()  # the client gave up; Slack holds the request
    assert desk.posts() == []
    # A second later (the retry's backoff is under one): the request has not landed yet.
    desk.clock.advance(timedelta(seconds=1))
    await desk.worker.deliver_due()
    # It lands now, within the in-flight grace of the timeout.
    held.set()
    await _until(lambda: len(desk.posts()) >= 1)
    for _ in range(3):
        desk.clock.advance(timedelta(seconds=1.5))
        await desk.worker.deliver_due()
    platform = desk.worker.platforms[0]
    assert isinstance(platform, _TimesOutOnce)
    assert platform.abandoned is not None
    await platform.abandoned  # the request that was given up on did land
    assert len(desk.posts()) == 1, desk.posts()
    assert desk.store.outbox_counts() == {"sent": 1}
    assert desk.worker.stats.reconciled == 1
