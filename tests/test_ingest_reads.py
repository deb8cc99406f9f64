"""Ingest reads what it decides from in few statements, however many channels a storm reaches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from alerts.models import Alert, AlertKind, GroupAction, GroupDecision, Mute, Severity
from bot.store import SqlStore

T0 = datetime(2025, 1, 27, 9, 1, tzinfo=UTC)
CHANNELS = [f"console:c{n:02d}" for n in range(20)]


def _alert(key: str, channel: str, symbol: str) -> Alert:
    return Alert(
        key=key,
        channel=channel,
        kind=AlertKind.FIRING,
        symbol=symbol,
        at=T0,
        severity=Severity.CRITICAL,
        watch_id=1,
        rule_text="drop 10%",
        price=88.0,
        reference_price=100.0,
        change_pct=-12.0,
    )


def _statements(store: SqlStore) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    return seen


def test_the_open_groups_of_many_channels_are_one_read_each_kind(
    sqlite_store: SqlStore,
) -> None:
    alerts = [
        _alert(f"{channel}/{symbol}", channel, symbol)
        for channel in CHANNELS
        for symbol in ("NVDA", "AMD")
    ]
    decisions = [
        GroupDecision(channel, GroupAction.NEW, (f"{channel}/NVDA", f"{channel}/AMD"), T0)
        for channel in CHANNELS
    ]
    sqlite_store.record_evaluation([], alerts, now=T0, decisions=decisions)
    sqlite_store.add_mute(Mute(CHANNELS[0], "NVDA", until=T0, created_at=T0))
    sqlite_store.save_basket(CHANNELS[1], "chips", ["NVDA", "AMD"], now=T0)

    seen = _statements(sqlite_store)
    mutes, baskets, groups = sqlite_store.decision_inputs(CHANNELS)
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    # Mutes, baskets, the groups, their members: not one read of members per channel.
    assert len(reads) == 4, reads
    assert [m.channel for m in mutes] == [CHANNELS[0]]
    assert baskets == {CHANNELS[1]: {"chips": ("NVDA", "AMD")}}
    assert sorted(groups) == CHANNELS
    for channel in CHANNELS:
        assert groups[channel].member_keys == (f"{channel}/NVDA", f"{channel}/AMD")
    # The same answer as the reads one by one.
    assert groups == sqlite_store.open_groups(CHANNELS)
