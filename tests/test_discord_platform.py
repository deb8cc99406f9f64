"""DiscordPlatform against the loopback fake: embeds, nonce, edits, 429s, pings, OpenAPI."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from alerts.mentions import has_ping
from alerts.models import NewsItem, Severity
from alerts.ports import DeliveryError, MessageRef
from bot.discord.app import configure_endpoints
from bot.discord.platform import DiscordPlatform, nonce_for
from bot.fakes.alert_samples import deepseek_message, storm_message
from bot.fakes.discord_server import DiscordSpecValidator, FakeDiscord
from bot.render.discord_embeds import COLOURS, embed_chars

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "discord-openapi.json"


pytestmark = pytest.mark.usefixtures("discord_endpoints")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    validator = DiscordSpecValidator(SPEC) if SPEC.exists() else None
    async with FakeDiscord(validator=validator) as server:
        yield server
    assert server.validation_errors == []


@pytest.fixture
async def client(fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    configure_endpoints(fake.rest_base, None)
    bot = discord.Client(intents=discord.Intents.none(), max_ratelimit_timeout=30.0)
    await bot.login(fake.token)
    yield bot
    await bot.close()


def _channel(fake: FakeDiscord) -> str:
    return f"discord:{fake.channel_id}"


async def test_send_posts_an_embed_with_nonce_and_no_mentions(
    fake: FakeDiscord, client: discord.Client
) -> None:
    platform = DiscordPlatform(client)
    ref = await platform.send(deepseek_message(_channel(fake)), idempotency_key="group-1")
    assert ref == MessageRef(_channel(fake), ref.message_id)
    [call] = fake.calls("POST", rf"/channels/{fake.channel_id}/messages")
    body = call.json
    assert body["nonce"] == nonce_for("group-1")
    assert body["enforce_nonce"] is True
    assert body["allowed_mentions"]["parse"] == []
    assert body["embeds"][0]["color"] == COLOURS[Severity.CRITICAL]
    assert "NVDA" in body["embeds"][0]["description"]
    assert fake.messages[ref.message_id]["embeds"]


async def test_a_retried_send_does_not_duplicate(fake: FakeDiscord, client: discord.Client) -> None:
    platform = DiscordPlatform(client)
    first = await platform.send(deepseek_message(_channel(fake)), idempotency_key="group-2")
    again = await platform.send(deepseek_message(_channel(fake)), idempotency_key="group-2")
    assert first == again
    assert len(fake.messages) == 1


async def test_edit_patches_the_message(fake: FakeDiscord, client: discord.Client) -> None:
    platform = DiscordPlatform(client)
    full = deepseek_message(_channel(fake))
    ref = await platform.send(
        dataclasses.replace(full, alerts=full.alerts[:1]), idempotency_key="k"
    )
    assert await platform.edit(ref, full) == ref
    assert [mid for mid, _ in fake.edits] == [ref.message_id]
    assert "GOOGL" in fake.messages[ref.message_id]["embeds"][0]["description"]


async def test_edit_of_an_unknown_message_is_permanent(
    fake: FakeDiscord, client: discord.Client
) -> None:
    platform = DiscordPlatform(client)
    with pytest.raises(DeliveryError) as caught:
        await platform.edit(MessageRef(_channel(fake), "123"), deepseek_message(_channel(fake)))
    assert not caught.value.retryable


async def test_long_429_is_a_retryable_delivery_error(
    fake: FakeDiscord, client: discord.Client
) -> None:
    fake.fail("POST", r"/channels/\d+/messages", retry_after=60.0)
    with pytest.raises(DeliveryError) as caught:
        await DiscordPlatform(client).send(deepseek_message(_channel(fake)), idempotency_key="k")
    assert caught.value.retryable
    assert caught.value.retry_after == pytest.approx(60.0)
    assert fake.messages == {}


async def test_short_429_is_waited_out_by_discord_py(
    fake: FakeDiscord, client: discord.Client
) -> None:
    fake.fail("POST", r"/channels/\d+/messages", retry_after=0.01)
    ref = await DiscordPlatform(client).send(deepseek_message(_channel(fake)), idempotency_key="k")
    assert ref.message_id in fake.messages
    assert len(fake.calls("POST", r"/channels/\d+/messages")) == 2


async def test_forbidden_is_permanent(fake: FakeDiscord, client: discord.Client) -> None:
    fake.fail("POST", r"/channels/\d+/messages", status=403)
    with pytest.raises(DeliveryError) as caught:
        await DiscordPlatform(client).send(deepseek_message(_channel(fake)), idempotency_key="k")
    assert not caught.value.retryable


async def test_role_ping_only_for_opted_in_channel_and_critical_alerts(
    fake: FakeDiscord, client: discord.Client
) -> None:
    role = int(fake.manager_role_id)
    platform = DiscordPlatform(client, role_pings={_channel(fake): role})
    await platform.send(deepseek_message(_channel(fake)), idempotency_key="crit")
    calm = dataclasses.replace(deepseek_message(_channel(fake)), severity=Severity.WARNING)
    await platform.send(calm, idempotency_key="warn")
    critical, warning = (c.json for c in fake.calls("POST", r"/channels/\d+/messages"))
    assert critical["content"] == f"<@&{role}>"
    assert critical["allowed_mentions"]["roles"] == [role]
    assert critical["allowed_mentions"]["parse"] == []
    assert not critical["allowed_mentions"].get("everyone")
    assert "content" not in warning or not warning["content"]
    assert warning["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    "form", ["@everyone", "@here", "<@&123456789012345678>", "<@123456789012345678>", "<#1234567>"]
)
async def test_hostile_note_basket_and_headline_do_not_ping(
    fake: FakeDiscord, client: discord.Client, form: str
) -> None:
    base = deepseek_message(_channel(fake))
    first = dataclasses.replace(base.alerts[0], note=form, headline=f"{form} story")
    message = dataclasses.replace(
        base,
        title=f"Basket {form}: 5 of 8",
        alerts=(first, *base.alerts[1:]),
        headlines=(NewsItem(key="x", title=form, published=base.at),),
    )
    await DiscordPlatform(client).send(message, idempotency_key=form)
    body = fake.calls("POST", r"/channels/\d+/messages")[0].json
    assert body["allowed_mentions"]["parse"] == []
    assert not has_ping(body.get("content") or "", "discord")
    assert not has_ping(str(body["embeds"]), "discord")


async def test_sixty_alerts_are_accepted_within_limits(
    fake: FakeDiscord, client: discord.Client
) -> None:
    await DiscordPlatform(client).send(storm_message(60, _channel(fake)), idempotency_key="s")
    body = fake.calls("POST", r"/channels/\d+/messages")[0].json
    assert len(body["embeds"]) <= 10
    assert sum(embed_chars(e) for e in body["embeds"]) <= 6000


async def test_chart_upload_is_a_multipart_attachment(
    fake: FakeDiscord, client: discord.Client
) -> None:
    await DiscordPlatform(client).upload_image(_channel(fake), b"\x89PNG fake", title="NVDA")
    [call] = fake.calls("POST", r"/channels/\d+/messages")
    assert list(call.files.values()) == [b"\x89PNG fake"]
    assert call.json["allowed_mentions"]["parse"] == []


async def test_sending_before_login_is_retryable() -> None:
    platform = DiscordPlatform(discord.Client(intents=discord.Intents.none()))
    with pytest.raises(DeliveryError) as caught:
        await platform.send(deepseek_message("discord:1"), idempotency_key="k")
    assert caught.value.retryable


def test_channel_ids() -> None:
    platform = DiscordPlatform(discord.Client(intents=discord.Intents.none()))
    assert platform.handles("discord:1")
    assert not platform.handles("slack:C1")


async def test_requests_match_discord_openapi(fake: FakeDiscord, client: discord.Client) -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/discord-openapi.json not present")
    platform = DiscordPlatform(client)
    ref = await platform.send(deepseek_message(_channel(fake)), idempotency_key="k")
    await platform.edit(ref, deepseek_message(_channel(fake)))
    assert isinstance(fake.validator, DiscordSpecValidator)
    assert "POST /channels/{channel_id}/messages" in fake.validator.checked
    assert "PATCH /channels/{channel_id}/messages/{message_id}" in fake.validator.checked


def test_spec_validator_refuses_an_overlong_title() -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/discord-openapi.json not present")
    from bot.fakes.discord_server import RecordedRequest

    bad = RecordedRequest("POST", "/channels/1/messages", {}, {"embeds": [{"title": "x" * 300}]})
    with pytest.raises(ValueError, match=r"title|long"):
        DiscordSpecValidator(SPEC)(bad)
