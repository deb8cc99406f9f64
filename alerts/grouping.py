"""Grouping: decide, per channel, whether new alerts start a message or join the open one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.models import Alert, GroupAction, GroupDecision, OpenGroup


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """``group_wait``: a new message waits this long for names crossing together.
    ``group_interval``: alerts within this long of a group's opening join it (edit in place).
    ``max_members``: a group this full starts a new message instead (messages stay readable).
    """

    group_wait: timedelta = timedelta(seconds=2)
    group_interval: timedelta = timedelta(seconds=60)
    max_members: int = 40


def decide_groups(
    open_groups: Mapping[str, OpenGroup],
    alerts: Sequence[Alert],
    now: datetime,
    config: GroupingConfig,
) -> list[GroupDecision]:
    """One decision per channel that has new alerts; nothing for alerts already in the group.

    The first alert of a storm opens a NEW group that goes out at ``now + group_wait``.
    Alerts within ``group_interval`` of the open group's ``opened_at`` JOIN it: delivery edits
    the message (or, before it was sent, simply includes them). Later alerts open a NEW group.
    Every alert given lands in exactly one decision unless it is already a member.
    """
    by_channel: dict[str, list[str]] = {}
    for alert in alerts:
        keys = by_channel.setdefault(alert.channel, [])
        if alert.key not in keys:
            keys.append(alert.key)
    decisions: list[GroupDecision] = []
    for channel, keys in by_channel.items():
        group = open_groups.get(channel)
        if group is not None and group.channel == channel:
            members = set(group.member_keys)
            new_keys = [k for k in keys if k not in members]
            if not new_keys:
                continue  # nothing new: stay silent
            within = now - group.opened_at < config.group_interval
            room = len(members) + len(new_keys) <= config.max_members
            if within and room:
                decisions.append(
                    GroupDecision(
                        channel=channel,
                        action=GroupAction.JOIN,
                        alert_keys=tuple(new_keys),
                        # Still inside the wait: ride along with the first send, not before.
                        not_before=max(now, group.opened_at + config.group_wait),
                        group_id=group.group_id,
                    )
                )
                continue
            keys = new_keys
        decisions.append(
            GroupDecision(
                channel=channel,
                action=GroupAction.NEW,
                alert_keys=tuple(keys),
                not_before=now + config.group_wait,
            )
        )
    return decisions
