"""`marketbot slack-manifest`: the Slack app manifest (scopes, slash commands, Socket or HTTP)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from alerts.commands import COMMANDS, CommandSpec
from bot.slack.commands import CommandNameError, slack_commands

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


UMBRELLA_SUMMARY = "marketbot's every command: /marketbot watch NVDA, /marketbot help."
# Events the app subscribes to in HTTP mode: none needs a scope beyond the bot's, and both tell
# the operator in the log that the workspace removed the app.
BOT_EVENTS = ("app_uninstalled", "tokens_revoked")
MAX_APP_NAME = 35  # Slack's limit for display_information.name


def _usage_hint(spec: CommandSpec | None) -> str:
    # "/watch SYMBOL [RULE]" -> "SYMBOL [RULE]": Slack shows the hint after the command.
    if spec is None:
        return "COMMAND [ARGS] (watch NVDA, price NVDA, help)"
    _, _, rest = spec.usage.partition(" ")
    return rest[:1000]


def validate_request_url(url: str) -> str:
    """Slack only posts to public HTTPS URLs; anything else is refused, not emitted."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise CommandNameError(
            f"--http URL must be the bot's public https:// address, e.g. "
            f"https://bot.example.com/slack/events, not {url!r}"
        )
    return url


def validate_app_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_APP_NAME:
        raise CommandNameError(
            f"app name must be 1 to {MAX_APP_NAME} characters, not {len(name)}: {name!r}"
        )
    return name


def build_manifest(
    command_prefix: str = "",
    app_name: str = "marketbot",
    *,
    request_url: str | None = None,
    commands: Sequence[CommandSpec] = COMMANDS,
) -> dict[str, Any]:
    """An app manifest for "Create app from manifest".

    Without ``request_url`` the app uses Socket Mode (no public URL); with it, slash commands,
    events and interactivity are posted to that URL (HTTP mode, e.g.
    ``https://bot.example.com/slack/events``). Refuses (``CommandNameError``) a prefix, name or
    URL Slack would refuse, rather than emitting a manifest Slack rejects as a whole.
    """
    validate_app_name(app_name)
    if request_url is not None:
        validate_request_url(request_url)
    slash_commands = []
    for registered in slack_commands(command_prefix, commands):
        spec = registered.spec
        command: dict[str, Any] = {
            "command": registered.slash,
            "description": (spec.summary if spec else UMBRELLA_SUMMARY)[:2000],
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
    # The events the app listens for (uninstall, revoked tokens) arrive only if subscribed, in
    # Socket Mode as over HTTP; only HTTP mode says where to send them.
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if request_url:
        events = {"request_url": request_url, **events}
        settings["interactivity"] = {"is_enabled": True, "request_url": request_url}
    settings["event_subscriptions"] = events
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": app_name,
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
