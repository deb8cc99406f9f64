"""Replies on Slack name commands as the workspace registered them: `/marketbot help`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerts.commands import COMMANDS, CommandRouter
from alerts.ports import ManualClock
from bot.fakes.slack_server import FakeSlack
from bot.settings import SlackSettings
from bot.slack.app import SlackService
from bot.slack.commands import slack_commands, spell_commands, spellings
from bot.store.sql import SqlStore

MENTION = re.compile(r"`(/[a-z0-9_-]+)")


def test_each_command_is_spelled_as_registered_or_through_the_umbrella() -> None:
    plain = spellings("", COMMANDS)
    assert plain["help"] == "/marketbot help"  # generic: left to other apps
    assert plain["mute"] == "/marketbot mute"  # Slack's own
    assert plain["watch"] == "/watch"
    prefixed = spellings("mb-", COMMANDS)
    assert prefixed["help"] == "/mb-help"
    assert prefixed["watch"] == "/mb-watch"
    text = "Unknown command `/wacth`. Did you mean `/watch NVDA`? Or try `/help`."
    assert spell_commands(text, prefixed) == (
        "Unknown command `/wacth`. Did you mean `/mb-watch NVDA`? Or try `/mb-help`."
    )
    assert spell_commands("`/helpful` and /help outside code", plain) == (
        "`/helpful` and /help outside code"
    )


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.mark.parametrize("prefix", ["", "mb-"])
async def test_refusals_and_help_name_only_commands_that_exist_here(
    slack: FakeSlack, tmp_path: Path, prefix: str
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}")
    store.upgrade()
    router = CommandRouter(store, ManualClock(datetime(2025, 1, 27, 9, tzinfo=UTC)))
    settings = SlackSettings(
        bot_token=SecretStr(slack.bot_token),
        app_token=SecretStr(slack.app_token),
        api_url=slack.api_url,
        command_prefix=prefix,
    )
    umbrella = f"/{prefix}marketbot"
    service = SlackService(settings, router)
    await service.start()
    try:
        await slack.slash_command(umbrella, "wacth NVDA")  # a near miss
        await slack.slash_command(umbrella, "")  # the help listing
        responses = await slack.wait_for_responses(2)
    finally:
        await service.close()
        store.close()
    refusal, listing = (response["text"] for response in responses)
    help_typed = "/mb-help" if prefix else "/marketbot help"
    assert f"`{help_typed}`" in refusal
    assert f"`/{prefix}watch NVDA`" in refusal
    registered = {command.slash for command in slack_commands(prefix, COMMANDS)}
    for text in (refusal, listing):
        named = set(MENTION.findall(text)) - {"/wacth"}  # the typo is quoted back as typed
        assert named, text
        assert named <= registered, named - registered
