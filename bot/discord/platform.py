"""The Discord ChatPlatform: embed posts and edits with a nonce and no pings; DeliveryErrors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import aiohttp
import discord
from aiolimiter import AsyncLimiter

from alerts.models import AlertMessage, Severity
from alerts.ports import DeliveryError, MessageRef
from bot.render import format as fmt
from bot.render.discord_embeds import render_embed_payload

CHANNEL_PREFIX = "discord:"
NONCE_LENGTH = 25  # Discord's limit for a string nonce
# Discord allows 50 requests a second per bot across all routes. discord.py tracks each
# route's bucket from the X-RateLimit headers (5 messages / 5 s per channel) but not this
# global budget, so alert traffic is paced just under it, in bursts of at most half of it:
# requests granted together may reach Discord bunched (a busy loop, the network), and the
# other half of Discord's allowance absorbs that.
GLOBAL_REQUESTS_PER_SECOND = 49
GLOBAL_BURST = 25
UNKNOWN_MESSAGE = 10008
# A 429 that does not say how long to wait (Cloudflare's, without Via): wait this long.
UNSTATED_RETRY_AFTER = 60.0


def discord_channel_id(channel: str) -> int:
    raw = channel[len(CHANNEL_PREFIX) :] if channel.startswith(CHANNEL_PREFIX) else ""
    if not raw.isdigit():
        raise DeliveryError(f"not a Discord channel: {channel!r}", retryable=False)
    return int(raw)


def nonce_for(idempotency_key: str) -> str:
    """A 25-character nonce derived from the key: the same key always gives the same nonce."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:NONCE_LENGTH]


def _header_seconds(exc: discord.HTTPException) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        raw = headers.get(name)
        if raw is not None:
            try:
                return float(raw)
            except ValueError:
                continue
    return None


def _delivery_error(exc: Exception, action: str) -> DeliveryError:
    if isinstance(exc, discord.RateLimited):
        return DeliveryError(
            f"discord {action}: rate limited", retryable=True, retry_after=exc.retry_after
        )
    if isinstance(exc, discord.HTTPException):
        text = f"discord {action}: HTTP {exc.status} {exc.text}".rstrip()
        if exc.status == 429:
            # discord.py waits out a Discord 429 itself; one reaching us came without the
            # Via header (Cloudflare's limit, for the whole bot): its body's retry_after is
            # lost in discord.py, so the headers say how long, and every channel waits.
            wait = _header_seconds(exc)
            return DeliveryError(
                text,
                retryable=True,
                retry_after=wait if wait is not None else UNSTATED_RETRY_AFTER,
                platform_wide=True,
            )
        if exc.status >= 500:
            # discord.py retried already; the nonce makes another try safe.
            return DeliveryError(text, retryable=True)
        if exc.status == 401:
            return DeliveryError(text, retryable=True, retry_after=30.0)
        if exc.status == 404 and exc.code == UNKNOWN_MESSAGE:
            return DeliveryError(text, retryable=False, message_gone=True)
        if exc.status in (403, 404):
            # Missing access, unknown channel: waiting will not heal it, and Discord bans
            # bots that keep making such requests.
            return DeliveryError(text, retryable=False, destination_gone=True)
        return DeliveryError(text, retryable=False)
    # A reset or timeout may come after Discord created the message; the nonce makes the
    # retry return that message instead of a second one.
    return DeliveryError(
        f"discord {action}: {type(exc).__name__}: {exc}", retryable=True, outcome_unknown=True
    )


class DiscordPlatform:
    """Posts AlertMessages to ``discord:<CHANNEL_ID>`` channels through a logged-in client.

    ``role_pings`` maps a channel to the role it opted in to ping on critical alerts; every
    other message goes out with ``allowed_mentions`` none, so nothing in it can notify anyone.
    """

    name = "discord"

    def __init__(
        self,
        client: discord.Client,
        *,
        role_pings: Mapping[str, int] | None = None,
        timezone: str | None = None,
    ) -> None:
        self.client = client
        self.role_pings = dict(role_pings or {})
        self._tz = fmt.zone(timezone)
        self._global = AsyncLimiter(GLOBAL_BURST, GLOBAL_BURST / GLOBAL_REQUESTS_PER_SECOND)

    def handles(self, channel: str) -> bool:
        return channel.startswith(CHANNEL_PREFIX)

    def _payload(
        self, message: AlertMessage
    ) -> tuple[str | None, list[discord.Embed], discord.AllowedMentions]:
        role = self.role_pings.get(message.channel)
        if message.severity is not Severity.CRITICAL:
            role = None
        payload = render_embed_payload(message, self._tz, role_ping=role)
        embeds = [discord.Embed.from_dict(e) for e in payload["embeds"]]
        allowed = discord.AllowedMentions.none()
        if role is not None:
            allowed = discord.AllowedMentions(
                everyone=False, users=False, roles=[discord.Object(id=role)], replied_user=False
            )
        return payload["content"] or None, embeds, allowed

    def _logged_in(self) -> None:
        # Before login every request would be a 401, which must not count as permanent.
        if self.client.user is None:
            raise DeliveryError("discord: not logged in yet", retryable=True, retry_after=5.0)

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        self._logged_in()
        channel = self.client.get_partial_messageable(discord_channel_id(message.channel))
        content, embeds, allowed = self._payload(message)
        try:
            await self._global.acquire()
            # discord.py retries 5xx itself; the nonce (sent with enforce_nonce) makes Discord
            # return the first message instead of creating a second one.
            sent = await channel.send(
                content=content,
                embeds=embeds,
                allowed_mentions=allowed,
                nonce=nonce_for(idempotency_key),
            )
        except (discord.DiscordException, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "send") from exc
        return MessageRef(channel=message.channel, message_id=str(sent.id))

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        self._logged_in()
        channel = self.client.get_partial_messageable(discord_channel_id(ref.channel))
        content, embeds, allowed = self._payload(message)
        if not ref.message_id.isdigit():
            raise DeliveryError(f"not a Discord message id: {ref.message_id!r}", retryable=False)
        try:
            await self._global.acquire()
            await channel.get_partial_message(int(ref.message_id)).edit(
                content=content, embeds=embeds, allowed_mentions=allowed
            )
        except (discord.DiscordException, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "edit") from exc
        return ref

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> MessageRef:
        """A chart as an attachment, no text that could ping."""
        import io

        target = self.client.get_partial_messageable(discord_channel_id(channel))
        try:
            await self._global.acquire()
            sent = await target.send(
                file=discord.File(io.BytesIO(image), filename=filename, description=title[:1024]),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except (discord.DiscordException, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "upload") from exc
        return MessageRef(channel=channel, message_id=str(sent.id))
