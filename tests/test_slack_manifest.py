"""`marketbot slack-manifest`: a manifest Slack accepts (names, reserved words), JSON and YAML."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from alerts.commands import COMMANDS
from bot.cli import app
from bot.slack.commands import CommandNameError, slack_commands, unregistered, validate_prefix
from bot.slack.manifest import build_manifest, manifest_json, manifest_yaml

# Written out here, not imported, so the test holds the code to Slack's list rather than to
# itself (shared/TESTING-OFFLINE.md): built-ins Slack refuses, names it also claims, and names
# other apps in a workspace commonly take.
SLACK_RESERVED = {
    "me", "status", "away", "dnd", "shrug", "remind", "msg", "feed", "who", "collapse", "expand",
    "leave", "join", "open", "search", "topic", "mute", "pro", "shortcuts",
    "invite", "kick", "remove", "archive", "rename", "call", "giphy",
}  # fmt: skip
GENERIC = {"help", "price", "news"}
SLACK_NAME = re.compile(r"/[a-z0-9_-]{1,31}")
PREFIXES = ["", "mb-", "x_", "team2-", "a" * 22]


def _commands(manifest: dict[str, object]) -> list[str]:
    features = manifest["features"]
    assert isinstance(features, dict)
    return [c["command"] for c in features["slash_commands"]]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_manifest_obeys_slack_name_rules_and_reserved_list(prefix: str) -> None:
    names = _commands(build_manifest(command_prefix=prefix))
    assert len(names) <= 50
    assert len(set(names)) == len(names)
    for name in names:
        assert SLACK_NAME.fullmatch(name), name
        assert len(name) <= 32
        assert name[1:] not in SLACK_RESERVED
        assert name[1:] not in GENERIC


def test_unprefixed_manifest_has_the_umbrella_and_drops_only_the_colliding_names() -> None:
    names = set(_commands(build_manifest()))
    assert "/marketbot" in names
    every = {f"/{spec.name}" for spec in COMMANDS}
    # /pingrole needs role pings, which Slack does not offer: not registered, not listed.
    assert every - names == {"/mute", "/help", "/price", "/news", "/pingrole"}
    assert unregistered("", COMMANDS) == ["price", "mute", "news", "help"]


def test_prefixed_manifest_registers_every_command() -> None:
    names = set(_commands(build_manifest(command_prefix="mb-")))
    offered = {f"/mb-{spec.name}" for spec in COMMANDS if spec.name != "pingrole"}
    assert names == {"/mb-marketbot"} | offered
    assert unregistered("mb-", COMMANDS) == []


def test_socket_mode_by_default() -> None:
    manifest = build_manifest()
    assert manifest["settings"]["socket_mode_enabled"] is True
    # The uninstall and revoked-token events the app handles are subscribed in Socket Mode too;
    # only the HTTP manifest names a request URL.
    events = manifest["settings"]["event_subscriptions"]
    assert "request_url" not in events
    assert {"app_uninstalled", "tokens_revoked"} <= set(events["bot_events"])
    assert all("url" not in c for c in manifest["features"]["slash_commands"])
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"commands", "chat:write", "files:write"} <= set(scopes)


def test_http_mode_points_commands_events_and_interactivity_at_the_url() -> None:
    url = "https://bot.example.com/slack/events"
    manifest = build_manifest(request_url=url)
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    assert {c["url"] for c in manifest["features"]["slash_commands"]} == {url}
    assert settings["event_subscriptions"]["request_url"] == url
    assert settings["event_subscriptions"]["bot_events"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": url}


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        ("BAD PREFIX!", "lowercase letters, digits"),
        ("Mb-", "lowercase letters, digits"),
        ("a" * 23, "at most 22 fit"),
        ("mb/", "lowercase letters, digits"),
    ],
)
def test_bad_prefix_is_refused_not_cut(prefix: str, says: str) -> None:
    with pytest.raises(CommandNameError, match=says):
        validate_prefix(prefix, COMMANDS)
    with pytest.raises(CommandNameError):
        slack_commands(prefix, COMMANDS)


def test_cli_refuses_bad_prefix_and_url_in_one_line() -> None:
    runner = CliRunner()
    for args in (["--prefix", "BAD PREFIX!"], ["--prefix", "a" * 40], ["--http", "http://x"]):
        result = runner.invoke(app, ["slack-manifest", *args])
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("marketbot: ")


def test_cli_prints_pure_json_and_a_note_on_stderr() -> None:
    result = CliRunner().invoke(
        app, ["slack-manifest", "--http", "https://bot.example.com/slack/events"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert "/marketbot" in _commands(manifest)
    assert "/marketbot price" in result.stderr


def test_cli_prefix_comes_from_the_bot_setting() -> None:
    result = CliRunner().invoke(
        app, ["slack-manifest"], env={"MARKETBOT_SLACK__COMMAND_PREFIX": "mb-"}
    )
    assert result.exit_code == 0, result.output
    assert "/mb-watch" in _commands(json.loads(result.stdout))


def test_json_and_yaml_forms() -> None:
    manifest = build_manifest(app_name="Market Bot")
    assert json.loads(manifest_json(manifest)) == manifest
    yaml_text = manifest_yaml(manifest)
    assert 'name: "Market Bot"' in yaml_text
    assert '- command: "/watch"' in yaml_text
    assert len(_commands(manifest)) == yaml_text.count("- command:")


def test_yaml_round_trips_when_a_parser_is_available() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed")
    manifest = build_manifest(command_prefix="mb-", request_url="https://x.example/slack/events")
    assert yaml.safe_load(manifest_yaml(manifest)) == manifest


def test_app_name_too_long_is_refused() -> None:
    with pytest.raises(CommandNameError, match="1 to 35"):
        build_manifest(app_name="m" * 36)
