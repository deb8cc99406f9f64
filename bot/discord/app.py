"""The Discord front end: discord.py app commands mirroring the shared command layer."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Optional

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from alerts.commands import CommandContext, CommandHandler, CommandSpec, Reply
from alerts.mentions import discord_markdown, fit
from bot.discord.platform import CHANNEL_PREFIX
from bot.settings import DiscordSettings

log = logging.getLogger(__name__)

REPLY_LIMIT = 2000
ANSWER_WITHIN = 2.0  # Discord drops an interaction not answered within 3 s
# These change the channel in every form; /basket and /digest also have forms anyone may read,
# so they stay visible to all and the command layer decides per form.
_HINT_MANAGE = {"watch", "unwatch", "mute", "unmute", "resolved", "pingrole"}
POPULAR_SYMBOLS = (
    "NQ=F", "ES=F", "YM=F", "RTY=F", "^VIX", "^GSPC", "^NDX", "SPY", "QQQ", "NVDA", "AAPL",
    "MSFT", "GOOGL", "AMZN", "META", "TSLA", "AVGO", "AMD", "TSM", "ASML", "ASML.AS", "INTC",
    "ORCL", "SMCI", "ARM", "MU", "NFLX", "BRK-B", "JPM", "GC=F", "CL=F", "BTC-USD",
)  # fmt: skip

Suggest = Callable[[str, str], Sequence[str]]


def configure_endpoints(api_url: str | None, gateway_url: str | None) -> None:
    """Point discord.py at another REST base and gateway (API proxies, the loopback fake).

    Both are process-wide in discord.py; a plain Client connects to ``DEFAULT_GATEWAY`` without
    asking ``/gateway/bot``, so the gateway needs its own setting.
    """
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def reply_content(reply: Reply) -> str:
    """The command layer's ``*bold*`` is Discord's ``**bold**``; mentions are neutralised."""
    text = re.sub(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])", r"**\1**", reply.text)
    return fit(text, REPLY_LIMIT, lambda s: discord_markdown(s, escape_markdown=False))


def default_suggest(channel: str, current: str) -> Sequence[str]:
    typed = current.strip().upper()
    found = [s for s in POPULAR_SYMBOLS if s.startswith(typed)] if typed else list(POPULAR_SYMBOLS)
    if typed and typed not in found:
        found.insert(0, typed)
    return found


class CommandBridge:
    """Turns app-command invocations into command lines for the router, and answers them."""

    def __init__(
        self,
        router: CommandHandler,
        *,
        manage_role: str | None = None,
        suggest: Suggest | None = None,
        answer_within: float = ANSWER_WITHIN,
    ) -> None:
        self.router = router
        self.manage_role = manage_role
        self.suggest = suggest or default_suggest
        self.answer_within = answer_within
        self.specs = {spec.name: spec for spec in router.command_names()}

    def can_manage(self, interaction: discord.Interaction[Any]) -> bool:
        """Manage Channels (or Administrator, or the configured role), from the interaction.

        ``default_member_permissions`` only hides commands in the client; a guild admin can
        override it, so every changing command is checked here against what Discord says the
        member may do in this channel.
        """
        if interaction.guild_id is None:
            return True  # a DM with the bot is the user's own channel
        permissions = interaction.permissions
        if permissions.manage_channels or permissions.administrator:
            return True
        user = interaction.user
        if self.manage_role and isinstance(user, discord.Member):
            return any(self.manage_role in (str(role.id), role.name) for role in user.roles)
        return False

    async def run(
        self, interaction: discord.Interaction[Any], name: str, words: Sequence[str | None]
    ) -> None:
        text = " ".join(w.strip() for w in (name, *words) if w and w.strip())
        ctx = CommandContext(
            channel=f"{CHANNEL_PREFIX}{interaction.channel_id}",
            user=f"discord:{interaction.user.id}",
            platform="discord",
            can_manage=self.can_manage(interaction),
        )
        none = discord.AllowedMentions.none()
        task = asyncio.create_task(asyncio.to_thread(self.router.handle, text, ctx))
        done, _ = await asyncio.wait({task}, timeout=self.answer_within)
        if done:
            reply = task.result()
            public = reply.ok and reply.changed
            await interaction.response.send_message(
                reply_content(reply), ephemeral=not public, allowed_mentions=none
            )
            return
        # Slow (a busy database): tell Discord we are on it, answer when the router is done.
        spec = self.specs.get(name)
        await interaction.response.defer(
            thinking=True, ephemeral=not (spec is not None and spec.changes_channel)
        )
        reply = await task
        await interaction.followup.send(reply_content(reply), allowed_mentions=none)

    async def autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        channel = f"{CHANNEL_PREFIX}{interaction.channel_id}"
        found = await asyncio.to_thread(self.suggest, channel, current)
        return [app_commands.Choice(name=s[:100], value=s[:100]) for s in list(found)[:25]]

    def commands(
        self, *, hint_permissions: bool = True
    ) -> list[app_commands.Command[Any, ..., Any]]:
        built = []
        for spec in self.specs.values():
            callback, symbol_option = self._callback(spec)
            renamed = {"name": "name_", "command": "args"}  # options whose parameter differs
            params = callback.__code__.co_varnames[: callback.__code__.co_argcount]
            descriptions = {}
            for arg in spec.args:
                param = arg.name if arg.name in params else renamed.get(arg.name, "")
                if param in params:
                    descriptions[param] = arg.description[:100]
            if descriptions:
                callback = app_commands.describe(**descriptions)(callback)
            command: app_commands.Command[Any, ..., Any] = app_commands.Command(
                name=spec.name, description=spec.summary[:100], callback=callback
            )
            if symbol_option:
                command.autocomplete(symbol_option)(self.autocomplete)
            if hint_permissions and spec.name in _HINT_MANAGE:
                command.default_permissions = discord.Permissions(manage_channels=True)
            built.append(command)
        return built

    def _callback(
        self, spec: CommandSpec
    ) -> tuple[Callable[..., Coroutine[Any, Any, None]], str | None]:
        """A typed callback per command; discord.py builds the options from its signature."""
        name = spec.name
        run = self.run
        note_sep = "--"

        if name == "watch":

            async def watch(
                interaction: discord.Interaction[Any],
                target: str,
                rule: Optional[str] = None,  # noqa: UP045 - discord.py reads this annotation
                note: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [target, rule, f"{note_sep} {note}" if note else None])

            return watch, "target"
        if name == "unwatch":

            async def unwatch(
                interaction: discord.Interaction[Any],
                target: str,
                rule: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [target, rule])

            return unwatch, "target"
        if name in {"price", "news"}:
            if any(a.required for a in spec.args):

                async def symbol_required(
                    interaction: discord.Interaction[Any], symbol: str
                ) -> None:
                    await run(interaction, name, [symbol])

                return symbol_required, "symbol"

            async def symbol_optional(
                interaction: discord.Interaction[Any],
                symbol: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [symbol])

            return symbol_optional, "symbol"
        if name == "mute":

            async def mute(
                interaction: discord.Interaction[Any], scope: str, duration: str
            ) -> None:
                await run(interaction, name, [scope, duration])

            return mute, "scope"
        if name == "unmute":

            async def unmute(
                interaction: discord.Interaction[Any],
                scope: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [scope])

            return unmute, "scope"
        if name == "digest":

            async def digest(
                interaction: discord.Interaction[Any],
                action: Optional[Literal["on", "off"]] = None,  # noqa: UP045
                time: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [action, time])

            return digest, None
        if name == "alerts":

            async def alerts(
                interaction: discord.Interaction[Any],
                count: Optional[app_commands.Range[int, 1, 50]] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, name, [str(count) if count is not None else None])

            return alerts, None
        if name == "basket":

            async def basket(
                interaction: discord.Interaction[Any],
                action: Literal["create", "list", "show", "delete"],
                name_: Optional[str] = None,  # noqa: UP045
                symbols: Optional[str] = None,  # noqa: UP045
            ) -> None:
                await run(interaction, "basket", [action, name_, symbols])

            return app_commands.rename(name_="name")(basket), None
        if name == "resolved":

            async def resolved(
                interaction: discord.Interaction[Any], action: Literal["on", "off"]
            ) -> None:
                await run(interaction, name, [action])

            return resolved, None
        if name == "pingrole":

            async def pingrole(interaction: discord.Interaction[Any], role: str) -> None:
                await run(interaction, name, [role])

            return pingrole, None
        if name == "watchlist":

            async def watchlist(interaction: discord.Interaction[Any]) -> None:
                await run(interaction, name, [])

            return watchlist, None

        # /help and any command added to the layer later: one free-text option.
        async def generic(
            interaction: discord.Interaction[Any],
            args: Optional[str] = None,  # noqa: UP045
        ) -> None:
            await run(interaction, name, [args])

        if name == "help":
            return app_commands.rename(args="command")(generic), None
        return generic, None


async def sync_commands(tree: app_commands.CommandTree[Any], dev_guild_id: int | None) -> None:
    """Register commands at start: instantly in the dev guild, else globally."""
    if dev_guild_id is not None:
        guild = discord.Object(id=dev_guild_id)
        tree.copy_global_to(guild=guild)
        synced = await tree.sync(guild=guild)
    else:
        synced = await tree.sync()
    log.info(
        "discord: %d commands synced%s", len(synced), " to the dev guild" if dev_guild_id else ""
    )


def bot_intents() -> discord.Intents:
    # Slash commands need no privileged intents; guilds gives channels and roles for checks.
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


class _CommandTreeClient:
    """What both client kinds add to discord.py: marketbot's command tree, synced at start."""

    def __init__(
        self, bridge: CommandBridge, *, dev_guild_id: int | None = None, **kwargs: Any
    ) -> None:
        # Cooperative: the next class in the MRO is discord.Client or AutoShardedClient.
        super().__init__(intents=bot_intents(), max_ratelimit_timeout=30.0, **kwargs)  # type: ignore[call-arg]
        self.bridge = bridge
        self.dev_guild_id = dev_guild_id
        self.tree: app_commands.CommandTree[Any] = app_commands.CommandTree(self)
        for command in bridge.commands(hint_permissions=bridge.manage_role is None):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        await sync_commands(self.tree, self.dev_guild_id)


