"""The SQLAlchemy store: watches, rule states, alerts and the outbox, on SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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


def _platform_of(channel: str) -> str:
    return channel.split(":", 1)[0]


class SqlStore(OutboxQueue):
    """One store per process. Every method is one short transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, echo=echo, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
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
        with self._tx() as session:
            query = select(WatchRow).order_by(WatchRow.id)
            if channel is not None:
                query = query.where(WatchRow.channel_id == channel)
            return [_watch(row) for row in session.scalars(query)]

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
        with self._tx() as session:
            rows = session.scalars(
                select(BasketRow).where(BasketRow.channel_id == channel).order_by(BasketRow.name)
            )
            return {row.name: tuple(row.symbols["symbols"]) for row in rows}

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
        with self._tx() as session:
            return set(session.scalars(select(AlertRow.key).where(AlertRow.key.in_(wanted))))

    def decision_inputs(
        self, channels: Iterable[str]
    ) -> tuple[list[Mute], dict[str, dict[str, tuple[str, ...]]], dict[str, OpenGroup]]:
        """What muting and grouping decide from, in one read: every mute, every channel's
        baskets, and the open group of each of ``channels``."""
        wanted = set(channels)
        with self._tx() as session:
            mutes = [_mute(row) for row in session.scalars(select(MuteRow))]
            baskets: dict[str, dict[str, tuple[str, ...]]] = {}
            for row in session.scalars(select(BasketRow)):
                baskets.setdefault(row.channel_id, {})[row.name] = tuple(row.symbols["symbols"])
            groups = self._open_groups(session, wanted) if wanted else {}
        return mutes, baskets, groups

    def open_groups(self, channels: Iterable[str]) -> dict[str, OpenGroup]:
        """Each channel's most recent message group, which new alerts may join."""
        wanted = set(channels)
        if not wanted:
            return {}
        with self._tx() as session:
            return self._open_groups(session, wanted)

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
        """
        # No autoflush: rows are added in bulk and flushed once; a storm writes thousands.
        with self._tx() as session, session.no_autoflush:
            known_watches = set(
                session.scalars(
                    select(WatchRow.id).where(WatchRow.id.in_({w for w, _, _ in states}))
                )
            )
            saved = {
                (row.watch_id, row.symbol): row
                for row in session.scalars(
                    select(RuleStateRow).where(RuleStateRow.watch_id.in_(known_watches))
                )
            }
            for watch_id, symbol, data in states:
                if watch_id not in known_watches:
                    continue  # the watch was removed while this evaluation ran
                state_row = saved.get((watch_id, symbol))
                if state_row is None:
                    saved[(watch_id, symbol)] = state_row = RuleStateRow(
                        watch_id=watch_id, symbol=symbol, data=data, updated_at=now
                    )
                    session.add(state_row)
                else:
                    state_row.data = data
                    state_row.updated_at = now

            keys = [alert.key for alert in alerts]
            seen = set(session.scalars(select(AlertRow.key).where(AlertRow.key.in_(keys))))
            wanted_channels = {alert.channel for alert in alerts if alert.key not in seen}
            if wanted_channels:
                have = set(
                    session.scalars(select(ChannelRow.id).where(ChannelRow.id.in_(wanted_channels)))
                )
                for channel in sorted(wanted_channels - have):
                    session.add(
                        ChannelRow(id=channel, platform=_platform_of(channel), created_at=now)
                    )
                session.flush()
            fresh: list[Alert] = []
            rows_by_key: dict[str, AlertRow] = {}
            for alert in alerts:
                if alert.key in seen:
                    continue
                seen.add(alert.key)
                row = AlertRow(
                    key=alert.key,
                    channel_id=alert.channel,
                    kind=alert.kind.value,
                    symbol=alert.symbol,
                    at=alert.at,
                    data=alert_to_record(alert),
                    muted=alert.key in muted_keys,
                    summarized=False,
                )
                session.add(row)
                rows_by_key[alert.key] = row
                fresh.append(alert)
            session.flush()

            applicable: list[GroupDecision] = []
            for decision in decisions:
                # A decision may name an alert another writer stored first: skip that one.
                mine = tuple(k for k in decision.alert_keys if k in rows_by_key)
                if mine and not rows_by_key[mine[0]].muted:
                    applicable.append(replace(decision, alert_keys=mine))
            if applicable:
                self._apply_group_decisions(session, applicable, rows_by_key, now)
            return fresh

    def _open_groups(self, session: Session, channels: set[str]) -> dict[str, OpenGroup]:
        latest = (
            select(AlertGroupRow.channel_id, func.max(AlertGroupRow.id).label("gid"))
            .where(AlertGroupRow.channel_id.in_(channels))
            .group_by(AlertGroupRow.channel_id)
            .subquery()
        )
        found = list(
            session.scalars(select(AlertGroupRow).join(latest, AlertGroupRow.id == latest.c.gid))
        )
        # Every group's members in one read: a storm asks for a thousand channels at once.
        members: dict[int, list[str]] = {group.id: [] for group in found}
        if members:
            for group_id, key in session.execute(
                select(AlertRow.group_id, AlertRow.key)
                .where(AlertRow.group_id.in_(list(members)))
                .order_by(AlertRow.id)
            ):
                if group_id is not None:  # the IN above: never None, but typed as nullable
                    members[group_id].append(key)
        return {
            group.channel_id: OpenGroup(
                group_id=group.id,
                channel=group.channel_id,
                opened_at=group.opened_at,
                updated_at=group.updated_at,
                member_keys=tuple(members[group.id]),
            )
            for group in found
        }

    def _apply_group_decisions(
        self,
        session: Session,
        decisions: Sequence[GroupDecision],
        rows_by_key: Mapping[str, AlertRow],
        now: datetime,
    ) -> None:
        """Groups, memberships and outbox rows for the decisions, with one flush for all."""
        joined_ids = {
            d.group_id for d in decisions if d.action is GroupAction.JOIN and d.group_id is not None
        }
        existing = {
            g.id: g
            for g in session.scalars(select(AlertGroupRow).where(AlertGroupRow.id.in_(joined_ids)))
        }
        # A row of a group not yet claimed renders the members when it is claimed, so it will
        # show the new ones; a row in flight ("sending") will not: they get their own edit.
        waiting = set(
            session.scalars(
                select(OutboxRow.group_id).where(
                    OutboxRow.group_id.in_(joined_ids), OutboxRow.status == "pending"
                )
            )
        )
        planned: list[tuple[GroupDecision, AlertGroupRow, str]] = []
        for decision in decisions:
            group = existing.get(decision.group_id) if decision.group_id is not None else None
            if decision.action is GroupAction.JOIN and group is not None:
                planned.append((decision, group, "update"))
                continue
            group = AlertGroupRow(channel_id=decision.channel, opened_at=now, updated_at=now)
            session.add(group)
            planned.append((decision, group, "post"))
        session.flush()  # the new groups' ids
        for decision, group, action in planned:
            group.updated_at = now
            for key in decision.alert_keys:
                rows_by_key[key].group_id = group.id
            if action == "update" and group.id in waiting:
                continue
            session.add(
                OutboxRow(
                    channel_id=decision.channel,
                    group_id=group.id,
                    action=action,
                    status="pending",
                    attempts=0,
                    not_before=decision.not_before,
                    created_at=now,
                )
            )

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
