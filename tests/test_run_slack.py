"""`marketbot run` with a Slack token: a slash command over Socket Mode to an alert in the channel.

Everything is real but the far ends: Bolt and slack_sdk talk to the loopback fake Slack,
yfinance talks to the loopback fake Yahoo.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.ports import ManualClock
from bot.fakes.slack_server import FakeSlack
from bot.fakes.yahoo_server import FakeYahoo
from bot.runner import Runtime
from tests.conftest import premarket_quote, run_settings
from tests.support.runs import slack_section, started

PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)


@pytest.fixture
def nvda_falls(fake_yahoo: FakeYahoo) -> FakeYahoo:
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    return fake_yahoo


async def test_slash_command_in_slack_then_alert_posted_there(
    tmp_path: Path, nvda_falls: FakeYahoo, fake_slack: FakeSlack
) -> None:
    settings = run_settings(tmp_path, nvda_falls, console=False, slack=slack_section(fake_slack))
    async with started(Runtime(settings, clock=ManualClock(PREMARKET))) as runtime:
        await fake_slack.slash_command("/watch", "nvda drop 10%", channel_id="C0MARKETS")
        [response] = await fake_slack.wait_for_responses(1)
        assert "Watching" in str(response)
        await asyncio.wait_for(fake_slack.message_posted.wait(), timeout=10)
    [posted] = fake_slack.messages.values()
    assert posted.channel == "C0MARKETS"
    assert posted.text is not None
    assert "NVDA" in posted.text
    assert "−13.0%" in posted.text
    assert posted.metadata is not None  # carries the idempotency key
    assert [w.channel for w in runtime.store.list_watches()] == ["slack:C0MARKETS"]


async def test_a_digest_asked_for_in_slack_is_posted_with_its_chart_and_the_daily_one_still_is(
    tmp_path: Path, nvda_falls: FakeYahoo, fake_slack: FakeSlack
) -> None:
    settings = run_settings(tmp_path, nvda_falls, console=False, slack=slack_section(fake_slack))
    # Polled every 15 s as in production: the clock moves 11 minutes.
    settings = settings.model_copy(
        update={"yahoo": settings.yahoo.model_copy(update={"poll_interval_seconds": 15.0})}
    )
    runtime = Runtime(settings, clock=ManualClock(PREMARKET))  # 04:05 in New York
    async with started(runtime):
        for count, (command, text) in enumerate(
            (
                ("/watch", "nvda drop 50%"),  # in the digest, firing nothing
                ("/digest", "on 04:15 America/New_York"),
                ("/digest", ""),
            ),
            start=1,
        ):
            await fake_slack.slash_command(command, text, channel_id="C0MARKETS")
            responses = await fake_slack.wait_for_responses(count)
            await runtime.settle()  # delivery, and the chart task it started
        asked = (list(fake_slack.messages.values()), list(fake_slack.uploads.values()))
        await runtime.advance(timedelta(minutes=11))
        await runtime.settle()
    assert "Posting today's premarket digest here." in str(responses[2])
    [posted], [chart] = asked
    assert posted.channel == "C0MARKETS"
    assert posted.text is not None
    assert "Premarket digest Mon 2025-01-27" in posted.text
    assert "NVDA" in posted.text
    assert chart.startswith(b"\x89PNG")
    # The daily digest at 04:15 still goes out: the one asked for did not mark the day.
    assert len(fake_slack.messages) == 2
    assert len(fake_slack.uploads) == 2
