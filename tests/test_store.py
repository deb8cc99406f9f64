"""The SQLAlchemy store: migrations, watches, idempotent alert recording and the outbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from alerts.models import (
    Alert,
    AlertKind,
    GroupAction,
    GroupDecision,
    Mute,
    OpenGroup,
    Severity,
)
from bot.store import Delivery, SqlStore

T0 = datetime(2025, 1, 27, 9, 1, tzinfo=UTC)


def _alert(key: str, symbol: str = "NVDA", channel: str = "console:default") -> Alert:
    return Alert(
        key=key,
        channel=channel,
        kind=AlertKind.FIRING,
        symbol=symbol,
        at=T0,
        severity=Severity.CRITICAL,
        watch_id=1,
        rule_text="drop 10%",
        price=124.0,
        reference_price=142.62,
        change_pct=-13.05,
    )


def _new_groups(
    open_groups: Mapping[str, OpenGroup], alerts: Sequence[Alert]
) -> list[GroupDecision]:
    by_channel: dict[str, list[str]] = {}
    for alert in alerts:
        by_channel.setdefault(alert.channel, []).append(alert.key)
    return [
        GroupDecision(channel=c, action=GroupAction.NEW, alert_keys=tuple(k), not_before=T0)
        for c, k in by_channel.items()
    ]


def _join_open(
    open_groups: Mapping[str, OpenGroup], alerts: Sequence[Alert]
) -> list[GroupDecision]:
    decisions = []
    for alert in alerts:
        group = open_groups.get(alert.channel)
        if group is None:
            decisions.append(
                GroupDecision(alert.channel, GroupAction.NEW, (alert.key,), not_before=T0)
            )
        else:
            decisions.append(
                GroupDecision(
                    alert.channel,
                    GroupAction.JOIN,
                    (alert.key,),
                    not_before=T0,
                    group_id=group.group_id,
                )
            )
    return decisions


Planner = Callable[[Mapping[str, OpenGroup], Sequence[Alert]], list[GroupDecision]]


def _record(
    store: SqlStore,
    states: Sequence[tuple[int, str, dict[str, Any]]],
    alerts: Sequence[Alert],
    planner: Planner,
    muted: frozenset[str] = frozenset(),
) -> list[Alert]:
    """Decide groups as the pipeline does (before the write), then hand the store the data."""
    unmuted = [a for a in alerts if a.key not in muted]
    decisions = planner(store.open_groups({a.channel for a in unmuted}), unmuted)
    return store.record_evaluation(states, alerts, now=T0, decisions=decisions, muted_keys=muted)


def _alembic_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "bot:migrations")
    return ScriptDirectory.from_config(config).get_current_head()


OWNER = "test-worker"
LEASE = timedelta(seconds=30)


def _claim(store: SqlStore, at: datetime = T0) -> list[Delivery]:
    return store.claim(OWNER, at, LEASE)


def test_migrations_create_every_table_on_a_fresh_sqlite(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert store.current_revision() is None
    store.upgrade()
    store.upgrade()  # a second upgrade is a no-op, as at every start
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "channels",
        "watches",
        "baskets",
        "mutes",
        "rule_states",
        "alerts",
        "alert_groups",
        "outbox",
        "news_items",
        "alembic_version",
    } <= tables
    assert store.current_revision() == _alembic_head()
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    store.close()


def test_watches_are_added_once_listed_and_removed(store: SqlStore) -> None:
    watch, created = store.add_watch("slack:C1", "NVDA", "drop 10%", now=T0, created_by="U1")
    again, created_again = store.add_watch("slack:C1", "NVDA", "drop 10%", now=T0)
    store.add_watch("slack:C1", "NVDA", "above 150", now=T0)
    store.add_watch("slack:C2", "AMD", "drop 5%", now=T0, note="earnings soon")
    assert created
    assert not created_again
    assert again.id == watch.id
    assert [w.rule_text for w in store.list_watches("slack:C1")] == ["drop 10%", "above 150"]
    assert store.list_watches("slack:C2")[0].note == "earnings soon"
    assert store.list_watches("slack:C1")[0].created_at == T0

    removed = store.remove_watches("slack:C1", "NVDA", "above 150")
    assert [w.rule_text for w in removed] == ["above 150"]
    assert store.remove_watches("slack:C1", None, None)[0].target == "NVDA"
    assert store.list_watches("slack:C1") == []
    assert len(store.list_watches()) == 1


def test_baskets_and_mutes(store: SqlStore) -> None:
    store.save_basket("slack:C1", "ai", ["NVDA", "AMD"], now=T0)
    store.save_basket("slack:C1", "ai", ["NVDA", "AMD", "AVGO"], now=T0)
    assert store.list_baskets("slack:C1") == {"ai": ("NVDA", "AMD", "AVGO")}
    assert store.all_baskets() == {"slack:C1": {"ai": ("NVDA", "AMD", "AVGO")}}
    assert store.delete_basket("slack:C1", "ai")
    assert not store.delete_basket("slack:C1", "ai")

    store.add_mute(Mute("slack:C1", "NVDA", until=T0 + timedelta(hours=2), created_at=T0))
    assert [m.scope for m in store.active_mutes("slack:C1", T0 + timedelta(hours=1))] == ["NVDA"]
    assert store.active_mutes("slack:C1", T0 + timedelta(hours=3)) == []
    assert store.remove_mutes("slack:C1", None) == 1


def test_a_recorded_alert_is_never_recorded_or_queued_twice(store: SqlStore) -> None:
    watch, _ = store.add_watch("console:default", "NVDA", "drop 10%", now=T0)
    states = [(watch.id, "NVDA", {"status": "firing"})]
    fresh = _record(store, states, [_alert("k1")], _new_groups)
    repeat = _record(store, states, [_alert("k1")], _new_groups)
    assert [a.key for a in fresh] == ["k1"]
    assert repeat == []
    assert store.outbox_counts() == {"pending": 1}
    assert store.load_states() == [(watch.id, "NVDA", {"status": "firing"})]
    assert store.recent_alerts("console:default", 5)[0] == _alert("k1")


def test_state_of_a_removed_watch_is_not_written(store: SqlStore) -> None:
    watch, _ = store.add_watch("console:default", "NVDA", "drop 10%", now=T0)
    store.remove_watches("console:default", "NVDA", None)
    _record(store, [(watch.id, "NVDA", {"s": 1})], [], _new_groups)
    assert store.load_states() == []


def test_outbox_delivers_then_edits_the_same_message(store: SqlStore) -> None:
    _record(store, [], [_alert("a1")], _join_open)
    [post] = _claim(store)
    assert post.message_id is None
    assert [a.key for a in post.alerts] == ["a1"]
    assert _claim(store) == []  # claimed: nobody else takes it

    # A second name joins while the post is in flight: it gets its own edit, after the post.
    _record(store, [], [_alert("a2", "AVGO")], _join_open)
    assert _claim(store) == []  # the lane's head is still in flight
    store.confirm(post, "m-1", T0)
    [edit] = _claim(store)
    assert edit.message_id == "m-1"
    assert [a.key for a in edit.alerts] == ["a1", "a2"]
    store.confirm(edit, "m-1", T0)
    assert store.undelivered_alerts() == []

    # A name joining before its post is claimed rides along in that post.
    _record(store, [], [_alert("b1", "AMD", channel="slack:C2")], _join_open)
    _record(store, [], [_alert("b2", "MU", channel="slack:C2")], _join_open)
    [post2] = _claim(store)
    assert [a.key for a in post2.alerts] == ["b1", "b2"]
    store.confirm(post2, "m-2", T0)
    assert store.outbox_counts() == {"sent": 3}
    assert store.group_message_ids("console:default") == ["m-1"]


def test_a_join_in_flight_is_not_marked_sent_by_the_post_that_did_not_show_it(
    store: SqlStore,
) -> None:
    _record(store, [], [_alert("a1")], _join_open)
    [post] = _claim(store)
    _record(store, [], [_alert("a2", "AVGO")], _join_open)  # joins while the post is out
    store.confirm(post, "m-1", T0)
    assert [a.key for a in store.undelivered_alerts()] == ["a2"]


def test_failed_delivery_waits_then_retries_and_a_refused_one_is_kept_dead(
    store: SqlStore,
) -> None:
    _record(store, [], [_alert("b1")], _new_groups)
    [delivery] = _claim(store)
    store.retry_later(delivery, "HTTP 500", retry_at=T0 + timedelta(seconds=4))
    assert _claim(store, T0 + timedelta(seconds=3)) == []
    [retry] = _claim(store, T0 + timedelta(seconds=4))
    assert retry.attempts == 2
    store.give_up(retry, "msg_too_long")
    assert _claim(store, T0 + timedelta(days=1)) == []
    assert store.outbox_counts() == {"dead": 1}


def test_an_expired_lease_is_handed_over_for_reconciliation(store: SqlStore) -> None:
    _record(store, [], [_alert("l1")], _new_groups)
    [first] = _claim(store)
    assert not first.reconcile
    assert _claim(store, T0 + LEASE - timedelta(seconds=1)) == []  # still leased
    [again] = _claim(store, T0 + LEASE)
    assert again.reconcile
    assert again.idempotency_key == first.idempotency_key
    assert again.alert_ids == first.alert_ids


def test_each_channel_is_a_lane_served_in_order(store: SqlStore) -> None:
    for n in range(3):
        _record(store, [], [_alert(f"x{n}", f"S{n}", channel="slack:C1")], _new_groups)
    _record(store, [], [_alert("y0", "Y", channel="slack:C2")], _new_groups)
    heads = _claim(store)
    assert sorted(d.channel for d in heads) == ["slack:C1", "slack:C2"]
    c1 = next(d for d in heads if d.channel == "slack:C1")
    assert [a.key for a in c1.alerts] == ["x0"]
    store.confirm(c1, "m1", T0, pace_until=T0 + timedelta(seconds=1))
    assert store.claim(OWNER, T0, LEASE, channel="slack:C1") == []  # paced
    [nxt] = store.claim(OWNER, T0 + timedelta(seconds=1), LEASE, channel="slack:C1")
    assert [a.key for a in nxt.alerts] == ["x1"]


def test_many_lanes_are_not_starved_by_a_full_one(store: SqlStore) -> None:
    for n in range(60):
        _record(store, [], [_alert(f"d{n}", f"S{n}", channel="slack:DEAD")], _new_groups)
    _record(store, [], [_alert("ok", channel="slack:OK")], _new_groups)
    assert {d.channel for d in store.claim(OWNER, T0, LEASE, limit=2)} == {
        "slack:DEAD",
        "slack:OK",
    }


def test_a_broken_destination_drops_its_queue_and_is_listed(store: SqlStore) -> None:
    for n in range(3):
        _record(store, [], [_alert(f"z{n}", f"S{n}", channel="slack:GONE")], _new_groups)
    [head] = _claim(store)
    assert store.mark_broken(head, "channel_not_found", T0) == (True, 3)
    [broken] = store.broken_destinations()
    assert broken.channel == "slack:GONE"
    assert broken.error == "channel_not_found"
    assert broken.retry_at is not None
    assert broken.retry_at > T0
    _record(store, [], [_alert("z9", "NEW", channel="slack:GONE")], _new_groups)
    assert _claim(store) == []  # backing off
    [probe] = _claim(store, broken.retry_at)
    assert store.confirm(probe, "m-9", broken.retry_at)  # it was broken; it works again
    assert store.broken_destinations() == []


def test_not_before_holds_a_group_back(store: SqlStore) -> None:
    def later(open_groups: Mapping[str, OpenGroup], alerts: Sequence[Alert]) -> list[GroupDecision]:
        return [
            GroupDecision(
                "console:default",
                GroupAction.NEW,
                tuple(a.key for a in alerts),
                not_before=T0 + timedelta(seconds=2),
            )
        ]

    _record(store, [], [_alert("c1")], later)
    assert _claim(store, T0 + timedelta(seconds=1)) == []
    assert store.next_due_at(T0) == T0 + timedelta(seconds=2)
    assert len(_claim(store, T0 + timedelta(seconds=2))) == 1


def test_muted_alerts_are_stored_not_queued_and_summarised_once(store: SqlStore) -> None:
    _record(store, [], [_alert("m1"), _alert("m2", "AMD")], _new_groups, muted=frozenset({"m1"}))
    [delivery] = _claim(store)
    assert [a.symbol for a in delivery.alerts] == ["AMD"]
    missed = store.muted_alerts("console:default", lambda alert: True)
    assert [a.key for a in missed] == ["m1"]
    assert store.muted_alerts("console:default", lambda alert: alert.symbol == "AMD") == []
    store.mark_summarized(["m1"])
    assert store.muted_alerts("console:default", lambda alert: True) == []


def test_state_survives_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    first = SqlStore(url)
    first.upgrade()
    watch, _ = first.add_watch("console:default", "NVDA", "drop 10%", now=T0)
    _record(
        first, [(watch.id, "NVDA", {"status": "firing", "tier": 1})], [_alert("r1")], _new_groups
    )
    first.close()
    second = SqlStore(url)
    second.upgrade()
    assert second.load_states() == [(watch.id, "NVDA", {"status": "firing", "tier": 1})]
    assert _record(second, [], [_alert("r1")], _new_groups) == []
    second.close()


def test_commands_racing_on_a_new_channel_all_succeed(store: SqlStore) -> None:
    """Three slash commands at once to a channel never seen: each creates the channel row if
    it is missing, and the ones that lose the race must not fail on the winner's row."""
    import threading

    now = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
    errors: list[BaseException] = []
    for round_number in range(15):
        channel = f"slack:CRACE{round_number:02d}"
        start = threading.Barrier(6)

        def watch(symbol: str, channel: str = channel, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                store.add_watch(channel, symbol, "drop 5%", now=now)
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [threading.Thread(target=watch, args=(f"S{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(store.list_watches()) == 15 * 6


@pytest.mark.postgres
def test_postgres_sessions_end_a_transaction_left_idle_and_detect_a_dead_host(
    postgres_store: SqlStore,
) -> None:
    """A process frozen mid-transaction would hold the rows it locked from the process that
    took over; the server ends such a session (and a dead host's) by these settings."""
    with postgres_store.engine.connect() as conn:
        shown = {
            name: conn.execute(text(f"SHOW {name}")).scalar()
            for name in ("idle_in_transaction_session_timeout", "tcp_keepalives_idle")
        }
    assert shown == {"idle_in_transaction_session_timeout": "30s", "tcp_keepalives_idle": "10"}
    # An operator's own options in the URL are kept as they are.
    own = SqlStore(f"{postgres_store.url}?options=-c%20statement_timeout%3D5000")
    try:
        with own.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "5s"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "0"
    finally:
        own.close()
