"""The Discord adapter decides which stored role settings become role pings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.discord.roles import read_role, role_pings
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


@pytest.mark.parametrize(
    ("typed", "role"),
    [
        ("<@&123456789012345678>", "123456789012345678"),  # what Discord inserts for @traders
        ("123456789012345678", "123456789012345678"),  # the id, copied from the role's menu
        (" <@&98765> ", "98765"),
        ("@traders", None),  # typed without picking the role: Discord sends plain text
        ("traders", None),
        ("@everyone", None),
        ("<@123456789012>", None),  # a user, not a role
        ("<#123456789012>", None),  # a channel
        ("<@&12>", None),  # too short for a snowflake
        ("<@&123456789012> <@&987654321098>", None),
    ],
)
def test_the_adapter_reads_a_role_mention_or_id(typed: str, role: str | None) -> None:
    assert read_role(typed) == role