class MarketbotClient(_CommandTreeClient, discord.Client):
    """A plain client (one gateway connection) with marketbot's command tree."""


class MarketbotShardedClient(_CommandTreeClient, discord.AutoShardedClient):
    """The same, sharded: discord.py asks ``/gateway/bot`` for the URL and shard count."""


def build_discord_client(
    settings: DiscordSettings,
    router: CommandHandler,
    *,
    suggest: Suggest | None = None,
    answer_within: float = ANSWER_WITHIN,
    guild_ready_timeout: float = 2.0,
) -> MarketbotClient | MarketbotShardedClient:
    """The client for both jobs: serving commands (gateway) and posting alerts (REST).

    ``guild_ready_timeout`` is how long discord.py waits after the last GUILD_CREATE before
    it calls itself ready (its default, 2 s; tests against the fake use less).
    """
    configure_endpoints(settings.api_url, settings.gateway_url)
    bridge = CommandBridge(
        router, manage_role=settings.manage_role, suggest=suggest, answer_within=answer_within
    )
    if settings.shard_count is not None:
        return MarketbotShardedClient(
            bridge,
            dev_guild_id=settings.dev_guild_id,
            shard_count=settings.shard_count,
            guild_ready_timeout=guild_ready_timeout,
        )
    return MarketbotClient(
        bridge, dev_guild_id=settings.dev_guild_id, guild_ready_timeout=guild_ready_timeout
    )


async def run_discord(
    settings: DiscordSettings,
    router: CommandHandler,
    *,
    client: MarketbotClient | MarketbotShardedClient | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Log in, sync commands, serve the gateway until ``stop`` is set (or cancelled)."""
    if settings.token is None:
        raise ValueError("MARKETBOT_DISCORD__TOKEN is required")
    client = client or build_discord_client(settings, router)
    stop = stop or asyncio.Event()
    try:
        await client.login(settings.token.get_secret_value())
        connect = asyncio.create_task(client.connect(reconnect=True))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if connect in done:
            stopped.cancel()
            connect.result()  # re-raise a fatal gateway error (bad token, intents)
    finally:
        await client.close()
