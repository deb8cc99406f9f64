"""Discord front end end to end: fake gateway + REST driving the real discord.py client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import discord
import pytest
from discord import app_commands
from pydantic import SecretStr

from alerts.commands import COMMANDS, ArgSpec, CommandContext, CommandSpec, Reply
from bot.discord.app import CommandBridge, build_discord_client, run_discord
from bot.fakes.discord_server import (
    MANAGE_CHANNELS,
    MEMBER_PERMISSIONS,
    DiscordSpecValidator,
    FakeDiscord,
)
from bot.settings import DiscordSettings

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "discord-openapi.json"
EPHEMERAL = 64


class RecordingRouter:
    """The command layer's shape (our boundary): records calls, refuses changes without rights."""

    def __init__(self, answer: str = "Watching *NVDA*: alert on `drop 10%`.") -> None:
        self.calls: list[tuple[str, CommandContext]] = []
        self.answer = answer
        self.release: threading.Event | None = None

    def handle(self, text: str, ctx: CommandContext) -> Reply:
        self.calls.append((text, ctx))
        if self.release is not None:
            self.release.wait(5)
        spec = next(s for s in COMMANDS if s.name == text.split()[0])
        if spec.changes_channel and not ctx.can_manage:
            return Reply("You need the Manage Channels permission.", ok=False)
        return Reply(self.answer, changed=spec.changes_channel)

    def command_names(self) -> Sequence[CommandSpec]:
        return COMMANDS


pytestmark = pytest.mark.usefixtures("discord_endpoints")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    validator = DiscordSpecValidator(SPEC) if SPEC.exists() else None
    async with FakeDiscord(validator=validator) as server:
        yield server
    assert server.validation_errors == []


def _settings(fake: FakeDiscord, **extra: object) -> DiscordSettings:
    return DiscordSettings(
        token=SecretStr(fake.token),
        api_url=fake.rest_base,
        gateway_url=fake.gateway_url,
        **extra,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(
    settings: DiscordSettings, router: RecordingRouter, **kwargs: float
) -> AsyncIterator[discord.Client]:
    # A short guild_ready_timeout: the fake sends its only GUILD_CREATE right after READY.
    client = build_discord_client(settings, router, guild_ready_timeout=0.2, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(run_discord(settings, router, client=client, stop=stop))
    ready = asyncio.create_task(client.wait_until_ready())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    assert ready in done, "the client never became ready"
    try:
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _answer(fake: FakeDiscord, interaction_id: str) -> dict[str, object]:
    await fake.wait_for(lambda: interaction_id in fake.callbacks)
    return fake.callbacks[interaction_id][0]


async def test_slash_command_end_to_end(fake: FakeDiscord) -> None:
    router = RecordingRouter()
    settings = _settings(fake, dev_guild_id=int(fake.guild_id))
    async with running(settings, router):
        assert {c["name"] for c in fake.commands[fake.guild_id]} == {s.name for s in COMMANDS}
        iid, _ = await fake.interact(
            "watch",
            {"target": "NVDA", "rule": "drop 10%", "note": "earnings soon"},
            permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS,
        )
        callback = await _answer(fake, iid)
    assert fake.identify_payloads[0]["token"] == fake.token
    text, ctx = router.calls[0]
    assert text == "watch NVDA drop 10% -- earnings soon"
    assert ctx.channel == f"discord:{fake.channel_id}"
    assert ctx.platform == "discord"
    assert ctx.can_manage
    assert callback["type"] == 4
    data = callback["data"]
    assert isinstance(data, dict)
    assert data["content"] == "Watching **NVDA**: alert on `drop 10%`."
    assert not (data.get("flags") or 0) & EPHEMERAL  # a change is announced to the channel
    assert data["allowed_mentions"] == {"parse": []}


async def test_member_without_manage_channels_is_refused(fake: FakeDiscord) -> None:
    router = RecordingRouter()
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):
        iid, _ = await fake.interact("unwatch", {"target": "NVDA"}, permissions=MEMBER_PERMISSIONS)
        callback = await _answer(fake, iid)
        read_id, _ = await fake.interact("watchlist", permissions=MEMBER_PERMISSIONS)
        read = await _answer(fake, read_id)
    assert [ctx.can_manage for _, ctx in router.calls] == [False, False]
    data = callback["data"]
    assert isinstance(data, dict)
    assert "Manage Channels" in str(data["content"])
    assert data["flags"] & EPHEMERAL
    read_data = read["data"]
    assert isinstance(read_data, dict)
    assert read_data["content"].startswith("Watching")  # reading is for everyone


async def test_configured_role_may_change_without_manage_channels(fake: FakeDiscord) -> None:
    router = RecordingRouter()
    settings = _settings(fake, dev_guild_id=int(fake.guild_id), manage_role="alerts-admin")
    async with running(settings, router):
        iid, _ = await fake.interact(
            "mute",
            {"scope": "NVDA", "duration": "2h"},
            permissions=MEMBER_PERMISSIONS,
            roles=[fake.manager_role_id],
        )
        await _answer(fake, iid)
    assert router.calls[0][0] == "mute NVDA 2h"
    assert router.calls[0][1].can_manage


async def test_symbol_autocomplete(fake: FakeDiscord) -> None:
    router = RecordingRouter()
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):
        iid, _ = await fake.interact("price", {"symbol": "nv"}, autocomplete="symbol")
        callback = await _answer(fake, iid)
    assert callback["type"] == 8
    data = callback["data"]
    assert isinstance(data, dict)
    values = [c["value"] for c in data["choices"]]
    assert values[0] == "NV"
    assert "NVDA" in values
    assert router.calls == []


