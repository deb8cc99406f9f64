"""Delivery under every fault the platforms throw, through the real SDKs and the loopback fakes.

Three channels per platform watch NVDA; one of them (the faulty lane) is scripted to fail.
For each fault: the healthy lanes get their message in the first pass, as fast as with no
fault; the faulty lane is never retried before the Retry-After it was given (on the injected
clock, or measured at the fake when discord.py waits itself); and every alert ends up in
exactly one message of its channel: nothing lost, nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import discord
import pytest
from pydantic import SecretStr

from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import MarketSession, Quote
from alerts.ports import ManualClock
from bot.discord.app import configure_endpoints
from bot.discord.platform import DiscordPlatform
from bot.fakes.discord_server import FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.news.window import since_previous_close
from bot.pipeline import Pipeline
from bot.settings import SlackSettings
from bot.slack.app import create_slack_platform
from bot.store import SqlStore

pytestmark = pytest.mark.usefixtures("discord_endpoints")

PREV = 142.62
SLACK_IDS = ("C0FAULT", "C0OK1", "C0OK2")
DISCORD_IDS = ("900000000000000001", "900000000000000002", "900000000000000003")


@dataclass
class Desk:
    store: SqlStore
    pipeline: Pipeline
    clock: ManualClock
    slack: FakeSlack
    discord: FakeDiscord

    @property
    def channels(self) -> list[str]:
        return [f"slack:{c}" for c in SLACK_IDS] + [f"discord:{c}" for c in DISCORD_IDS]

    def crash(self, symbol: str, change_pct: float = -11.0) -> None:
        quote = Quote(
            symbol,
            round(PREV * (1 + change_pct / 100), 2),
            self.clock.now(),
            MarketSession.PRE,
            previous_close=PREV,
        )
        assert self.pipeline.ingest_quotes([quote])

    async def deliver(self, after: timedelta = timedelta(0)) -> float:
        """Advance the clock, run one delivery pass; returns its start (fake-side clock)."""
        self.clock.advance(after)
        started = time.monotonic()
        await self.pipeline.deliver_due()
        return started

    def messages_showing(self, channel: str, symbol: str) -> int:
        platform, raw = channel.split(":", 1)
        if platform == "slack":
            return sum(
                1
                for (ch, _), m in self.slack.messages.items()
                if ch == raw and symbol in json.dumps(m.blocks or m.text)
            )
        return sum(
            1
            for m in self.discord.messages.values()
            if m["channel_id"] == raw and symbol in json.dumps(m["embeds"])
        )

    def first_request_at(self, channel: str) -> float:
        platform, raw = channel.split(":", 1)
        if platform == "slack":
            calls = [r for r in self.slack.calls("chat.postMessage") if r.params["channel"] == raw]
        else:
            calls = self.discord.calls("POST", rf"/channels/{raw}/messages")
        return min(r.at for r in calls)


@pytest.fixture
async def desk(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Desk]:
    async with FakeSlack() as slack, FakeDiscord() as fake_discord:
        configure_endpoints(fake_discord.rest_base, None)
        client = discord.Client(intents=discord.Intents.none(), max_ratelimit_timeout=30.0)
        await client.login(fake_discord.token)
        store = SqlStore(f"sqlite:///{tmp_path / 'faults.db'}")
        store.upgrade()
        settings = SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
        pipeline = Pipeline(
            store,
            Engine(),
            [create_slack_platform(settings), DiscordPlatform(client)],
            clock,
            grouping=GroupingConfig(group_wait=timedelta(0)),
            context_symbols=(),
        )
        result = Desk(store, pipeline, clock, slack, fake_discord)
        for channel in result.channels:
            for symbol in ("NVDA", "AMD"):
                store.add_watch(channel, symbol, "drop 10%", now=clock.now())
        pipeline.sync_watches()
        # The exchange calendar loads once per process (about a second): load it before the
        # clock that measures lane latency starts.
        since_previous_close(clock.now())
        try:
            yield result
        finally:
            await client.close()
            store.close()


def _healthy_fast(desk: Desk, started: float, healthy: list[str]) -> None:
    for channel in healthy:
        assert desk.messages_showing(channel, "NVDA") == 1, channel
        # A healthy lane does not wait for the faulty one (a generous bound: a loaded
        # machine; the short-429 tests also check it went out before the faulty retry).
        assert desk.first_request_at(channel) - started < 2.0, channel


def _exactly_once_everywhere(desk: Desk, symbols: tuple[str, ...] = ("NVDA",)) -> None:
    for channel in desk.channels:
        for symbol in symbols:
            assert desk.messages_showing(channel, symbol) == 1, (channel, symbol)
    assert desk.store.undelivered_alerts() == []


FAULTY_SLACK = f"slack:{SLACK_IDS[0]}"
FAULTY_DISCORD = f"discord:{DISCORD_IDS[0]}"

Arm = Callable[[Desk], None]


@pytest.mark.parametrize(
    ("arm", "faulty", "retry_after", "platform_wide"),
    [
        pytest.param(
            lambda d: d.slack.fail("chat.postMessage", 429, retry_after=30, channel=SLACK_IDS[0]),
            FAULTY_SLACK,
            30.0,
            False,
            id="slack-429-long",
        ),
        pytest.param(
            lambda d: d.discord.fail(
                "POST", rf"/channels/{DISCORD_IDS[0]}/messages", retry_after=40.0
            ),
            FAULTY_DISCORD,
            40.0,
            False,
            id="discord-429-long",
        ),
        pytest.param(
            lambda d: d.discord.fail(
                "POST", rf"/channels/{DISCORD_IDS[0]}/messages", retry_after=12.0, via=False
            ),
            FAULTY_DISCORD,
            12.0,
            True,  # Cloudflare's 429: every Discord channel waits
            id="discord-429-without-via",
        ),
    ],
)
async def test_a_long_retry_after_is_never_undercut(
    desk: Desk, arm: Arm, faulty: str, retry_after: float, platform_wide: bool
) -> None:
    arm(desk)
    desk.crash("NVDA")
    started = await desk.deliver()
    healthy = [c for c in desk.channels if c != faulty]
    if platform_wide:
        healthy = [c for c in healthy if not c.startswith("discord:")]
    _healthy_fast(desk, started, healthy)
    assert desk.messages_showing(faulty, "NVDA") == 0
    await desk.deliver(timedelta(seconds=retry_after - 0.5))
    assert desk.messages_showing(faulty, "NVDA") == 0  # not a moment early
    await desk.deliver(timedelta(seconds=0.5))
    _exactly_once_everywhere(desk)
    assert desk.pipeline.stats.rate_limited >= 1


async def test_a_short_slack_429_is_waited_out_in_its_own_lane(desk: Desk) -> None:
    desk.slack.fail("chat.postMessage", 429, retry_after=1, channel=SLACK_IDS[0])
    desk.crash("NVDA")
    started = await desk.deliver()
    _healthy_fast(desk, started, [c for c in desk.channels if c != FAULTY_SLACK])
    calls = [r for r in desk.slack.calls("chat.postMessage") if r.params["channel"] == SLACK_IDS[0]]
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 1.0  # Retry-After, counted from the 429's arrival
    for channel in desk.channels[1:]:
        assert desk.first_request_at(channel) < calls[1].at  # nobody waited for that lane
    _exactly_once_everywhere(desk)


async def test_a_short_discord_429_is_waited_out_by_discord_py_in_its_lane(desk: Desk) -> None:
    desk.discord.fail("POST", rf"/channels/{DISCORD_IDS[0]}/messages", retry_after=0.4)
    desk.crash("NVDA")
    started = await desk.deliver()
    _healthy_fast(desk, started, [c for c in desk.channels if c != FAULTY_DISCORD])
    calls = desk.discord.calls("POST", rf"/channels/{DISCORD_IDS[0]}/messages")
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 0.4
    _exactly_once_everywhere(desk)


async def test_a_global_discord_429_pauses_discord_only(desk: Desk) -> None:
    desk.discord.fail(
        "POST", rf"/channels/{DISCORD_IDS[0]}/messages", retry_after=0.4, global_=True
    )
    desk.crash("NVDA")
    started = await desk.deliver()
    _healthy_fast(desk, started, [c for c in desk.channels if c.startswith("slack:")])
    limited_at = desk.discord.calls("POST", rf"/channels/{DISCORD_IDS[0]}/messages")[0].at
    retried = desk.discord.calls("POST", rf"/channels/{DISCORD_IDS[0]}/messages")[1].at
    assert retried - limited_at >= 0.4
    for raw in DISCORD_IDS:
        # Requests already in flight with the 429 arrive within milliseconds of it; every
        # request sent after the 429 reached discord.py waited the global pause out.
        later = [
            r.at
            for r in desk.discord.calls("POST", rf"/channels/{raw}/messages")
            if r.at - limited_at > 0.05
        ]
        assert all(at - limited_at >= 0.4 for at in later)
    _exactly_once_everywhere(desk)


@pytest.mark.parametrize(
    "arm",
    [
        pytest.param(
            lambda d: d.slack.fail("chat.postMessage", 500, channel=SLACK_IDS[0]),
            id="slack-500",
        ),
        pytest.param(
            lambda d: d.slack.fail("chat.postMessage", reset="before", channel=SLACK_IDS[0]),
            id="slack-reset-before-processing",
        ),
        pytest.param(
            lambda d: d.slack.fail("chat.postMessage", reset="after", channel=SLACK_IDS[0]),
            id="slack-reset-after-processing",
        ),
        pytest.param(
            lambda d: d.discord.fail("POST", rf"/channels/{DISCORD_IDS[0]}/messages", status=503),
            id="discord-503",
        ),
        pytest.param(
            lambda d: d.discord.fail(
                "POST", rf"/channels/{DISCORD_IDS[0]}/messages", reset="before"
            ),
            id="discord-reset-before-processing",
        ),
        pytest.param(
            lambda d: d.discord.fail(
                "POST", rf"/channels/{DISCORD_IDS[0]}/messages", reset="after"
            ),
            id="discord-reset-after-processing",
        ),
    ],
)
async def test_transient_failures_end_in_exactly_one_message(desk: Desk, arm: Arm) -> None:
    arm(desk)
    desk.crash("NVDA")
    started = await desk.deliver()
    _healthy_fast(
        desk, started, [c for c in desk.channels if c not in (FAULTY_SLACK, FAULTY_DISCORD)]
    )
    for _ in range(4):  # backoff is at most a few seconds on the injected clock
        await desk.deliver(timedelta(seconds=3))
    _exactly_once_everywhere(desk)


@pytest.mark.parametrize(
    ("arm", "faulty"),
    [
        *[
            pytest.param(
                (
                    lambda e: (
                        lambda d: d.slack.fail(
                            "chat.postMessage", error=e, times=99, channel=SLACK_IDS[0]
                        )
                    )
                )(error),
                FAULTY_SLACK,
                id=f"slack-{error}",
            )
            for error in ("channel_not_found", "not_in_channel", "is_archived")
        ],
        *[
            pytest.param(
                (
                    lambda s: (
                        lambda d: d.discord.fail(
                            "POST", rf"/channels/{DISCORD_IDS[0]}/messages", status=s, times=99
                        )
                    )
                )(status),
                FAULTY_DISCORD,
                id=f"discord-{status}",
            )
            for status in (403, 404)
        ],
    ],
)
async def test_a_permanent_refusal_marks_the_channel_broken_and_nothing_piles_up(
    desk: Desk, arm: Arm, faulty: str, caplog: pytest.LogCaptureFixture
) -> None:
    arm(desk)
    desk.crash("NVDA")
    started = await desk.deliver()
    healthy = [c for c in desk.channels if c != faulty]
    _healthy_fast(desk, started, healthy)
    [broken] = desk.store.broken_destinations()
    assert broken.channel == faulty
    # Later alerts: the healthy lanes go on; the broken one is not retried in the backoff and
    # its joins do not pile up as pending rows.
    desk.crash("AMD")
    await desk.deliver(timedelta(seconds=30))
    for channel in healthy:
        assert desk.messages_showing(channel, "AMD") == 1
    assert desk.store.outbox_counts().get("pending", 0) <= 1
    refused = [r for r in caplog.records if "marked broken" in r.getMessage()]
    assert len(refused) == 1  # logged once
    assert desk.pipeline.stats.destinations_broken == 1


async def test_a_broken_channel_resumes_when_a_send_works_again(desk: Desk) -> None:
    desk.slack.fail("chat.postMessage", error="not_in_channel", channel=SLACK_IDS[0])
    desk.crash("NVDA")
    await desk.deliver()
    [broken] = desk.store.broken_destinations()
    desk.crash("AMD")  # the bot was invited back meanwhile: the fake accepts again
    assert broken.retry_at is not None
    await desk.deliver(broken.retry_at - desk.clock.now())
    assert desk.messages_showing(FAULTY_SLACK, "AMD") == 1
    assert desk.store.broken_destinations() == []


async def test_a_name_joining_while_the_post_is_in_flight_is_edited_in(desk: Desk) -> None:
    # The faulty Slack lane's post is cut after Slack took it; while its outcome is unknown,
    # AMD joins the group. Reconciling finds the post, and AMD arrives by an edit of it.
    desk.slack.fail("chat.postMessage", reset="after", channel=SLACK_IDS[0])
    desk.crash("NVDA")
    await desk.deliver()
    desk.crash("AMD")
    for _ in range(3):
        await desk.deliver(timedelta(seconds=3))
    _exactly_once_everywhere(desk, ("NVDA", "AMD"))
    [(_, posted)] = [(k, m) for k, m in desk.slack.messages.items() if k[0] == SLACK_IDS[0]]
    assert posted.edits  # AMD came by an edit, not a second message
    assert desk.pipeline.stats.reconciled == 1


async def test_a_second_unknown_outcome_is_reconciled_against_a_fresh_history(desk: Desk) -> None:
    # Two posts of one Slack lane are each cut after Slack took them, seconds apart (a
    # timeout on a loaded machine does the same). The first reconcile reads the channel's
    # history; the second must not trust that read, taken before its own post existed.
    desk.slack.fail("chat.postMessage", reset="after", channel=SLACK_IDS[0])
    desk.crash("NVDA")
    await desk.deliver()
    await desk.deliver(timedelta(seconds=3))  # reconciled: found, recorded
    assert desk.messages_showing(FAULTY_SLACK, "NVDA") == 1
    desk.slack.fail("chat.postMessage", reset="after", channel=SLACK_IDS[0])
    desk.clock.advance(timedelta(minutes=10))  # a new group, not a join
    desk.crash("AMD")
    await desk.deliver()
    for _ in range(3):
        await desk.deliver(timedelta(seconds=3))
    _exactly_once_everywhere(desk, ("NVDA", "AMD"))
    assert desk.pipeline.stats.reconciled == 2


async def test_a_post_still_in_flight_when_its_lease_ran_out_is_not_sent_twice(
    desk: Desk,
) -> None:
    # Worker one's post reaches a slow Slack, which holds it unprocessed; worker one stalls
    # past its lease (no renewal). Worker two takes the row over: its history read cannot
    # show the held post yet, so it must wait the in-flight grace out before it may resend.
    import asyncio

    from bot.pipeline.delivery import DeliveryWorker
    from bot.pipeline.stats import PipelineStats

    held = asyncio.Event()
    desk.slack.fail("chat.postMessage", hold=held, channel=SLACK_IDS[0])
    desk.crash("NVDA")
    one = asyncio.create_task(desk.pipeline.deliver_due())

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not condition():  # noqa: ASYNC110 (other tasks and the fake change it)
                await asyncio.sleep(0.01)

    # Every other lane delivered and confirmed: only the held post is left to take over.
    await until(lambda: {a.channel for a in desk.store.undelivered_alerts()} == {FAULTY_SLACK})
    await until(
        lambda: any(
            r.params["channel"] == SLACK_IDS[0] for r in desk.slack.calls("chat.postMessage")
        )
    )
    settings = SlackSettings(bot_token=SecretStr(desk.slack.bot_token), api_url=desk.slack.api_url)
    two = DeliveryWorker(
        desk.store,
        desk.pipeline.market,
        [create_slack_platform(settings)],
        desk.clock,
        PipelineStats(),
        owner="worker-two",
    )
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        # Worker two's wait on the injected clock; meanwhile the held post lands.
        waited.append(seconds)
        desk.clock.advance(timedelta(seconds=seconds))
        held.set()
        await until(lambda: desk.messages_showing(FAULTY_SLACK, "NVDA") >= 1)

    two.sleep = sleep
    desk.clock.advance(desk.pipeline.delivery.lease + timedelta(seconds=1))
    await two.deliver_due()
    held.set()
    await one
    assert desk.messages_showing(FAULTY_SLACK, "NVDA") == 1
    assert waited  # it waited for the in-flight post instead of sending at once
    # Worker one heard back once the post landed and recorded it; worker two sent nothing.
    assert two.stats.messages_sent == 0
    assert desk.store.undelivered_alerts() == []
