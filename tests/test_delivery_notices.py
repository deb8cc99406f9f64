"""Digests and mute summaries go through the outbox: a crash at any point neither loses nor
repeats one.

The crash is the process dying the instant Slack accepted the post (the fake's
``after_accept`` cancels everything the process was doing: nothing after acceptance runs,
as with ``kill -9``). A new process on the same database then finishes the job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import MarketSession, Mute, Quote
from alerts.ports import ManualClock
from bot.fakes.slack_server import FakeSlack
from bot.pipeline import Pipeline
from bot.pipeline.delivery import IN_FLIGHT_GRACE, LEASE
from bot.settings import SlackSettings
from bot.slack.app import create_slack_platform
from bot.store import SqlStore

ET = ZoneInfo("America/New_York")
MONDAY_8AM = datetime.combine(date(2025, 1, 27), time(8, 0), tzinfo=ET).astimezone(UTC)
RAW = "C0DIGEST"
CHANNEL = f"slack:{RAW}"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def _process(url: str, slack: FakeSlack, clock: ManualClock) -> Pipeline:
    """One bot process: its own store connections and Slack client (nothing in memory shared)."""
    store = SqlStore(url)
    store.upgrade()
    settings = SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
    pipeline = Pipeline(
        store,
        Engine(),
        [create_slack_platform(settings)],
        clock,
        grouping=GroupingConfig(group_wait=timedelta(0)),
        context_symbols=(),
    )
    pipeline.load()
    return pipeline


async def _killed_on_acceptance(slack: FakeSlack, work: asyncio.Future[int]) -> None:
    """Run ``work`` until Slack accepts a post, then stop it dead (``kill -9``)."""
    slack.after_accept = work.cancel
    with pytest.raises(asyncio.CancelledError):
        await work
    slack.after_accept = None


def _posts(slack: FakeSlack, text: str) -> int:
    return sum(
        1
        for (channel, _), m in slack.messages.items()
        if channel == RAW and text in json.dumps(m.blocks or m.text)
    )


def _restart_clock(clock: ManualClock) -> None:
    # The dead process's lease runs out, then the in-flight grace: the new one reconciles.
    clock.advance(LEASE + IN_FLIGHT_GRACE + timedelta(seconds=1))


async def test_a_crash_between_acceptance_and_confirm_posts_the_digest_once(
    tmp_path: Path, slack: FakeSlack
) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    clock = ManualClock(MONDAY_8AM)
    first = _process(url, slack, clock)
    first.store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    first.store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=time(8)), clock.now())
    await _killed_on_acceptance(slack, asyncio.ensure_future(first.send_due_digests()))
    assert _posts(slack, "Premarket digest") == 1  # Slack has it; the bot never heard back

    _restart_clock(clock)
    second = _process(url, slack, clock)
    await second.send_due_digests()
    clock.advance(timedelta(minutes=1))
    await second.send_due_digests()
    assert _posts(slack, "Premarket digest") == 1
    assert second.stats.reconciled == 1
    assert second.store.outbox_counts() == {"sent": 1}
    first.store.close()
    second.store.close()


async def test_a_crash_after_the_mute_summary_was_accepted_posts_it_once(
    tmp_path: Path, slack: FakeSlack
) -> None:
    url = f"sqlite:///{tmp_path / 'mute.db'}"
    clock = ManualClock(MONDAY_8AM)
    first = _process(url, slack, clock)
    first.store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    mute = Mute(CHANNEL, "NVDA", until=clock.now() + timedelta(hours=1), created_at=clock.now())
    first.store.add_mute(mute)
    first.sync_watches()
    quote = Quote("NVDA", 124.0, clock.now(), MarketSession.PRE, previous_close=142.62)
    assert first.ingest_quotes([quote])
    await first.deliver_due()
    assert _posts(slack, "NVDA") == 0  # muted
    clock.advance(timedelta(hours=1))
    await _killed_on_acceptance(slack, asyncio.ensure_future(first.end_expired_mutes()))
    assert _posts(slack, "NVDA") == 1

    _restart_clock(clock)
    second = _process(url, slack, clock)
    await second.end_expired_mutes()
    clock.advance(timedelta(minutes=1))
    await second.end_expired_mutes()
    assert _posts(slack, "NVDA") == 1
    assert second.stats.reconciled == 1
    assert second.store.all_mutes() == []
    first.store.close()
    second.store.close()


async def test_a_digest_to_a_channel_gone_marks_it_broken_and_is_dropped(
    tmp_path: Path, slack: FakeSlack
) -> None:
    url = f"sqlite:///{tmp_path / 'gone.db'}"
    clock = ManualClock(MONDAY_8AM)
    bot = _process(url, slack, clock)
    bot.store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=time(8)), clock.now())
    slack.fail("chat.postMessage", error="channel_not_found", times=99, channel=RAW)
    assert await bot.send_due_digests() == 0
    [broken] = bot.store.broken_destinations()
    assert broken.channel == CHANNEL
    assert bot.store.outbox_counts() == {"dropped": 1}
    clock.advance(timedelta(minutes=30))
    assert await bot.send_due_digests() == 0  # the day's digest was queued once: not again
    assert len(slack.calls("chat.postMessage")) == 1
    bot.store.close()


async def test_a_digest_asked_for_where_nothing_else_was_typed_is_posted(
    tmp_path: Path, slack: FakeSlack
) -> None:
    # A bare /digest as the first command in a channel: the store has no row for it yet.
    clock = ManualClock(MONDAY_8AM)
    pipeline = _process(f"sqlite:///{tmp_path / 'new.db'}", slack, clock)
    assert pipeline.digests.queue_now(CHANNEL)
    assert await pipeline.deliver_due() == 1
    assert _posts(slack, "Premarket digest") == 1
