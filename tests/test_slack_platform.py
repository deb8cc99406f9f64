"""SlackPlatform against the loopback fake: Block Kit posts, edits, metadata, 429 and errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerts.mentions import has_ping
from alerts.models import NewsItem
from alerts.ports import DeliveryError, MessageRef
from bot.fakes.alert_samples import deepseek_message, storm_message
from bot.fakes.slack_server import FakeSlack, SlackSpecValidator
from bot.settings import SlackSettings
from bot.slack.app import create_slack_platform
from bot.slack.platform import SlackPlatform

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "slack-web-openapi-v2.json"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    validator = SlackSpecValidator(SPEC) if SPEC.exists() else None
    async with FakeSlack(validator=validator) as fake:
        yield fake
    assert fake.validation_errors == []


@pytest.fixture
def platform(slack: FakeSlack) -> SlackPlatform:
    settings = SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
    return create_slack_platform(settings)


async def test_send_posts_block_kit_with_idempotency_metadata(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    ref = await platform.send(deepseek_message("slack:C42"), idempotency_key="group-7")
    assert ref.channel == "slack:C42"
    posted = slack.messages[("C42", ref.message_id)]
    assert posted.metadata == {
        "event_type": "marketbot_alert",
        "event_payload": {"idempotency_key": "group-7"},
    }
    assert posted.blocks is not None
    assert posted.blocks[0]["type"] == "header"
    assert "NVDA" in json.dumps(posted.blocks)
    assert posted.text is not None
    assert posted.text.startswith("AI selloff")
    call = slack.calls("chat.postMessage")[0]
    assert call.headers["Authorization"] == f"Bearer {slack.bot_token}"


async def test_edit_updates_the_same_message(slack: FakeSlack, platform: SlackPlatform) -> None:
    first = deepseek_message("slack:C42")
    ref = await platform.send(
        dataclasses.replace(first, alerts=first.alerts[:1]), idempotency_key="k"
    )
    assert await platform.edit(ref, first) == ref
    posted = slack.messages[("C42", ref.message_id)]
    assert len(posted.edits) == 1
    assert "GOOGL" in json.dumps(posted.blocks)
    assert len(slack.calls("chat.postMessage")) == 1


async def test_find_sent_sees_the_key_after_a_crash(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    ref = await platform.send(deepseek_message("slack:C42"), idempotency_key="group-9")
    assert await platform.find_sent("slack:C42", "group-9") == ref
    assert await platform.find_sent("slack:C42", "group-10") is None


async def test_find_sent_searches_the_whole_window_of_a_busy_channel(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    # Our earlier post, then 450 newer messages (people talk): a read of the newest page
    # would miss it. A restarted process searches down to the last message it recorded.
    older = await platform.send(deepseek_message("slack:C42"), idempotency_key="group-8")
    ref = await platform.send(deepseek_message("slack:C42"), idempotency_key="group-9")
    for n in range(450):
        await platform.client.chat_postMessage(channel="C42", text=f"chatter {n}")
    restarted = create_slack_platform(
        SlackSettings(bot_token=SecretStr(slack.bot_token), api_url=slack.api_url)
    )
    assert await restarted.find_sent("slack:C42", "group-9", after=older.message_id) == ref
    pages = slack.calls("conversations.history")
    assert len(pages) == 3
    assert all(r.params["oldest"] == older.message_id for r in pages)
    # Nothing after the bound is proof only of absence there: a key not posted is None.
    assert await restarted.find_sent("slack:C42", "group-10", after=older.message_id) is None


async def test_short_429_is_waited_out(slack: FakeSlack, platform: SlackPlatform) -> None:
    slack.fail("chat.postMessage", 429, retry_after=0)
    ref = await platform.send(deepseek_message("slack:C1"), idempotency_key="k")
    assert ref.message_id
    assert len(slack.calls("chat.postMessage")) == 2


async def test_long_429_becomes_a_retryable_delivery_error(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.fail("chat.postMessage", 429, retry_after=30)
    with pytest.raises(DeliveryError) as caught:
        await platform.send(deepseek_message("slack:C1"), idempotency_key="k")
    assert caught.value.retryable
    assert caught.value.retry_after == 30
    assert len(slack.calls("chat.postMessage")) == 1


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (500, None, True),
        (503, None, True),
        (200, "channel_not_found", False),
        (200, "not_in_channel", False),
        (200, "internal_error", True),
    ],
)
async def test_errors_map_to_delivery_errors(
    slack: FakeSlack, platform: SlackPlatform, status: int, error: str | None, retryable: bool
) -> None:
    slack.fail("chat.postMessage", status, error=error)
    with pytest.raises(DeliveryError) as caught:
        await platform.send(deepseek_message("slack:C1"), idempotency_key="k")
    assert caught.value.retryable is retryable


async def test_edit_of_a_missing_message_is_permanent(platform: SlackPlatform) -> None:
    with pytest.raises(DeliveryError) as caught:
        await platform.edit(MessageRef("slack:C1", "1.000"), deepseek_message("slack:C1"))
    assert not caught.value.retryable


def test_handles_only_slack_channels(platform: SlackPlatform) -> None:
    assert platform.handles("slack:C1")
    assert not platform.handles("discord:1")
    assert not platform.handles("console:default")


async def test_sixty_alerts_are_accepted_within_limits(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    ref = await platform.send(storm_message(60, "slack:C1"), idempotency_key="storm")
    blocks = slack.messages[("C1", ref.message_id)].blocks
    assert blocks is not None
    assert len(blocks) <= 50


async def test_hostile_note_basket_and_headline_do_not_ping(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    base = deepseek_message("slack:C1")
    for form in ["@everyone", "@here", "<!channel>", "<!here>", "<@U123>", "<!subteam^S1>"]:
        first = dataclasses.replace(base.alerts[0], note=form, headline=f"{form} story")
        message = dataclasses.replace(
            base,
            title=f"Basket {form}: 5 of 8",
            alerts=(first, *base.alerts[1:]),
            headlines=(NewsItem(key="x", title=form, published=base.at),),
        )
        await platform.send(message, idempotency_key=form)
    for call in slack.calls("chat.postMessage"):
        for value in (call.params["text"], json.dumps(call.params["blocks"], ensure_ascii=False)):
            assert not has_ping(value, "slack")
    assert "link_names" not in slack.calls("chat.postMessage")[0].params


async def test_chart_upload_uses_files_v2(slack: FakeSlack, platform: SlackPlatform) -> None:
    await platform.upload_image("slack:C1", b"\x89PNG fake", title="NVDA premarket")
    assert slack.calls("files.getUploadURLExternal")
    assert slack.calls("files.completeUploadExternal")
    assert list(slack.uploads.values()) == [b"\x89PNG fake"]


async def test_sent_requests_match_slack_openapi(slack: FakeSlack, platform: SlackPlatform) -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/slack-web-openapi-v2.json not present")
    ref = await platform.send(deepseek_message("slack:C1"), idempotency_key="k")
    await platform.edit(ref, deepseek_message("slack:C1"))
    assert isinstance(slack.validator, SlackSpecValidator)
    assert {"chat.postMessage", "chat.update"} <= set(slack.validator.checked)


def test_spec_validator_refuses_a_post_without_channel() -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/slack-web-openapi-v2.json not present")
    from bot.fakes.slack_server import RecordedRequest

    bad = RecordedRequest(
        http_method="POST",
        path="/api/chat.postMessage",
        api_method="chat.postMessage",
        headers={"Authorization": "Bearer xoxb-1"},
        params={"text": "hi"},
        body=b"",
        content_type="application/json",
    )
    with pytest.raises(Exception, match="channel"):
        SlackSpecValidator(SPEC)(bad)
