"""`marketbot discord-invite`: the OAuth2 URL that adds the bot with exactly what it needs."""

from __future__ import annotations

from urllib.parse import urlencode

SCOPES = ("bot", "applications.commands")

# Bit values from Discord's permission table. The bot reads the channel, posts embeds and chart
# files, and reads its own history to edit grouped alerts; nothing more (no Mention Everyone:
# an opted-in role ping needs the role to be mentionable).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY


def invite_url(client_id: str) -> str:
    """``https://discord.com/oauth2/authorize?client_id=...&scope=bot+applications.commands&...``"""
    client_id = client_id.strip()
    if not client_id.isdigit():
        raise ValueError("the client id is the application's numeric id (Developer Portal)")
    query = urlencode(
        {"client_id": client_id, "scope": " ".join(SCOPES), "permissions": str(PERMISSIONS)}
    )
    return f"https://discord.com/oauth2/authorize?{query}"
