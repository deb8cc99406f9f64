"""The Discord front end: discord.py app commands mirroring the shared command layer."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Optional

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from alerts.commands import (
    NOTE_SEPARATOR,
    ROLE_PINGS,
    ROLE_USAGE,
    ArgSpec,
    CommandContext,
    CommandHandler,
    CommandSpec,
    Reply,
    SuggestsSymbols,
    symbol_choices,
)
from alerts.mentions import discord_markdown, fit
from bot.discord.platform import CHANNEL_PREFIX
from bot.discord.roles import read_role
from bot.settings import DiscordSettings

log = logging.getLogger(__name__)

# marketbot never joins a voice channel, yet discord.py warns at the first client it creates
# that PyNaCl and davey (its voice libraries) are missing, which reads like a fault at start.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False

REPLY_LIMIT = 2000
FEATURES = frozenset({ROLE_PINGS})  # a role mention in an alert notifies the role
ANSWER_WITHIN = 2.0  # Discord drops an interaction not answered within 3 s

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


def matching_symbols(known: Sequence[str], current: str) -> list[str]:
    """What was typed (as a symbol is written), then the known symbols it starts, in order."""
    typed = current.strip().upper()
    found = [s for s in known if s.startswith(typed)]
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
        self.suggest = suggest or self.suggest_symbols
        self.answer_within = answer_within
        self.specs = {spec.name: spec for spec in router.command_names()}

    def suggest_symbols(self, channel: str, current: str) -> Sequence[str]:
        """The router's symbols for this channel (its own watches first), else the built-in
        ones: baskets' members and the digest's index symbols."""
        router = self.router
        known = router.symbol_choices(channel) if isinstance(router, SuggestsSymbols) else None
        return matching_symbols(symbol_choices() if known is None else known, current)

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
            features=FEATURES,
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

    async def refuse(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Answer, to the asker only, input the adapter cannot translate for the router."""
        await interaction.response.send_message(
            reply_content(Reply(text, ok=False)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        channel = f"{CHANNEL_PREFIX}{interaction.channel_id}"
        found = await asyncio.to_thread(self.suggest, channel, current)
        return [app_commands.Choice(name=s[:100], value=s[:100]) for s in list(found)[:25]]

    def commands(
        self, *, hint_permissions: bool = True
    ) -> list[app_commands.Command[Any, ..., Any]]:
        """One app command per ``CommandSpec``: its name, summary and options, nothing else."""
        built = []
        for spec in self.specs.values():
            if spec.requires is not None and spec.requires not in FEATURES:
                continue
            command: app_commands.Command[Any, ..., Any] = app_commands.Command(
                name=spec.name, description=spec.summary[:100], callback=self._callback(spec)
            )
            for arg in spec.args:
                if arg.kind in _SUGGESTED_KINDS:
                    command.autocomplete(arg.name)(self.autocomplete)
            # Hidden from members who may not use it, when it changes the channel in every form
            # (/basket list stays visible; the command layer decides per form).
            if hint_permissions and spec.changes_channel and not spec.read_forms:
                command.default_permissions = discord.Permissions(manage_channels=True)
            built.append(command)
        return built

    def _callback(self, spec: CommandSpec) -> Callable[..., Coroutine[Any, Any, None]]:
        """A callback whose signature is the spec's options: discord.py reads options from a
        callback's signature, so the spec is written there instead of in a def per command."""
        run, refuse = self.run, self.refuse

        async def callback(interaction: discord.Interaction[Any], **options: object) -> None:
            words = [_word(arg, options.get(arg.name)) for arg in spec.args]
            for i, arg in enumerate(spec.args):
                if arg.kind == "role" and words[i] is not None:
                    # The router gets the role's id, never Discord's mention syntax.
                    words[i] = _role_word(str(words[i]))
                    if words[i] is None:
                        await refuse(interaction, ROLE_USAGE)
                        return
            await run(interaction, spec.name, words)

        parameters = [
            inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *(
                inspect.Parameter(
                    arg.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=_annotation(arg),
                    default=inspect.Parameter.empty if arg.required else None,
                )
                for arg in spec.args
            ),
        ]
        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback.__qualname__ = callback.__name__ = f"{spec.name}_command"
        described = {arg.name: arg.description[:100] for arg in spec.args}
        return app_commands.describe(**described)(callback) if described else callback


# Option kinds whose values are symbols, so Discord suggests symbols as the user types.
_SUGGESTED_KINDS = {"symbol", "target", "scope"}


def _annotation(arg: ArgSpec) -> object:
    """The Python type discord.py turns into the option's type, choices and bounds."""
    if arg.kind == "integer":
        if arg.minimum is not None or arg.maximum is not None:
            kind: object = app_commands.Range[int, arg.minimum, arg.maximum]
        else:
            kind = int
    elif arg.choices:
        kind = Literal.__getitem__(arg.choices)
    else:
        kind = str
    return kind if arg.required else Optional[kind]  # noqa: UP045 - a runtime annotation


def _word(arg: ArgSpec, value: object) -> str | None:
    """An option's value as the words the command layer parses (a note after ``--``)."""
    if value is None:
        return None
    return f"{NOTE_SEPARATOR.strip()} {value}" if arg.kind == "note" else str(value)


def _role_word(typed: str) -> str | None:
    """``<@&123>`` or ``123`` -> ``123``; ``off`` stays; None for anything naming no role."""
    return "off" if typed.strip().lower() == "off" else read_role(typed)


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
