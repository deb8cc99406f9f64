"""`marketbot discord-invite`: the OAuth2 URL with exactly the needed scopes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from bot.discord.invite import invite_url


def test_discord_invite_has_exactly_the_needed_scopes() -> None:
    url = urlparse(invite_url("123456789012345678"))
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("https", "discord.com", "/oauth2/authorize")
    assert query["client_id"] == ["123456789012345678"]
    assert query["scope"][0].split() == ["bot", "applications.commands"]
    permissions = int(query["permissions"][0])
    assert permissions & (1 << 11)  # Send Messages
    assert permissions & (1 << 14)  # Embed Links
    assert not permissions & (1 << 3)  # never Administrator
    assert not permissions & (1 << 17)  # never Mention Everyone


def test_discord_invite_refuses_a_non_numeric_id() -> None:
    with pytest.raises(ValueError, match="numeric"):
        invite_url("my-bot")
