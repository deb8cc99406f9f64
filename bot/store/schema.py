"""The database tables, as SQLAlchemy 2.0 declarative models (Alembic migrations mirror them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite drops the zone, so it is put back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class ChannelRow(Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(
        String(200), primary_key=True
    )  # "slack:C123", "console:default"
    platform: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The channel's delivery lane: paced or waiting out a Retry-After until this time.
    deliver_after: Mapped[datetime | None]
    # A permanent refusal (channel gone, bot removed): set until a send works again.
    broken_since: Mapped[datetime | None]
    broken_error: Mapped[str | None] = mapped_column(Text)
    broken_failures: Mapped[int] = mapped_column(default=0, server_default="0")


class WatchRow(Base):
    __tablename__ = "watches"
    __table_args__ = (UniqueConstraint("channel_id", "target", "rule_text"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(64))
    rule_text: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class BasketRow(Base):
    __tablename__ = "baskets"

    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbols: Mapped[dict[str, Any]] = mapped_column()  # {"symbols": [...]}: JSON object on every DB


class MuteRow(Base):
    __tablename__ = "mutes"

    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    until: Mapped[datetime]
    created_at: Mapped[datetime]


class RuleStateRow(Base):
    __tablename__ = "rule_states"

    watch_id: Mapped[int] = mapped_column(
        ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime]


class AlertGroupRow(Base):
    """One chat message: the alerts in it, and where it was posted so it can be edited."""

    __tablename__ = "alert_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    message_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_alert_groups_channel_opened", "channel_id", "opened_at"),)


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)  # refuses a second copy
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    symbol: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column()
    group_id: Mapped[int | None] = mapped_column(ForeignKey("alert_groups.id", ondelete="SET NULL"))
    muted: Mapped[bool] = mapped_column(default=False)  # tracked but not sent
    summarized: Mapped[bool] = mapped_column(default=False)  # counted in an after-mute summary
    # Set when a message that showed this alert was accepted by its platform.
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_alerts_channel_at", "channel_id", "at"),
        Index("ix_alerts_group", "group_id"),
    )


class OutboxRow(Base):
    """A delivery still owed to a platform: post a group's message, or edit it in place.

    ``pending`` -> claimed into ``sending`` with a lease (owner, expiry) -> ``sent``; or
    ``dead`` (refused), ``dropped`` (its destination is broken). One lane per channel: only
    the oldest open row of a channel is ever claimed, so messages keep their order.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    # NULL for a notice (a digest, a mute summary): it shows no alert group.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("alert_groups.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(10))  # "post" | "update" | "digest" | "summary"
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    # The alert ids the first send of a post showed: what a reconciled post was. For a mute
    # summary: the muted alerts it tells of.
    shown_alert_ids: Mapped[list[int] | None] = mapped_column(JSON)
    # Migration 0005: what a notice shows, until when it is worth posting, what was posted.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_outbox_status_not_before", "status", "not_before"),
        Index("ix_outbox_channel_status_id", "channel_id", "status", "id"),
        # Migration 0004: claims look only at open rows; confirms read a group's rows.
        Index(
            "ix_outbox_open_channel_id",
            "channel_id",
            "id",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        Index("ix_outbox_group", "group_id"),
    )
