"""The Slack ChatPlatform: Block Kit posts and edits via the Web API, errors as DeliveryError."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
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

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "slack:"
METADATA_EVENT = "marketbot_alert"
# Slack's documented pace for chat.postMessage: about one message per second per channel.
PER_CHANNEL_INTERVAL = 1.0
# Errors that mean the channel takes nothing from us until someone fixes it.
_DESTINATION_GONE = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "team_access_not_granted",
    "ekm_access_denied",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "missing_scope",
}
# The message to edit is gone; the group is posted again instead.
_MESSAGE_GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}
# This message can never be sent as it is; other messages to the channel can.
_PERMANENT = {"invalid_blocks", "msg_too_long", "no_text", "invalid_metadata_format"}
# Reconciling reads channel history: Tier 3 for internal apps (about 50 calls a minute).
HISTORY_CALLS_PER_MINUTE = 50
HISTORY_PAGE = 200  # Slack's most per conversations.history page
HISTORY_MAX_PAGES = 10  # with no older message of ours to stop at
# Requests in flight at once: a storm of a thousand channels is sent as a steady stream, not
# as a thousand simultaneous connections.
MAX_IN_FLIGHT = 50


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
    token: str | None,
    *,
    api_url: str | None = None,
    timeout: int = 30,
    retry_connection_errors: bool = True,
) -> AsyncWebClient:
    """The one way marketbot builds a Slack client: base URL override, retry handlers.

    The delivery client does not retry connection errors: a reset may come after Slack
    posted the message, and chat.postMessage has no idempotency key, so the outbox
    reconciles (``find_sent``) before it sends again.
    """
    kwargs: dict[str, Any] = {"token": token, "timeout": timeout}
    if api_url:
        kwargs["base_url"] = api_url if api_url.endswith("/") else api_url + "/"
    client = AsyncWebClient(**kwargs)
    handlers: list[AsyncRetryHandler] = [ShortRateLimitRetryHandler()]
    if retry_connection_errors:
        handlers.insert(0, AsyncConnectionErrorRetryHandler())
    client.retry_handlers = handlers
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
        text = f"slack {action}: {error or status}"
        if error in _DESTINATION_GONE:
            return DeliveryError(text, retryable=False, destination_gone=True)
        if error in _MESSAGE_GONE:
            return DeliveryError(text, retryable=False, message_gone=True)
        return DeliveryError(text, retryable=error not in _PERMANENT)
    # A reset or a timeout may come after Slack processed the request: reconcile first.
    return DeliveryError(
        f"slack {action}: {type(exc).__name__}: {exc}", retryable=True, outcome_unknown=True
    )


class SlackPlatform:
    """Posts AlertMessages to ``slack:<CHANNEL_ID>`` channels.

    Slack has no idempotency key on ``chat.postMessage``; the key travels in message
    ``metadata`` so ``find_sent`` can tell, after a crash, whether a send already happened.
    """

    name = "slack"
    per_channel_interval = PER_CHANNEL_INTERVAL

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        timezone: str | None = None,
        history_calls_per_minute: float = HISTORY_CALLS_PER_MINUTE,
    ) -> None:
        self.client = client
        self._tz = fmt.zone(timezone)
        # Keys of messages this process posted, recorded the moment Slack returned the ts.
        self._posted: dict[tuple[str, str], str] = {}
        # channel -> {idempotency key: ts} that conversations.history reads have shown.
        self._seen: dict[str, dict[str, str]] = {}
        self._history_budget = AsyncLimiter(history_calls_per_minute, 60)
        self.history_calls = 0
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    def handles(self, channel: str) -> bool:
        return channel.startswith(CHANNEL_PREFIX)

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        channel_id = slack_channel_id(message.channel)
        payload = render_blocks(message, self._tz)
        try:
            async with self._in_flight:
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
        ts = str(response["ts"])
        self._posted[(message.channel, idempotency_key)] = ts
        return MessageRef(channel=message.channel, message_id=ts)

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        payload = render_blocks(message, self._tz)
        try:
            async with self._in_flight:
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
        self, channel: str, idempotency_key: str, *, after: str | None = None
    ) -> MessageRef | None:
        """The message already posted with this key, if any (needs ``channels:history``).

        Called only for posts whose earlier outcome is unknown. A key this process posted is
        answered from memory, and so is a key an earlier history read saw: a read can prove
        that a post exists, never that it does not (the post may have landed after the
        read). Otherwise the channel's history is read anew, newest first, page by page down
        to ``after`` (the ts of a message known to be older than any attempt of this post;
        without it, up to ``HISTORY_MAX_PAGES`` pages): the whole window an earlier attempt
        can be in, however busy the channel. Reads are kept within a per-minute budget
        (Slack cut this method to 1/min for some apps).
        """
        known = self._posted.get((channel, idempotency_key))
        if known is not None:
            return MessageRef(channel=channel, message_id=known)
        seen = self._seen.setdefault(channel, {})
        if idempotency_key not in seen:
            seen.update(await self._read_history(channel, after))
        ts = seen.get(idempotency_key)
        return MessageRef(channel=channel, message_id=ts) if ts is not None else None

    async def _read_history(self, channel: str, after: str | None) -> dict[str, str]:
        keys: dict[str, str] = {}
        cursor: str | None = None
        for _ in range(HISTORY_MAX_PAGES):
            params: dict[str, Any] = {
                "channel": slack_channel_id(channel),
                "limit": HISTORY_PAGE,
                "include_all_metadata": True,
            }
            if after is not None:
                params["oldest"] = after
            if cursor:
                params["cursor"] = cursor
            async with self._history_budget:
                self.history_calls += 1
                try:
                    response = await self.client.conversations_history(**params)
                except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                    raise _delivery_error(exc, "conversations.history") from exc
            for item in response.get("messages") or []:
                metadata = item.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                key = payload.get("idempotency_key")
                if metadata.get("event_type") == METADATA_EVENT and isinstance(key, str):
                    keys.setdefault(key, str(item["ts"]))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                return keys
        if after is None:
            log.warning(
                "%s: reconciling read %d pages of history without finding the bound",
                channel,
                HISTORY_MAX_PAGES,
            )
        return keys

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
