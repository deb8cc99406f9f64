"""`marketbot run` with a Discord token: /watch in a server, then the alert posted as an embed.

Real discord.py against the loopback fake gateway and REST; real yfinance against fake Yahoo.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.ports import ManualClock
from bot.fakes.discord_server import MANAGE_CHANNELS, MEMBER_PERMISSIONS, FakeDiscord
from bot.fakes.yahoo_server import FakeYahoo
from bot.runner import Runtime
from tests.conftest import premarket_quote, run_settings
from tests.support.runs import discord_section, started

PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("discord_endpoints")


@pytest.fixture
def avgo_falls(fake_yahoo: FakeYahoo) -> FakeYahoo:
    premarket_quote(fake_yahoo, "AVGO", previous_close=240.66, price=209.6, at=PREMARKET)
    return fake_yahoo


async def test_watch_in_discord_then_the_alert_pings_only_the_opted_in_role(
    tmp_path: Path, avgo_falls: FakeYahoo, fake_discord: FakeDiscord
) -> None:
    settings = run_settings(
        tmp_path, avgo_falls, console=False, discord=discord_section(fake_discord)
    )
    async with started(Runtime(settings, clock=ManualClock(PREMARKET))) as runtime:
        await fake_discord.wait_for(lambda: fake_discord.guild_id in fake_discord.commands, 10)
        denied, _ = await fake_discord.interact(
            "watch", {"target": "AVGO"}, permissions=MEMBER_PERMISSIONS
        )
        role, _ = await fake_discord.interact(
            "pingrole",
            {"role": f"<@&{fake_discord.manager_role_id}>"},
            permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS,
        )
        await fake_discord.wait_for(lambda: role in fake_discord.callbacks, 10)
        allowed, _ = await fake_discord.interact(
            "watch",
            {"target": "AVGO", "rule": "drop 5%", "note": "@everyone look"},
            permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS,
        )
        await fake_discord.wait_for(lambda: allowed in fake_discord.callbacks, 10)
        await fake_discord.wait_for(lambda: bool(fake_discord.messages), 10)
    assert "Manage Channels" in str(fake_discord.callbacks[denied])
    [request] = fake_discord.calls("POST", r"/channels/\d+/messages$")
    posted = request.json
    assert posted is not None
    # -12.9% on a 5% rule is critical, and this channel opted in to pinging one role for that:
    # that role and nobody else.
    assert posted["content"] == f"<@&{fake_discord.manager_role_id}>"
    mentions = posted["allowed_mentions"]
    assert mentions["parse"] == []
    assert [str(role_id) for role_id in mentions["roles"]] == [fake_discord.manager_role_id]
    assert posted["enforce_nonce"] is True
    embed_text = str(posted["embeds"])
    assert "AVGO" in embed_text
    assert "−12.9%" in embed_text
    assert "@everyone" not in embed_text  # the note is shown, neutralised
    [watch] = runtime.store.list_watches()
    assert watch.channel == f"discord:{fake_discord.channel_id}"
