"""`marketbot doctor` against the loopback fakes: all green, then each failure type and its fix."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.doctor import Finding, check_configuration, run_checks
from bot.fakes.discord_server import FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.fakes.yahoo_server import FakeYahoo
from bot.fakes.yahoo_streamer import FakeStreamer
from bot.settings import Settings
from bot.slack.manifest import BOT_SCOPES
from bot.store import SqlStore
from tests.test_cli import ROOT

pytestmark = pytest.mark.usefixtures("discord_endpoints")

CLOSED = "http://127.0.0.1:9"  # the discard port: connections are refused


@dataclass
class World:
    """Every far end the doctor talks to, as loopback fakes."""

    slack: FakeSlack
    discord: FakeDiscord
    yahoo: FakeYahoo
    stream_url: str
    db_url: str

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.db_url,
            "console": False,
            "slack": {
                "bot_token": self.slack.bot_token,
                "app_token": self.slack.app_token,
                "api_url": self.slack.api_url,
            },
            "discord": {
                "token": self.discord.token,
                "api_url": self.discord.rest_base,
                "gateway_url": self.discord.gateway_url,
            },
            "yahoo": {"base_url": self.yahoo.base_url, "stream_url": self.stream_url},
        }
        for section, value in overrides.items():
            if isinstance(value, dict) and isinstance(values.get(section), dict):
                values[section] = {**values[section], **value}
            else:
                values[section] = value
        return Settings.model_validate(values)

    def env(self, settings: Settings) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
        env.update(
            PYTHONPATH=str(ROOT),
            COLUMNS="200",
            MARKETBOT_DATABASE_URL=settings.database_url,
            MARKETBOT_CONSOLE="false",
            MARKETBOT_YAHOO__BASE_URL=str(settings.yahoo.base_url),
            MARKETBOT_YAHOO__STREAM_URL=settings.yahoo.stream_url,
            MARKETBOT_SLACK__API_URL=str(settings.slack.api_url),
            MARKETBOT_DISCORD__API_URL=str(settings.discord.api_url),
            MARKETBOT_DISCORD__GATEWAY_URL=str(settings.discord.gateway_url),
        )
        for name, secret in (
            ("MARKETBOT_SLACK__BOT_TOKEN", settings.slack.bot_token),
            ("MARKETBOT_SLACK__APP_TOKEN", settings.slack.app_token),
            ("MARKETBOT_DISCORD__TOKEN", settings.discord.token),
        ):
            if secret is not None:
                env[name] = secret.get_secret_value()
        return env


@pytest.fixture
async def world(tmp_path: Path, fake_yahoo: FakeYahoo) -> AsyncIterator[World]:
    fake_yahoo.set_quote("SPY", price=600.0, previous_close=598.0)
    db_url = f"sqlite:///{tmp_path / 'doctor.db'}"
    store = SqlStore(db_url)
    store.upgrade()
    store.close()
    streamer = FakeStreamer()
    stream_url = await streamer.start()
    try:
        async with FakeSlack() as slack, FakeDiscord() as discord_fake:
            yield World(slack, discord_fake, fake_yahoo, stream_url, db_url)
    finally:
        await streamer.stop()


def _by_check(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.area, f.check): f for f in findings}


def _failures(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {key: f for key, f in _by_check(findings).items() if f.failed}


async def test_all_green_against_the_fakes(world: World) -> None:
    findings = await run_checks(world.settings())
    assert _failures(findings) == {}
    found = _by_check(findings)
    assert found["destinations", "broken"].status == "pass"
    passed = {key for key, f in found.items() if f.status == "pass"}
    assert {
        ("database", "reachable"),
        ("database", "migrations"),
        ("slack", "auth.test"),
        ("slack", "scopes"),
        ("slack", "socket mode"),
        ("discord", "token"),
        ("discord", "intents"),
        ("discord", "servers"),
        ("yahoo", "rest"),
        ("yahoo", "stream"),
    } <= passed
    assert world.slack.calls("auth.test")
    assert world.discord.calls("GET", r"/users/@me/guilds")
    assert world.yahoo.counts["quote"] >= 1


async def test_bad_tokens(world: World) -> None:
    settings = world.settings(
        slack={"bot_token": "xoxb-wrong", "app_token": "xapp-wrong"},
        discord={"token": "wrong-token"},
    )
    failed = _failures(await run_checks(settings))
    assert "invalid_auth" in failed["slack", "auth.test"].detail
    assert "MARKETBOT_SLACK__BOT_TOKEN" in failed["slack", "auth.test"].fix
    assert "401" in failed["discord", "token"].detail
    assert "Reset Token" in failed["discord", "token"].fix


async def test_wrong_app_token_for_socket_mode(world: World) -> None:
    failed = _failures(await run_checks(world.settings(slack={"app_token": "xapp-other"})))
    assert set(failed) == {("slack", "socket mode")}
    assert "connections:write" in failed["slack", "socket mode"].fix


async def test_missing_scope(world: World) -> None:
    world.slack.scopes = tuple(s for s in BOT_SCOPES if s != "files:write")
    failed = _failures(await run_checks(world.settings()))
    assert set(failed) == {("slack", "scopes")}
    assert failed["slack", "scopes"].detail == "missing: files:write"
    assert "reinstall" in failed["slack", "scopes"].fix


async def test_bot_in_no_discord_server(world: World) -> None:
    world.discord.guilds_joined = False
    failed = _failures(await run_checks(world.settings()))
    assert set(failed) == {("discord", "servers")}
    assert f"discord-invite {world.discord.application_id}" in failed["discord", "servers"].fix


async def test_privileged_intent_not_enabled(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    import discord

    from bot import doctor

    def wants_message_content() -> discord.Intents:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.message_content = True
        return intents

    # Our own seam (which intents the bot asks for), not a library internal.
    monkeypatch.setattr("bot.discord.app.bot_intents", wants_message_content)
    failed = _failures(await doctor.check_discord(world.settings().discord))
    assert set(failed) == {("discord", "intents")}
    assert "Message Content" in failed["discord", "intents"].detail


async def test_everything_unreachable(world: World, tmp_path: Path) -> None:
    settings = world.settings(
        database_url="postgresql+psycopg://bot:pw@127.0.0.1:9/marketbot",
        slack={"api_url": CLOSED + "/api/"},
        discord={"api_url": CLOSED + "/api/v10"},
        yahoo={"base_url": CLOSED, "stream_url": "ws://127.0.0.1:9/"},
    )
    failed = _failures(await run_checks(settings))
    assert "unreachable at postgresql+psycopg://bot:***@127.0.0.1:9/marketbot" in (
        failed["database", "reachable"].detail
    )
    assert "Slack unreachable" in failed["slack", "auth.test"].detail
    assert "Discord unreachable" in failed["discord", "token"].detail
    assert "no SPY quote" in failed["yahoo", "rest"].detail
    assert "cannot open ws://127.0.0.1:9/" in failed["yahoo", "stream"].detail
    assert all(f.fix for f in failed.values())


async def test_unmigrated_and_missing_database(world: World, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    SqlStore(f"sqlite:///{empty}").current_revision()  # a file with no tables
    failed = _failures(await run_checks(world.settings(database_url=f"sqlite:///{empty}")))
    assert set(failed) == {("database", "migrations")}
    assert failed["database", "migrations"].detail == "not migrated (no marketbot tables)"
    assert "marketbot db upgrade" in failed["database", "migrations"].fix
    missing = tmp_path / "nothing-here.db"
    failed = _failures(await run_checks(world.settings(database_url=f"sqlite:///{missing}")))
    assert "no database file" in failed["database", "reachable"].detail
    assert not missing.exists()  # the doctor created nothing


async def test_broken_destination_is_listed(world: World) -> None:
    from tests.test_store import T0, _alert, _claim, _new_groups, _record

    store = SqlStore(world.db_url)
    try:
        _record(store, [], [_alert("gone", channel="slack:C0GONE")], _new_groups)
        [head] = _claim(store)
        store.mark_broken(head, "channel_not_found", T0)
    finally:
        store.close()
    failed = _failures(await run_checks(world.settings()))
    assert set(failed) == {("destinations", "slack:C0GONE")}
    assert "channel_not_found" in failed["destinations", "slack:C0GONE"].detail
    assert "invite the bot" in failed["destinations", "slack:C0GONE"].fix
    # Shown in the display zone (MARKETBOT_TIMEZONE, New York here), as replies are.
    since = T0.astimezone(ZoneInfo("America/New_York"))
    expected = f"refused since {since:%Y-%m-%d %H:%M} {since.tzname()}"
    assert expected in failed["destinations", "slack:C0GONE"].detail


def test_incomplete_configuration() -> None:
    socket_without_app_token = Settings.model_validate({"slack": {"bot_token": "xoxb-1"}})
    [_, problem] = check_configuration(socket_without_app_token)
    assert problem.failed
    assert "MARKETBOT_SLACK__APP_TOKEN" in problem.detail
    http_without_secret = Settings.model_validate(
        {"slack": {"bot_token": "xoxb-1", "mode": "http"}}
    )
    assert "SIGNING_SECRET" in check_configuration(http_without_secret)[1].detail
    swapped = Settings.model_validate({"slack": {"bot_token": "xapp-1", "app_token": "xoxb-1"}})
    problems = [f.check for f in check_configuration(swapped) if f.failed]
    assert problems == ["slack bot token", "slack app token"]


async def _doctor(world: World, settings: Settings) -> tuple[int, str, str]:
    """`marketbot doctor` as typed, run in a worker thread (it has its own event loop) while
    the fakes keep answering on this one."""
    from typer.testing import CliRunner

    from bot.cli import app

    env = {k: v for k, v in world.env(settings).items() if k.startswith(("MARKETBOT_", "COLUMNS"))}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["doctor"], env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_cli_exit_code_and_table(world: World) -> None:
    code, out, err = await _doctor(world, world.settings())
    print(out)  # the table as printed (pytest -s shows it)
    assert code == 0, out + err
    assert "marketbot doctor" in out
    assert "FAIL" not in out
    assert "all checks passed" in out
    world.slack.scopes = ("commands", "chat:write")
    code, out, err = await _doctor(world, world.settings(discord={"token": "wrong-token"}))
    print(out)
    assert code == 1, out + err
    assert out.count("FAIL") == 2
    assert "missing: chat:write.public, files:write" in " ".join(out.split())
    assert "2 checks failed" in out
    assert err == ""


async def test_a_yahoo_that_answers_without_the_probe_symbol_is_not_a_network_fault(
    world: World,
) -> None:
    # The README's fake started without --quote SPY: the fix is the fake's quotes, not the
    # firewall.
    with FakeYahoo() as bare:
        settings = world.settings(yahoo={"base_url": bare.base_url})
        failed = _failures(await run_checks(settings))
    fix = failed["yahoo", "rest"].fix
    assert "--quote SPY=" in fix
    assert "allow HTTPS" not in fix
