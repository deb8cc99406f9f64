"""`marketbot slack-manifest`: the app manifest in JSON and YAML."""

from __future__ import annotations

import json

import pytest

from alerts.commands import COMMANDS
from bot.slack.manifest import build_manifest, manifest_json, manifest_yaml

EXPECTED = {
    "watch",
    "unwatch",
    "watchlist",
    "price",
    "mute",
    "unmute",
    "digest",
    "resolved",
    "pingrole",
    "alerts",
    "news",
    "basket",
    "help",
}


def test_manifest_has_every_command_with_prefix_and_socket_mode() -> None:
    manifest = build_manifest(command_prefix="mb-")
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == {f"/mb-{name}" for name in EXPECTED}
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "commands" in manifest["oauth_config"]["scopes"]["bot"]
    assert "chat:write" in manifest["oauth_config"]["scopes"]["bot"]
    assert all("url" not in c for c in manifest["features"]["slash_commands"])
    assert all(len(c["command"]) <= 32 for c in manifest["features"]["slash_commands"])


def test_http_mode_manifest_points_commands_at_the_url() -> None:
    manifest = build_manifest(request_url="https://bot.example.com/slack/events")
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert {c["url"] for c in manifest["features"]["slash_commands"]} == {
        "https://bot.example.com/slack/events"
    }


def test_json_and_yaml_forms() -> None:
    manifest = build_manifest(app_name="Market Bot")
    assert json.loads(manifest_json(manifest)) == manifest
    yaml_text = manifest_yaml(manifest)
    assert 'name: "Market Bot"' in yaml_text
    assert '- command: "/watch"' in yaml_text
    assert len([c for c in COMMANDS]) == yaml_text.count("- command:")


def test_yaml_round_trips_when_a_parser_is_available() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed")
    manifest = build_manifest(command_prefix="mb-")
    assert yaml.safe_load(manifest_yaml(manifest)) == manifest
