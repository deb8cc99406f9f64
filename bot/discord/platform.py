"""The Discord ChatPlatform: embed posts and edits with a nonce and no pings; DeliveryErrors."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import aiohttp
import discord

from alerts.models import AlertMessage, Severity
from alerts.ports import DeliveryError, MessageRef
from bot.render import format as fmt
from bot.render.discord_embeds import render_embed_payload

CHANNEL_PREFIX = "discord:"
NONCE_LENGTH = 25  # Discord's limit for a string nonce
# Discord allows 50 requests a second per bot across all routes. discord.py tracks each
# route's bucket from the X-RateLimit headers (5 messages / 5 s per channel) but not this
# global budget, which has no headers: alert traffic keeps to it with ``AnsweredWindow``.
GLOBAL_REQUESTS = 50
GLOBAL_PERIOD = 1.005  # seconds: over one by more than float rounding or clock drift
UNKNOWN_MESSAGE = 10008
# A 429 that does not say how long to wait (Cloudflare's, without Via): wait this long.
UNSTATED_RETRY_AFTER = 60.0


class AnsweredWindow:
    """At most ``limit`` requests in any ``period``, however late each one leaves.

    A request holds its place from the moment it is let go until ``period`` after its answer
    came back. The platform saw it arrive before it answered, so every request arriving
    within one ``period`` was either still unanswered or answered within that period when
    the last of them was let go: at most ``limit``. A rate limiter that counts from the
    moment it lets a request go cannot promise that on a busy loop: requests let go a second
    apart can leave together and arrive bunched (a storm on a loaded machine drew 429s so).
    Waiters are served in order, and every place that frees goes to a waiter at once: on a
    busy loop, handing places on one waiter at a time (a lock passed along) cost a loop
    iteration each, and a storm's 50 requests a second spread over a second and more.
    """

    def __init__(
        self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._unanswered = 0
        self._answered: deque[float] = deque()  # answer times within the last period
        self._waiters: deque[asyncio.Future[None]] = deque()  # FIFO
        self._timer: asyncio.TimerHandle | None = None

    def _taken(self) -> int:
        horizon = self._clock() - self.period
        while self._answered and self._answered[0] <= horizon:
            self._answered.popleft()
        return self._unanswered + len(self._answered)

    def free(self) -> int:
        """Places a request asking now would get at once (none while others wait)."""
        return max(0, self.limit - self._taken() - len(self._waiters))

    def resize(self, limit: int) -> None:
        """A new ``limit`` for requests let go from now on (waiters look again at once)."""
        self.limit = max(1, limit)
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        """Let go as many waiters, in order, as there are free places; if some must still
        wait, look again when the oldest answer leaves the window."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            if self._waiters[0].done():  # cancelled while it waited
                self._waiters.popleft()
                continue
            if self._taken() >= self.limit:
                break
            self._unanswered += 1
            self._waiters.popleft().set_result(None)
        if self._waiters and self._answered:
            # Else every place is unanswered: the next answer looks again.
            wait = max(0.0, self._answered[0] + self.period - self._clock())
            self._timer = asyncio.get_running_loop().call_later(wait, self._grant)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._waiters or self._taken() >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._grant()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Let go, then cancelled before it could leave: nothing was sent.
                    self._unanswered -= 1
                    self._grant()
                raise
        else:
            self._unanswered += 1
        try:
            yield
        finally:
            self._unanswered -= 1
            self._answered.append(self._clock())
            self._grant()


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
        self._global = AnsweredWindow(GLOBAL_REQUESTS, GLOBAL_PERIOD)

    def handles(self, channel: str) -> bool:
        return channel.startswith(CHANNEL_PREFIX)

    def share_global_budget(self, processes: int) -> None:
        """Discord's global budget is the bot token's: ``processes`` sending with this token
        (``marketbot worker``s on one database) each keep to their equal part of it."""
        self._global.resize(GLOBAL_REQUESTS // max(1, processes))

    def free_slots(self) -> int:
        """Requests the global budget would let go now: the dispatcher starts as many lanes
        at once (a storm's first 50 go out in one go)."""
        return self._global.free()

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
            # discord.py retries 5xx itself; the nonce (sent with enforce_nonce) makes Discord
            # return the first message instead of creating a second one.
            async with self._global.slot():
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
            async with self._global.slot():
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
            async with self._global.slot():
                sent = await target.send(
                    file=discord.File(
                        io.BytesIO(image), filename=filename, description=title[:1024]
                    ),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
        except (discord.DiscordException, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "upload") from exc
        return MessageRef(channel=channel, message_id=str(sent.id))