async def test_pingrole_hands_the_router_the_role_id(fake: FakeDiscord) -> None:
    # Discord's mention syntax is read here, in the adapter: the command layer gets the id.
    router = RecordingRouter()
    manage = MEMBER_PERMISSIONS | MANAGE_CHANNELS
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):
        for typed in ("<@&123456789012345678>", "98765432101", "OFF"):
            iid, _ = await fake.interact("pingrole", {"role": typed}, permissions=manage)
            await _answer(fake, iid)
        refused_id, _ = await fake.interact("pingrole", {"role": "traders"}, permissions=manage)
        refused = await _answer(fake, refused_id)
    assert [text for text, _ in router.calls] == [
        "pingrole 123456789012345678",
        "pingrole 98765432101",
        "pingrole off",
    ]
    data = refused["data"]
    assert isinstance(data, dict)
    assert data["flags"] & EPHEMERAL
    assert "role mention or a role id" in data["content"]
    assert data["allowed_mentions"] == {"parse": []}


async def test_autocomplete_prefers_the_channels_own_watches(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from alerts.commands import CommandRouter
    from alerts.ports import ManualClock
    from bot.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}")
    store.upgrade()
    router = CommandRouter(store, ManualClock(datetime(2025, 1, 27, 9, tzinfo=UTC)))
    here = CommandContext(f"discord:{fake.channel_id}", "u", "discord")
    assert router.handle("/watch SMCI", here).ok
    assert router.handle("/watch MSTR", here).ok
    values: dict[str, list[str]] = {}
    try:
        async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):  # type: ignore[arg-type]
            for typed in ("", "s", "a"):
                iid, _ = await fake.interact("price", {"symbol": typed}, autocomplete="symbol")
                data = (await _answer(fake, iid))["data"]
                assert isinstance(data, dict)
                values[typed] = [c["value"] for c in data["choices"]]
    finally:
        store.close()
    assert values[""][:2] == ["MSTR", "SMCI"]  # this channel's watches come first
    assert values["s"][:2] == ["S", "SMCI"]  # what was typed, then the channel's match
    assert "AMD" in values["a"]  # then the built-in baskets' members
    assert values["a"][0] == "A"


