"""The Slack ChatPlatform: Block Kit posts and edits via the Web API, errors as DeliveryError."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from alerts.models import AlertMessage
from alerts.ports import DeliveryError, MessageRef
from bot.render import format as fmt
from bot.render.slack_blocks import render_blocks

CHANNEL_PREFIX = "slack:"
METADATA_EVENT = "marketbot_alert"
# Slack's errors that no retry can fix: a later attempt would fail the same way.
_PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "missing_scope",
    "invalid_blocks",
    "msg_too_long",
    "message_not_found",
    "cant_update_message",
    "no_text",
}


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return float(raw)
            except (TypeError, ValueError):
                return None
    return None


class ShortRateLimitRetryHandler(AsyncRetryHandler):
    """Waits out a 429 only when Slack asks for a short pause (exactly ``Retry-After`` seconds).

    A longer pause is handed back as a retryable DeliveryError so the outbox reschedules the
    send instead of blocking the delivery worker (the stock handler always sleeps >= 1 s).
    """

    def __init__(self, max_wait: float = 5.0, max_retry_count: int = 2) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is not None and wait <= self.max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = _retry_after(response.headers) if response is not None else None
        state.next_attempt_requested = True
        if wait:
            await asyncio.sleep(wait)
        state.increment_current_attempt()


def make_web_client(
    token: str | None, *, api_url: str | None = None, timeout: int = 30
) -> AsyncWebClient:
    """The one way marketbot builds a Slack client: base URL override, retry handlers."""
    kwargs: dict[str, Any] = {"token": token, "timeout": timeout}
    if api_url:
        kwargs["base_url"] = api_url if api_url.endswith("/") else api_url + "/"
    client = AsyncWebClient(**kwargs)
    client.retry_handlers = [AsyncConnectionErrorRetryHandler(), ShortRateLimitRetryHandler()]
    return client


def slack_channel_id(channel: str) -> str:
    if not channel.startswith(CHANNEL_PREFIX) or len(channel) == len(CHANNEL_PREFIX):
        raise DeliveryError(f"not a Slack channel: {channel!r}", retryable=False)
    return channel[len(CHANNEL_PREFIX) :]


def _delivery_error(exc: Exception, action: str) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = str(exc.response.get("error", "")) if exc.response.data else ""
        if status == 429 or error == "ratelimited":
            wait = _retry_after(exc.response.headers)
            return DeliveryError(f"slack {action}: rate limited", retryable=True, retry_after=wait)
        if status >= 500:
            return DeliveryError(f"slack {action}: HTTP {status}", retryable=True)
        return DeliveryError(
            f"slack {action}: {error or status}", retryable=error not in _PERMANENT
        )
    return DeliveryError(f"slack {action}: {type(exc).__name__}: {exc}", retryable=True)


class SlackPlatform:
    """Posts AlertMessages to ``slack:<CHANNEL_ID>`` channels.

    Slack has no idempotency key on ``chat.postMessage``; the key travels in message
    ``metadata`` so ``find_sent`` can tell, after a crash, whether a send already happened.
    """

    name = "slack"

    def __init__(self, client: AsyncWebClient, *, timezone: str | None = None) -> None:
        self.client = client
        self._tz = fmt.zone(timezone)

    def handles(self, channel: str) -> bool:
        return channel.startswith(CHANNEL_PREFIX)

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        channel_id = slack_channel_id(message.channel)
        payload = render_blocks(message, self._tz)
        try:
            response = await self.client.chat_postMessage(
                channel=channel_id,
                text=payload["text"],
                blocks=payload["blocks"],
                metadata={
                    "event_type": METADATA_EVENT,
                    "event_payload": {"idempotency_key": idempotency_key},
                },
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "chat.postMessage") from exc
        return MessageRef(channel=message.channel, message_id=str(response["ts"]))

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        payload = render_blocks(message, self._tz)
        try:
            await self.client.chat_update(
                channel=slack_channel_id(ref.channel),
                ts=ref.message_id,
                text=payload["text"],
                blocks=payload["blocks"],
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "chat.update") from exc
        return ref

    async def find_sent(
        self, channel: str, idempotency_key: str, *, limit: int = 50
    ) -> MessageRef | None:
        """The message already posted with this key, if any (needs ``channels:history``)."""
        try:
            response = await self.client.conversations_history(
                channel=slack_channel_id(channel), limit=limit, include_all_metadata=True
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "conversations.history") from exc
        for item in response.get("messages") or []:
            metadata = item.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if (
                metadata.get("event_type") == METADATA_EVENT
                and payload.get("idempotency_key") == idempotency_key
            ):
                return MessageRef(channel=channel, message_id=str(item["ts"]))
        return None

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> None:
        """A chart as a file in the channel (files.upload v2: get URL, upload, complete)."""
        try:
            await self.client.files_upload_v2(
                channel=slack_channel_id(channel), content=image, filename=filename, title=title
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise _delivery_error(exc, "files.upload v2") from exc
