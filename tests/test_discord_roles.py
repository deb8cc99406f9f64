"""The Discord adapter decides which stored role settings become role pings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bot.discord.roles import role_pings
from bot.store import SqlStore

NOW = datetime(2025, 1, 27, 9, tzinfo=UTC)


def test_only_discord_channels_with_a_role_id_ping(sqlite_store: SqlStore) -> None:
    for channel, role in [
        ("discord:1", "123456789012"),
        ("discord:2", None),
        ("discord:3", "traders"),
        ("slack:C1", "123456789012"),
    ]:
        sqlite_store.update_channel_settings(
            channel, lambda s, role=role: replace(s, ping_role=role), NOW
        )
    sqlite_store.update_channel_settings("discord:4", lambda s: replace(s, resolved=True), NOW)
    assert role_pings(sqlite_store) == {"discord:1": 123456789012}