async def test_slow_command_is_deferred_then_followed_up(fake: FakeDiscord) -> None:
    router = RecordingRouter()
    router.release = threading.Event()
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router, answer_within=0):
        iid, token = await fake.interact("alerts", {"count": 5})
        callback = await _answer(fake, iid)
        router.release.set()
        await fake.wait_for(lambda: token in fake.followups)
    assert callback["type"] == 5
    assert router.calls[0][0] == "alerts 5"
    assert fake.followups[token][0]["content"].startswith("Watching")


async def test_reply_cannot_ping(fake: FakeDiscord) -> None:
    router = RecordingRouter(answer="Basket @everyone <@&123456789012345678> saved")
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):
        iid, _ = await fake.interact("basket", {"action": "list"})
        callback = await _answer(fake, iid)
    data = callback["data"]
    assert isinstance(data, dict)
    assert "@everyone" not in data["content"]
    assert "<@&" not in data["content"]
    assert data["allowed_mentions"] == {"parse": []}


async def test_global_sync_without_dev_guild(fake: FakeDiscord) -> None:
    async with running(_settings(fake), RecordingRouter()):
        pass
    assert {c["name"] for c in fake.commands["global"]} == {s.name for s in COMMANDS}
    watch = next(c for c in fake.commands["global"] if c["name"] == "watch")
    assert int(watch["default_member_permissions"]) == MANAGE_CHANNELS


async def test_sharded_client_connects_each_shard(fake: FakeDiscord) -> None:
    # One shard: discord.py spaces shard logins 5 s apart, too slow for a unit test.
    async with running(_settings(fake, shard_count=1), RecordingRouter()) as client:
        assert isinstance(client, discord.AutoShardedClient)
    assert [p["shard"] for p in fake.identify_payloads] == [[0, 1]]


async def test_rate_limited_command_sync_is_retried(fake: FakeDiscord) -> None:
    fake.fail("PUT", r"/applications/\d+/guilds/\d+/commands", retry_after=0.01)
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), RecordingRouter()):
        pass
    assert len(fake.calls("PUT", r"/applications/\d+/guilds/\d+/commands")) == 2
    assert fake.commands[fake.guild_id]


async def test_requests_match_discord_openapi(fake: FakeDiscord) -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/discord-openapi.json not present")
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), RecordingRouter()):
        iid, _ = await fake.interact("help")
        await _answer(fake, iid)
    assert isinstance(fake.validator, DiscordSpecValidator)
    checked = set(fake.validator.checked)
    assert "PUT /applications/{application_id}/guilds/{guild_id}/commands" in checked
    assert "POST /interactions/{interaction_id}/{interaction_token}/callback" in checked


async def test_real_command_router_refuses_and_allows(fake: FakeDiscord, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from alerts.commands import CommandRouter
    from alerts.ports import ManualClock
    from bot.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}")
    store.upgrade()
    router = CommandRouter(store, ManualClock(datetime(2025, 1, 27, 9, tzinfo=UTC)))
    try:
        async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):  # type: ignore[arg-type]
            denied, _ = await fake.interact("watch", {"target": "nvda"})
            await _answer(fake, denied)
            allowed, _ = await fake.interact(
                "watch", {"target": "nvda"}, permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS
            )
            await _answer(fake, allowed)
        watches = store.list_watches(f"discord:{fake.channel_id}")
    finally:
        store.close()
    refused = fake.callbacks[denied][0]["data"]
    assert refused["flags"] & EPHEMERAL
    assert "Manage" in refused["content"]
    assert [(w.target, w.rule_text) for w in watches] == [("NVDA", "drop 10%")]


