"""The Discord adapter decides which stored role settings become role pings."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.discord.roles import role_pings
from bot.store import SqlStore

NOW = datetime(2025, 1, 27, 9, tzinfo=UTC)


def test_only_discord_channels_with_a_role_id_ping(sqlite_store: SqlStore) -> None:
    sqlite_store.update_channel_settings("discord:1", {"ping_role": "123456789012"}, NOW)
    sqlite_store.update_channel_settings("discord:2", {"ping_role": None}, NOW)
    sqlite_store.update_channel_settings("discord:3", {"ping_role": "traders"}, NOW)
    sqlite_store.update_channel_settings("slack:C1", {"ping_role": "123456789012"}, NOW)
    sqlite_store.update_channel_settings("discord:4", {"resolved": True}, NOW)
    assert role_pings(sqlite_store) == {"discord:1": 123456789012}
