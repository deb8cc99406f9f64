"""The Slack front end: a Bolt AsyncApp whose slash commands all go to the shared command layer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from alerts.commands import CommandContext, CommandHandler, Reply
from alerts.mentions import fit, slack_mrkdwn
from bot.settings import SlackSettings
from bot.slack.commands import FEATURES, slack_commands, spell_commands, spellings
from bot.slack.manifest import BOT_EVENTS
from bot.slack.platform import CHANNEL_PREFIX, SlackPlatform, make_web_client

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
REPLY_LIMIT = 3000  # a response_url message is one section's worth of text


def reply_text(reply: Reply, spelling: Mapping[str, str] | None = None) -> str:
    """The command layer's light markdown is Slack mrkdwn already; only escaping is needed,
    and commands it names are spelled as this workspace registers them (``spelling``)."""
    text = spell_commands(reply.text, spelling) if spelling else reply.text
    return fit(text, REPLY_LIMIT, slack_mrkdwn)


def build_slack_app(
    settings: SlackSettings,
    router: CommandHandler,
    *,
    client: AsyncWebClient | None = None,
) -> AsyncApp:
    """A Bolt app with one listener per command; Socket Mode or HTTP decided by ``settings``.

    Each listener acks at once (Slack allows 3 s) and answers through ``respond`` after the
    command layer ran in a worker thread, since it may wait on the database.
    """
    if client is None:
        token = settings.bot_token.get_secret_value() if settings.bot_token else None
        client = make_web_client(token, api_url=settings.api_url)
    if settings.mode == "http":
        if settings.signing_secret is None:
            raise ValueError("MARKETBOT_SLACK__SIGNING_SECRET is required in HTTP mode")
        app = AsyncApp(
            client=client,
            signing_secret=settings.signing_secret.get_secret_value(),
            process_before_response=False,
        )
    else:
        # Socket Mode frames arrive over an authenticated websocket: nothing to sign.
        app = AsyncApp(client=client, request_verification_enabled=False)

    # Exactly the commands the manifest registers: the umbrella plus the non-colliding ones.
    specs = router.command_names()
    spelling = spellings(settings.command_prefix, specs)
    for registered in slack_commands(settings.command_prefix, specs):
        name = registered.spec.name if registered.spec else None
        app.command(registered.slash)(_listener(router, name, spelling))
    for event in BOT_EVENTS:
        app.event(event)(_log_removal)
    return app


async def _log_removal(event: dict[str, Any]) -> None:
    log.warning("slack: %s: the workspace removed the app or its tokens", event.get("type"))


def _listener(
    router: CommandHandler, name: str | None, spelling: Mapping[str, str]
) -> Callable[..., Awaitable[None]]:
    """``name`` None is the umbrella: `/marketbot watch NVDA` runs `watch NVDA`."""

    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        args = str(command.get("text") or "").strip()
        text = (args.lstrip("/") or "help") if name is None else f"{name} {args}".strip()
        ctx = CommandContext(
            channel=CHANNEL_PREFIX + str(command.get("channel_id", "")),
            user="slack:" + str(command.get("user_id", "")),
            platform="slack",
            # Slack has no per-channel "manage" permission a slash command can see; workspace
            # admins restrict who may use the app instead.
            can_manage=True,
            features=FEATURES,
        )
        reply = await asyncio.to_thread(router.handle, text, ctx)
        # Changes are announced to the channel; reads and mistakes stay with the asker.
        public = reply.ok and reply.changed
        await respond(
            text=reply_text(reply, spelling), response_type="in_channel" if public else "ephemeral"
        )

    return on_command


def create_slack_platform(settings: SlackSettings, *, timezone: str | None = None) -> SlackPlatform:
    """The ChatPlatform the delivery worker uses to post alerts to Slack."""
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    client = make_web_client(token, api_url=settings.api_url, retry_connection_errors=False)
    return SlackPlatform(client, timezone=timezone)


class SlackService:
    """A running Slack front end: a Socket Mode connection or an HTTP listener."""

    def __init__(
        self,
        settings: SlackSettings,
        router: CommandHandler,
        *,
        client: AsyncWebClient | None = None,
        host: str = "0.0.0.0",
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.app = build_slack_app(settings, router, client=client)
        self.host = host
        self.port = settings.http_port if port is None else port
        # Bolt's Socket Mode handler is untyped; Any keeps mypy from flagging every call.
        self._socket: Any = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.settings.mode == "socket":
            if self.settings.app_token is None:
                raise ValueError("MARKETBOT_SLACK__APP_TOKEN is required in Socket Mode")
            self._socket = AsyncSocketModeHandler(
                self.app, self.settings.app_token.get_secret_value()
            )
            await self._socket.connect_async()
            log.info("slack: connected in Socket Mode")
            return
        self._runner = web.AppRunner(self.app.web_app(path=EVENTS_PATH, port=self.port))
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("slack: listening for %s on port %d", EVENTS_PATH, self.port)

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def run_slack(
    settings: SlackSettings,
    router: CommandHandler,
    *,
    stop: asyncio.Event | None = None,
    host: str = "0.0.0.0",
) -> None:
    """Serve Slack commands until ``stop`` is set (or the task is cancelled)."""
    service = SlackService(settings, router, host=host)
    await service.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await service.close()