def _expected_options(spec: CommandSpec) -> list[dict[str, object]]:
    """What Discord must be told for each argument the spec declares (written out from the
    Discord API's option object, independently of the adapter's derivation)."""
    options: list[dict[str, object]] = []
    for arg in spec.args:
        option: dict[str, object] = {
            "name": arg.name,
            "description": arg.description[:100],
            "type": 4 if arg.kind == "integer" else 3,
            "required": arg.required,
        }
        if arg.choices:
            option["choices"] = [{"name": c, "value": c} for c in arg.choices]
        if arg.minimum is not None:
            option["min_value"] = arg.minimum
        if arg.maximum is not None:
            option["max_value"] = arg.maximum
        if arg.kind in ("symbol", "target", "scope"):
            option["autocomplete"] = True
        options.append(option)
    return options


def _registered_options(command: dict[str, object]) -> list[dict[str, object]]:
    keys = ("name", "description", "type", "required", "choices", "min_value", "max_value")
    found = []
    for option in command.get("options", []):  # type: ignore[attr-defined]
        kept = {k: option[k] for k in keys if option.get(k) not in (None, [])}
        kept["required"] = bool(option.get("required", False))
        if option.get("autocomplete"):
            kept["autocomplete"] = True
        found.append(kept)
    return found


EXTRA = CommandSpec(
    "quote",
    "/quote SYMBOL [SIDE] [N]",
    "A command only the spec knows about.",
    False,
    (
        ArgSpec("symbol", "Symbol", "symbol", True),
        ArgSpec("side", "bid or ask", "choice", False, ("bid", "ask")),
        ArgSpec("depth", "Levels", "integer", minimum=1, maximum=10),
    ),
)


class ExtendedRouter(RecordingRouter):
    def command_names(self) -> Sequence[CommandSpec]:
        return (*COMMANDS, EXTRA)

    def handle(self, text: str, ctx: CommandContext) -> Reply:
        self.calls.append((text, ctx))
        return Reply(self.answer)


def test_every_spec_is_an_app_command_with_its_options() -> None:
    bridge = CommandBridge(ExtendedRouter())
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(
        discord.Client(intents=discord.Intents.none())
    )
    for command in bridge.commands():
        tree.add_command(command)
    registered = {c.name: c.to_dict(tree) for c in tree.get_commands()}
    assert set(registered) == {s.name for s in (*COMMANDS, EXTRA)}
    for spec in (*COMMANDS, EXTRA):
        assert registered[spec.name]["description"] == spec.summary[:100]
        assert _registered_options(registered[spec.name]) == _expected_options(spec), spec.name
    # Hidden from members without Manage Channels: the commands that change the channel in
    # every form (/basket list and a bare /digest are for everyone).
    hidden = {name for name, c in registered.items() if c.get("default_member_permissions")}
    assert hidden == {"watch", "unwatch", "mute", "unmute", "resolved", "pingrole"}


async def test_synced_commands_carry_the_spec_options_and_a_new_spec_runs(
    fake: FakeDiscord,
) -> None:
    router = ExtendedRouter()
    async with running(_settings(fake, dev_guild_id=int(fake.guild_id)), router):
        synced = {c["name"]: c for c in fake.commands[fake.guild_id]}
        iid, _ = await fake.interact("quote", {"symbol": "NVDA", "depth": 3})
        await _answer(fake, iid)
        digest_id, _ = await fake.interact(
            "digest",
            {"action": "on", "time": "07:30", "zone": "Europe/Berlin"},
            permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS,
        )
        await _answer(fake, digest_id)
    for spec in (*COMMANDS, EXTRA):
        assert _registered_options(synced[spec.name]) == _expected_options(spec), spec.name
    assert [text for text, _ in router.calls] == ["quote NVDA 3", "digest on 07:30 Europe/Berlin"]


def test_no_voice_library_warning_at_start() -> None:
    # A fresh process, as `marketbot run` starts: discord.py warns once per process, so only a
    # process of its own shows whether the first client still does.
    import subprocess
    import sys

    from tests.test_cli import ROOT

    code = (
        "import logging; logging.basicConfig(); import bot.discord.app, discord; "
        "discord.Client(intents=discord.Intents.none())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "voice will NOT be supported" not in result.stderr
