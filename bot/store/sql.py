"""The SQLAlchemy store: watches, rule states, alerts and the outbox, on SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from alerts.channel_settings import ChannelSettings, merged
from alerts.models import Alert, GroupAction, GroupDecision, Mute, OpenGroup, Watch
from bot.store.codec import alert_from_record, alert_to_record
from bot.store.outbox import OutboxQueue
from bot.store.schema import (
    AlertGroupRow,
    AlertRow,
    BasketRow,
    ChannelRow,
    MuteRow,
    OutboxRow,
    RuleStateRow,
    WatchRow,
)

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATION_LOCK = 0x6D6B7462_0000_0000  # a transaction advisory lock key: "mktb", 0

# (watch_id, symbol, JSON-safe state) as the engine hands them over.
StateRecord = tuple[int, str, dict[str, Any]]


_watches: Table = WatchRow.__table__  # type: ignore[assignment]
_baskets: Table = BasketRow.__table__  # type: ignore[assignment]
# A Watch's fields, in its order.
_ALL_WATCHES = select(
    _watches.c.id,
    _watches.c.channel_id,
    _watches.c.target,
    _watches.c.rule_text,
    _watches.c.created_at,
    _watches.c.created_by,
    _watches.c.note,
).order_by(_watches.c.id)
_CHANNEL_WATCHES = _ALL_WATCHES.where(_watches.c.channel_id == bindparam("p_channel"))
_channels: Table = ChannelRow.__table__  # type: ignore[assignment]
_mutes: Table = MuteRow.__table__  # type: ignore[assignment]
_states: Table = RuleStateRow.__table__  # type: ignore[assignment]
_groups: Table = AlertGroupRow.__table__  # type: ignore[assignment]
_alerts: Table = AlertRow.__table__  # type: ignore[assignment]
_outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
# Ingest runs these for every evaluation that crossed something: Core statements built once
# (see bot.store.outbox), not ORM units of work.
_KNOWN_KEYS = select(_alerts.c.key).where(_alerts.c.key.in_(bindparam("p_keys", expanding=True)))
_KNOWN_WATCHES = select(_watches.c.id).where(_watches.c.id.in_(bindparam("p_ids", expanding=True)))
_KNOWN_CHANNELS = select(_channels.c.id).where(
    _channels.c.id.in_(bindparam("p_ids", expanding=True))
)
_ALL_MUTES = select(_mutes.c.channel_id, _mutes.c.scope, _mutes.c.until, _mutes.c.created_at)
_ALL_BASKETS = select(_baskets.c.channel_id, _baskets.c.name, _baskets.c.symbols)
_latest = (
    select(_groups.c.channel_id, func.max(_groups.c.id).label("gid"))
    .where(_groups.c.channel_id.in_(bindparam("p_channels", expanding=True)))
    .group_by(_groups.c.channel_id)
    .subquery()
)
_LATEST_GROUPS = select(
    _groups.c.id, _groups.c.channel_id, _groups.c.opened_at, _groups.c.updated_at
).select_from(_groups.join(_latest, _groups.c.id == _latest.c.gid))
_GROUP_MEMBERS = (
    select(_alerts.c.group_id, _alerts.c.key)
    .where(_alerts.c.group_id.in_(bindparam("p_groups", expanding=True)))
    .order_by(_alerts.c.id)
)
_EXISTING_GROUPS = select(_groups.c.id).where(_groups.c.id.in_(bindparam("p_ids", expanding=True)))
_WAITING_GROUPS = select(_outbox.c.group_id).where(
    _outbox.c.group_id.in_(bindparam("p_ids", expanding=True)), _outbox.c.status == "pending"
)
# New groups' ids, in the order of their parameters (one statement for a storm's thousand).
_NEW_GROUP = insert(_groups).returning(_groups.c.id, sort_by_parameter_order=True)
_TOUCH_GROUPS = (
    update(_groups)
    .where(_groups.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(updated_at=bindparam("p_now"))
)
_CHANNEL_BASKETS = (
    select(_baskets.c.name, _baskets.c.symbols)
    .where(_baskets.c.channel_id == bindparam("p_channel"))
    .order_by(_baskets.c.name)
)


# The PostgreSQL sessions of the store's pool. A process that stops in the middle of a
# transaction keeps the rows it locked (a channel's row while it queues a digest, the rows a
# claim takes) until the server ends its session, and the process that took over waits on
# them: the server's keepalives end the session of a dead host within seconds (the kernel's
# default is two hours), and a transaction left idle this long is ended, which frees the rows
# of a process that froze mid-transaction (a suspended VM, SIGSTOP: its kernel still answers
# keepalives). The store's transactions last milliseconds.
POSTGRES_SESSION_SETTINGS = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
    "idle_in_transaction_session_timeout": "30s",
}


def _connect_args(url: str) -> dict[str, Any]:
    """psycopg's connect arguments for ``url``: the session settings above, unless the URL
    sets ``options`` itself (an operator's own choice wins)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or "options" in parsed.query:
        return {}
    return {
        "options": " ".join(
            f"-c {name}={value}" for name, value in POSTGRES_SESSION_SETTINGS.items()
        )
    }


def _platform_of(channel: str) -> str:
    return channel.split(":", 1)[0]


class SqlStore(OutboxQueue):
    """One store per process. Every method is one short transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url, echo=echo, future=True, connect_args=_connect_args(url)
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Rule states: inserted, or updated where the (watch, symbol) row exists.
        upsert = (sqlite_insert if self.engine.dialect.name == "sqlite" else postgresql_insert)(
            _states
        )
        self._save_states = upsert.on_conflict_do_update(
            index_elements=[_states.c.watch_id, _states.c.symbol],
            set_={"data": upsert.excluded.data, "updated_at": upsert.excluded.updated_at},
        )
        self._reported_settings: set[tuple[str, str]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Apply every pending Alembic migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", "bot:migrations")
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # Several processes (run, standby, workers) may start at once: one migrates,
                # the others wait here and then find the schema at head.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _ensure_channel(self, session: Session, channel: str, now: datetime) -> None:
        if session.get(ChannelRow, channel) is not None:
            return
        # Commands arrive concurrently (three slash commands to a new channel at once): the
        # row is inserted unless another transaction just did, which is not an error.
        insert = sqlite_insert if self.engine.dialect.name == "sqlite" else postgresql_insert
        session.execute(
            insert(ChannelRow)
            .values(id=channel, platform=_platform_of(channel), created_at=now)
            .on_conflict_do_nothing(index_elements=[ChannelRow.id])
        )

    # -- watches ---------------------------------------------------------------------------

    def add_watch(
        self,
        channel: str,
        target: str,
        rule_text: str,
        *,
        now: datetime,
        created_by: str | None = None,
        note: str | None = None,
    ) -> tuple[Watch, bool]:
        with self._tx() as session:
            self._ensure_channel(session, channel, now)
            existing = session.scalars(
                select(WatchRow).where(
                    WatchRow.channel_id == channel,
                    WatchRow.target == target,
                    WatchRow.rule_text == rule_text,
                )
            ).first()
            if existing is not None:
                return _watch(existing), False
            row = WatchRow(
                channel_id=channel,
                target=target,
                rule_text=rule_text,
                note=note,
                created_by=created_by,
                created_at=now,
            )
            session.add(row)
            session.flush()
            return _watch(row), True

    def remove_watches(
        self, channel: str, target: str | None, rule_text: str | None
    ) -> list[Watch]:
        with self._tx() as session:
            query = select(WatchRow).where(WatchRow.channel_id == channel)
            if target is not None:
                query = query.where(WatchRow.target == target)
            if rule_text is not None:
                query = query.where(WatchRow.rule_text == rule_text)
            rows = list(session.scalars(query))
            removed = [_watch(row) for row in rows]
            ids = [row.id for row in rows]
            if ids:
                # Explicit, because SQLite enforces ON DELETE CASCADE only with foreign keys on.
                session.execute(delete(RuleStateRow).where(RuleStateRow.watch_id.in_(ids)))
                session.execute(delete(WatchRow).where(WatchRow.id.in_(ids)))
            return removed

    def list_watches(self, channel: str | None = None) -> list[Watch]:
        # Core, not ORM: delivery reads a channel's watches for every message it renders.
        query = _CHANNEL_WATCHES if channel is not None else _ALL_WATCHES
        with self.engine.connect() as conn:
            return [Watch(*row) for row in conn.execute(query, {"p_channel": channel})]

    # -- baskets and mutes -----------------------------------------------------------------

    def save_basket(
        self, channel: str, name: str, symbols: Sequence[str], *, now: datetime
    ) -> None:
        with self._tx() as session:
            self._ensure_channel(session, channel, now)
            row = session.get(BasketRow, (channel, name))
            if row is None:
                session.add(
                    BasketRow(channel_id=channel, name=name, symbols={"symbols": list(symbols)})
                )
            else:
                row.symbols = {"symbols": list(symbols)}

    def delete_basket(self, channel: str, name: str) -> bool:
        with self._tx() as session:
            result = session.execute(
                delete(BasketRow).where(BasketRow.channel_id == channel, BasketRow.name == name)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def list_baskets(self, channel: str) -> dict[str, tuple[str, ...]]:
        # Core, not ORM: delivery reads a channel's baskets for every message it renders.
        with self.engine.connect() as conn:
            rows = conn.execute(_CHANNEL_BASKETS, {"p_channel": channel})
            return {name: tuple(symbols["symbols"]) for name, symbols in rows}

    def all_baskets(self) -> dict[str, dict[str, tuple[str, ...]]]:
        with self._tx() as session:
            result: dict[str, dict[str, tuple[str, ...]]] = {}
            for row in session.scalars(select(BasketRow)):
                result.setdefault(row.channel_id, {})[row.name] = tuple(row.symbols["symbols"])
            return result

    def add_mute(self, mute: Mute) -> None:
        with self._tx() as session:
            self._ensure_channel(session, mute.channel, mute.created_at)
            row = session.get(MuteRow, (mute.channel, mute.scope))
            if row is None:
                session.add(
                    MuteRow(
                        channel_id=mute.channel,
                        scope=mute.scope,
                        until=mute.until,
                        created_at=mute.created_at,
                    )
                )
            else:
                row.until = mute.until
                row.created_at = mute.created_at

    def remove_mutes(self, channel: str, scope: str | None) -> int:
        with self._tx() as session:
            query = delete(MuteRow).where(MuteRow.channel_id == channel)
            if scope is not None:
                query = query.where(MuteRow.scope == scope)
            return int(session.execute(query).rowcount)  # type: ignore[attr-defined]

    def active_mutes(self, channel: str, now: datetime) -> list[Mute]:
        with self._tx() as session:
            rows = session.scalars(
                select(MuteRow).where(MuteRow.channel_id == channel, MuteRow.until > now)
            )
            return [_mute(row) for row in rows]

    def all_mutes(self) -> list[Mute]:
        """Every mute, expired ones included: the pipeline summarises and clears those."""
        with self._tx() as session:
            return [_mute(row) for row in session.scalars(select(MuteRow))]

    # -- channel settings ------------------------------------------------------------------

    def channel_settings(self, channel: str) -> ChannelSettings:
        with self._tx() as session:
            row = session.get(ChannelRow, channel)
            return self._read_settings(channel, row.settings if row is not None else None)

    def update_channel_settings(
        self, channel: str, change: Callable[[ChannelSettings], ChannelSettings], now: datetime
    ) -> ChannelSettings:
        with self._tx() as session:
            self._ensure_channel(session, channel, now)
            row = session.get(ChannelRow, channel)
            assert row is not None
            settings = change(self._read_settings(channel, row.settings))
            row.settings = merged(row.settings, settings)
            return settings

    def _read_settings(self, channel: str, stored: object) -> ChannelSettings:
        settings, problems = ChannelSettings.from_stored(stored)
        for problem in problems:
            # Read on every check of the channel (each minute, for digests): say it once.
            if (channel, problem) not in self._reported_settings:
                self._reported_settings.add((channel, problem))
                log.warning("channel %s: stored %s; using the default", channel, problem)
        return settings

    def channels(self) -> list[str]:
        with self._tx() as session:
            return list(session.scalars(select(ChannelRow.id).order_by(ChannelRow.id)))

    # -- engine state and alerts -----------------------------------------------------------

    def load_states(self) -> list[StateRecord]:
        with self._tx() as session:
            return [
                (row.watch_id, row.symbol, dict(row.data))
                for row in session.scalars(select(RuleStateRow))
            ]

    def known_alert_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of these alert keys are already stored (those alerts are never queued again)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            return set(conn.scalars(_KNOWN_KEYS, {"p_keys": wanted}))

    def decision_inputs(
        self, channels: Iterable[str]
    ) -> tuple[list[Mute], dict[str, dict[str, tuple[str, ...]]], dict[str, OpenGroup]]:
        """What muting and grouping decide from, in one read: every mute, every channel's
        baskets, and the open group of each of ``channels``."""
        wanted = set(channels)
        with self.engine.connect() as conn:
            mutes = [Mute(*row) for row in conn.execute(_ALL_MUTES)]
            baskets: dict[str, dict[str, tuple[str, ...]]] = {}
            for channel, name, symbols in conn.execute(_ALL_BASKETS):
                baskets.setdefault(channel, {})[name] = tuple(symbols["symbols"])
            groups = _open_groups(conn, wanted) if wanted else {}
        return mutes, baskets, groups

    def open_groups(self, channels: Iterable[str]) -> dict[str, OpenGroup]:
        """Each channel's most recent message group, which new alerts may join."""
        wanted = set(channels)
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return _open_groups(conn, wanted)

    def record_evaluation(
        self,
        states: Sequence[StateRecord],
        alerts: Sequence[Alert],
        *,
        now: datetime,
        decisions: Sequence[GroupDecision] = (),
        muted_keys: Collection[str] = frozenset(),
    ) -> list[Alert]:
        """Persist an evaluation in one transaction: states, new alerts, groups, outbox rows.

        ``muted_keys`` and ``decisions`` were decided before the write (pure steps of the
        pipeline); the store only applies them. Alerts whose key is already stored are dropped
        here, which is what makes a replayed or restarted evaluation unable to send anything
        twice. Returns the alerts that were new.

        Core statements, each kind of row in one executemany: a storm writes thousands of
        rows, and every crossing pays this write before its message can be claimed.
        """
        with self.engine.begin() as conn:
            if states:
                known_watches = set(
                    conn.scalars(_KNOWN_WATCHES, {"p_ids": list({w for w, _, _ in states})})
                )
                # One row per (watch, symbol), the last state given winning (two evaluations
                # of one batch may both carry a rule's state). A watch removed while this
                # evaluation ran has no state to keep.
                latest = {
                    (watch_id, symbol): data
                    for watch_id, symbol, data in states
                    if watch_id in known_watches
                }
                if latest:
                    conn.execute(
                        self._save_states,
                        [
                            {"watch_id": w, "symbol": sym, "data": data, "updated_at": now}
                            for (w, sym), data in latest.items()
                        ],
                    )

            keys = [alert.key for alert in alerts]
            seen = set(conn.scalars(_KNOWN_KEYS, {"p_keys": keys})) if keys else set()
            wanted_channels = {alert.channel for alert in alerts if alert.key not in seen}
            if wanted_channels:
                have = set(conn.scalars(_KNOWN_CHANNELS, {"p_ids": list(wanted_channels)}))
                missing = sorted(wanted_channels - have)
                if missing:
                    conn.execute(
                        insert(_channels),
                        [
                            {
                                "id": channel,
                                "platform": _platform_of(channel),
                                "created_at": now,
                                "settings": {},
                            }
                            for channel in missing
                        ],
                    )
            fresh: list[Alert] = []
            new_rows: dict[str, dict[str, Any]] = {}
            for alert in alerts:
                if alert.key in seen:
                    continue
                seen.add(alert.key)
                new_rows[alert.key] = {
                    "key": alert.key,
                    "channel_id": alert.channel,
                    "kind": alert.kind.value,
                    "symbol": alert.symbol,
                    "at": alert.at,
                    "data": alert_to_record(alert),
                    "muted": alert.key in muted_keys,
                    "summarized": False,
                    "group_id": None,
                }
                fresh.append(alert)

            applicable: list[GroupDecision] = []
            for decision in decisions:
                # A decision may name an alert another writer stored first: skip that one.
                mine = tuple(k for k in decision.alert_keys if k in new_rows)
                if mine and not new_rows[mine[0]]["muted"]:
                    applicable.append(replace(decision, alert_keys=mine))
            # Groups first (an alert names its group), then the alerts, then the outbox.
            group_of, outbox_rows = (
                _apply_group_decisions(conn, applicable, now) if applicable else ({}, [])
            )
            for key, group_id in group_of.items():
                new_rows[key]["group_id"] = group_id
            if new_rows:
                conn.execute(insert(_alerts), list(new_rows.values()))
            if outbox_rows:
                conn.execute(insert(_outbox), outbox_rows)
            return fresh

    def recent_alerts(self, channel: str, limit: int) -> list[Alert]:
        with self._tx() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(AlertRow.channel_id == channel)
                .order_by(AlertRow.at.desc(), AlertRow.id.desc())
                .limit(limit)
            )
            return [alert_from_record(row.data) for row in rows]

    def muted_alerts(self, channel: str, scope_filter: Callable[[Alert], bool]) -> list[Alert]:
        """Muted alerts of a channel not yet summarised, those ``scope_filter`` picks."""
        with self._tx() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(
                    AlertRow.channel_id == channel,
                    AlertRow.muted.is_(True),
                    AlertRow.summarized.is_(False),
                )
                .order_by(AlertRow.id)
            )
            alerts = (alert_from_record(row.data) for row in rows)
            return [alert for alert in alerts if scope_filter(alert)]

    def mark_summarized(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._tx() as session:
            session.execute(update(AlertRow).where(AlertRow.key.in_(keys)).values(summarized=True))

    # -- delivery --------------------------------------------------------------------------

    def outbox_counts(self) -> dict[str, int]:
        with self._tx() as session:
            return {
                status: int(count)
                for status, count in session.execute(
                    select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
                )
            }

    def group_message_ids(self, channel: str) -> list[str | None]:
        with self._tx() as session:
            return list(
                session.scalars(
                    select(AlertGroupRow.message_id)
                    .where(AlertGroupRow.channel_id == channel)
                    .order_by(AlertGroupRow.id)
                )
            )


def _open_groups(conn: Connection, channels: set[str]) -> dict[str, OpenGroup]:
    found = list(conn.execute(_LATEST_GROUPS, {"p_channels": list(channels)}))
    # Every group's members in one read: a storm asks for a thousand channels at once.
    members: dict[int, list[str]] = {row.id: [] for row in found}
    if members:
        for group_id, key in conn.execute(_GROUP_MEMBERS, {"p_groups": list(members)}):
            members[group_id].append(key)
    return {
        row.channel_id: OpenGroup(
            group_id=row.id,
            channel=row.channel_id,
            opened_at=row.opened_at,
            updated_at=row.updated_at,
            member_keys=tuple(members[row.id]),
        )
        for row in found
    }


def _apply_group_decisions(
    conn: Connection, decisions: Sequence[GroupDecision], now: datetime
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The groups of the decisions (new ones inserted, joined ones touched), and the outbox
    rows to queue: (alert key -> group id, outbox rows)."""
    joined_ids = [
        d.group_id for d in decisions if d.action is GroupAction.JOIN and d.group_id is not None
    ]
    existing: set[int] = set()
    waiting: set[int | None] = set()
    if joined_ids:
        existing = set(conn.scalars(_EXISTING_GROUPS, {"p_ids": joined_ids}))
        # A row of a group not yet claimed renders the members when it is claimed, so it
        # will show the new ones; a row in flight ("sending") will not: they get their own
        # edit.
        waiting = set(conn.scalars(_WAITING_GROUPS, {"p_ids": joined_ids}))
    joins = [d for d in decisions if d.action is GroupAction.JOIN and d.group_id in existing]
    posts = [d for d in decisions if not (d.action is GroupAction.JOIN and d.group_id in existing)]
    new_ids: list[int] = []
    if posts:
        new_ids = list(
            conn.scalars(
                _NEW_GROUP,
                [{"channel_id": d.channel, "opened_at": now, "updated_at": now} for d in posts],
            )
        )
    if joins:
        conn.execute(_TOUCH_GROUPS, {"p_ids": [d.group_id for d in joins], "p_now": now})
    planned = dict(zip(map(id, posts), new_ids, strict=True))
    group_of: dict[str, int] = {}
    outbox: list[dict[str, Any]] = []
    for decision in decisions:
        if id(decision) in planned:
            group_id, action = planned[id(decision)], "post"
        else:
            assert decision.group_id is not None
            group_id, action = decision.group_id, "update"
        for key in decision.alert_keys:
            group_of[key] = group_id
        if action == "update" and group_id in waiting:
            continue
        outbox.append(
            {
                "channel_id": decision.channel,
                "group_id": group_id,
                "action": action,
                "status": "pending",
                "attempts": 0,
                "not_before": decision.not_before,
                "created_at": now,
            }
        )
    return group_of, outbox


def _watch(row: WatchRow) -> Watch:
    return Watch(
        id=row.id,
        channel=row.channel_id,
        target=row.target,
        rule_text=row.rule_text,
        created_at=row.created_at,
        created_by=row.created_by,
        note=row.note,
    )


def _mute(row: MuteRow) -> Mute:
    return Mute(channel=row.channel_id, scope=row.scope, until=row.until, created_at=row.created_at)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the bot and `marketbot cmd` use the file at once; the busy timeout makes a writer
    # wait for the other instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # In WAL mode NORMAL loses no committed transaction when the process is killed (only on a
    # power cut), and spares an fsync per commit: delivery confirms every message.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
