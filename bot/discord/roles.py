"""Which role a Discord channel's critical alerts ping: the role the channel opted in to
with `/pingrole`. The core stores the role as an opaque per-channel setting; how a role is
written in a command (``<@&id>``), what it means, and which channels it applies to, is
Discord's business and decided here."""

from __future__ import annotations

import re
from typing import Protocol

from alerts.channel_settings import ChannelSettings
from bot.discord.platform import CHANNEL_PREFIX

# A role as a string option carries it: the mention Discord inserts when a role is picked
# after "@", or the bare id (a snowflake) copied from the role's menu.
_ROLE = re.compile(r"<@&(\d{5,25})>|(\d{5,25})")


def read_role(text: str) -> str | None:
    """The role id in what was typed for a role, or None when it names no role."""
    match = _ROLE.fullmatch(text.strip())
    return None if match is None else match.group(1) or match.group(2)


class ChannelSettingsSource(Protocol):
    def channels(self) -> list[str]: ...

    def channel_settings(self, channel: str) -> ChannelSettings: ...


def role_pings(store: ChannelSettingsSource) -> dict[str, int]:
    """Discord channel -> the role id its critical alerts ping, for channels that opted in."""
    pings: dict[str, int] = {}
    for channel in store.channels():
        if not channel.startswith(CHANNEL_PREFIX):
            continue
        role = store.channel_settings(channel).ping_role
        if role is not None and role.isdigit():
            pings[channel] = int(role)
    return pings
