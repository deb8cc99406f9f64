"""Grouping decisions, table-tested in the manner of Alertmanager's TestDedupStageNeedsUpdate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.grouping import GroupingConfig, decide_groups
from alerts.models import Alert, AlertKind, GroupAction, GroupDecision, OpenGroup

NOW = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)
S = timedelta(seconds=1)
CFG = GroupingConfig(group_wait=2 * S, group_interval=60 * S, max_members=5)


def alert(key: str, channel: str = "c") -> Alert:
    return Alert(key=key, channel=channel, kind=AlertKind.FIRING, symbol=key.upper(), at=NOW)


def group(opened_ago: timedelta, members: tuple[str, ...], gid: int = 7) -> OpenGroup:
    return OpenGroup(gid, "c", NOW - opened_ago, NOW - opened_ago, members)


CASES = [
    # (name, open group, new alert keys, expected (action, keys, not_before, group id) or None)
    (
        "first alert of a storm: new, after group_wait",
        None,
        ["a"],
        (GroupAction.NEW, ("a",), NOW + 2 * S, None),
    ),
    (
        "names crossing together share the new group",
        None,
        ["a", "b"],
        (GroupAction.NEW, ("a", "b"), NOW + 2 * S, None),
    ),
    (
        "within the interval: join, at once",
        group(30 * S, ("a",)),
        ["b"],
        (GroupAction.JOIN, ("b",), NOW, 7),
    ),
    (
        "still inside group_wait: join rides the first send",
        group(1 * S, ("a",)),
        ["b"],
        (GroupAction.JOIN, ("b",), NOW + 1 * S, 7),
    ),
    (
        "exactly at the interval: new",
        group(60 * S, ("a",)),
        ["b"],
        (GroupAction.NEW, ("b",), NOW + 2 * S, None),
    ),
    (
        "after the interval: new",
        group(5 * 60 * S, ("a",)),
        ["b"],
        (GroupAction.NEW, ("b",), NOW + 2 * S, None),
    ),
    ("already a member: silent", group(10 * S, ("a", "b")), ["a"], None),
    (
        "already a member among new: only the new join",
        group(10 * S, ("a",)),
        ["a", "b"],
        (GroupAction.JOIN, ("b",), NOW, 7),
    ),
    (
        "same key twice in one batch: once",
        None,
        ["a", "a"],
        (GroupAction.NEW, ("a",), NOW + 2 * S, None),
    ),
    (
        "a full group starts a new message",
        group(10 * S, ("a", "b", "c", "d")),
        ["e", "f"],
        (GroupAction.NEW, ("e", "f"), NOW + 2 * S, None),
    ),
    ("old member after the interval is not resent", group(5 * 60 * S, ("a",)), ["a"], None),
]


@pytest.mark.parametrize(
    ("open_group", "keys", "expected"),
    [pytest.param(g, k, e, id=name) for name, g, k, e in CASES],
)
def test_decide_groups(
    open_group: OpenGroup | None,
    keys: list[str],
    expected: tuple[GroupAction, tuple[str, ...], datetime, int | None] | None,
) -> None:
    open_groups = {"c": open_group} if open_group is not None else {}
    decisions = decide_groups(open_groups, [alert(k) for k in keys], NOW, CFG)
    if expected is None:
        assert decisions == []
        return
    action, alert_keys, not_before, gid = expected
    assert decisions == [GroupDecision("c", action, alert_keys, not_before, gid)]


def test_channels_are_decided_separately() -> None:
    open_groups = {"c": group(10 * S, ("a",))}
    decisions = decide_groups(open_groups, [alert("b"), alert("x", "other")], NOW, CFG)
    assert [(d.channel, d.action) for d in decisions] == [
        ("c", GroupAction.JOIN),
        ("other", GroupAction.NEW),
    ]


def test_defaults() -> None:
    cfg = GroupingConfig()
    assert cfg.group_wait == 2 * S
    assert cfg.group_interval == 60 * S


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["c", "d"])), max_size=30),
    st.none() | st.tuples(st.integers(0, 120), st.sets(st.sampled_from("abcdefgh"), max_size=6)),
)
def test_property_grouping_never_drops_an_alert(
    items: list[tuple[str, str]], existing: tuple[int, set[str]] | None
) -> None:
    open_groups: dict[str, OpenGroup] = {}
    members: set[str] = set()
    if existing is not None:
        members = {f"c:{k}" for k in existing[1]}
        open_groups["c"] = OpenGroup(1, "c", NOW - existing[0] * S, NOW, tuple(sorted(members)))
    alerts = [alert(f"{ch}:{k}", ch) for k, ch in items]
    decisions = decide_groups(open_groups, alerts, NOW, GroupingConfig())
    decided = [k for d in decisions for k in d.alert_keys]
    assert len(decided) == len(set(decided)), "an alert landed in two decisions"
    expected = {a.key for a in alerts} - members
    assert set(decided) == expected
    for d in decisions:
        assert all(k.startswith(d.channel + ":") for k in d.alert_keys)
        assert d.not_before >= NOW
