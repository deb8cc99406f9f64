"""`marketbot slack-manifest`: the Slack app manifest (scopes, slash commands, Socket Mode)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from alerts.commands import COMMANDS, CommandSpec

# What the bot does and no more: answer slash commands, post and edit alerts (also in public
# channels it was not invited to), upload charts, and read its own recent posts to find a
# message's idempotency metadata after a crash.
BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "files:write",
    "channels:history",
    "groups:history",
)


def _usage_hint(spec: CommandSpec) -> str:
    # "/watch SYMBOL [RULE]" -> "SYMBOL [RULE]": Slack shows the hint after the command.
    _, _, rest = spec.usage.partition(" ")
    return rest[:1000]


def build_manifest(
    command_prefix: str = "",
    app_name: str = "marketbot",
    *,
    request_url: str | None = None,
    commands: Sequence[CommandSpec] = COMMANDS,
) -> dict[str, Any]:
    """An app manifest for "Create app from manifest".

    Without ``request_url`` the app uses Socket Mode (no public URL); with it, slash commands
    are posted to that URL (HTTP mode, e.g. ``https://bot.example.com/slack/events``).
    """
    slash_commands = []
    for spec in commands:
        command: dict[str, Any] = {
            "command": f"/{command_prefix}{spec.name}"[:32],
            "description": spec.summary[:2000],
            "should_escape": False,
        }
        hint = _usage_hint(spec)
        if hint:
            command["usage_hint"] = hint
        if request_url:
            command["url"] = request_url
        slash_commands.append(command)
    settings: dict[str, Any] = {
        "org_deploy_enabled": False,
        "socket_mode_enabled": request_url is None,
        "token_rotation_enabled": False,
    }
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": app_name[:35],
            "description": "Market alerts: premarket moves, futures and news, grouped per channel.",
            "background_color": "#1d2b3a",
        },
        "features": {
            "bot_user": {"display_name": app_name[:80], "always_online": True},
            "slash_commands": slash_commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": settings,
    }


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False)


def manifest_yaml(manifest: dict[str, Any]) -> str:
    """YAML without a YAML library: scalars are written as JSON, which YAML reads as-is."""
    lines: list[str] = []
    _yaml(manifest, 0, lines)
    return "\n".join(lines) + "\n"


def _yaml(value: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{key}:")
                _yaml(item, indent + 1, out)
            else:
                out.append(f"{pad}{key}: {json.dumps(item, ensure_ascii=False)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                nested: list[str] = []
                _yaml(item, indent + 1, nested)
                first = nested[0].lstrip()
                out.append(f"{pad}- {first}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {json.dumps(item, ensure_ascii=False)}")
