"""The outbox as a queue: claim rows under a lease, confirm, retry, reconcile, broken lanes.

Each channel is a lane: only its oldest open row (``pending`` or ``sending``) may be claimed,
so its messages go out in order and one at a time, while every other lane goes on. A claim
moves a row to ``sending`` with a lease (owner token, expiry). A lease that expired means the
process died, or the send's outcome is unknown (connection reset): the next claim hands the
row over marked ``reconcile``, and delivery checks the platform before sending again.

On PostgreSQL the claim is ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of worker
processes share the queue; on SQLite one process writes (the claim's update is conditional,
so a second writer could never take a row twice).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerts.channel_settings import ChannelSettings, merged
from alerts.models import Alert, AlertMessage, Mute
from bot.store.codec import alert_from_record, message_from_record, message_to_record
from bot.store.schema import AlertGroupRow, AlertRow, ChannelRow, MuteRow, OutboxRow

log = logging.getLogger(__name__)

OPEN = ("pending", "sending")
MAX_BROKEN_BACKOFF = timedelta(hours=1)
FIRST_BROKEN_BACKOFF = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed outbox row, with the alerts this attempt shows."""

    outbox_id: int
    channel: str
    group_id: int | None  # None for a notice (a digest, a mute summary)
    message_id: str | None  # set once the group's message exists: then this is an edit
    alerts: tuple[Alert, ...]
    alert_ids: tuple[int, ...]  # the stored ids of ``alerts``: what an accepted render covers
    attempts: int
    lease_token: str = ""
    lease_expires_at: datetime | None = None  # as claimed (renewals move it later)
    # The lease of an earlier attempt expired: that attempt may have reached the platform.
    reconcile: bool = False
    # When that lease ran out with its attempt never heard of again (its process died or
    # stalled): the request may still be on its way to the platform. None when the attempt
    # reported back (a reset, a timeout: over, outcome unknown).
    lapsed_at: datetime | None = None
    # The newest message of the channel recorded before this row's turn: any earlier attempt
    # of this post came after it, so a reconcile searches no further back.
    after_message_id: str | None = None
    # The row's action: "post" or "update" of an alert group, or a notice ("digest",
    # "summary") whose composed message is ``notice``.
    kind: str = "post"
    notice: AlertMessage | None = None

    @property
    def idempotency_key(self) -> str:
        # Discord nonces are at most 25 characters.
        if self.group_id is None:
            return f"mb-n{self.outbox_id}"
        return f"mb-{self.group_id}-{self.outbox_id}"


@dataclass(frozen=True, slots=True)
class BrokenDestination:
    """A channel that refused delivery for good (gone, archived, bot removed)."""

    channel: str
    since: datetime
    error: str
    failures: int
    retry_at: datetime | None  # when a new alert to it is tried again


class _HasSessions(Protocol):
    engine: Engine

    def _tx(self) -> AbstractContextManager[Session]: ...

    def _ensure_channel(self, session: Session, channel: str, now: datetime) -> None: ...


# -- statements -----------------------------------------------------------------------------
# Delivery runs these for every message. They are Core statements on the tables, built once
# with named parameters: no unit of work, no identity map, no per-call construction, and each
# call finds its compiled form in SQLAlchemy's cache. (As ORM statements they were most of a
# storm's CPU per message.)
_o: Table = OutboxRow.__table__  # type: ignore[assignment]
_ch: Table = ChannelRow.__table__  # type: ignore[assignment]
_g: Table = AlertGroupRow.__table__  # type: ignore[assignment]
_a: Table = AlertRow.__table__  # type: ignore[assignment]
_open = _o.c.status.in_(OPEN)
_unleased = {"lease_owner": None, "lease_expires_at": None}


_DUE = or_(
    and_(_o.c.status == "pending", _o.c.not_before <= bindparam("p_now")),
    and_(_o.c.status == "sending", _o.c.lease_expires_at <= bindparam("p_now")),
)
_CLAIMED_COLUMNS = (
    _o.c.id,
    _o.c.channel_id,
    _o.c.group_id,
    _o.c.action,
    _o.c.attempts,
    _o.c.shown_alert_ids,
    _o.c.payload,
    _o.c.expires_at,
)
# Conditional: on SQLite (no row locks) a row someone else claimed is left alone.
_TAKE = (
    update(_o)
    .where(_o.c.id.in_(bindparam("p_ids", expanding=True)), _DUE)
    .values(
        status="sending",
        lease_owner=bindparam("p_token"),
        lease_expires_at=bindparam("p_until"),
        attempts=_o.c.attempts + 1,
    )
)
_TAKE_RETURNING = _TAKE.returning(*_CLAIMED_COLUMNS)
_TAKEN = select(*_CLAIMED_COLUMNS).where(_o.c.lease_owner == bindparam("p_token"))
# Each claimed group with its members (none: the group shows nothing), oldest member first.
_MEMBERS = (
    select(_g.c.id, _g.c.message_id, _a.c.id, _a.c.data, _a.c.delivered_at)
    .select_from(_g.outerjoin(_a, _a.c.group_id == _g.c.id))
    .where(_g.c.id.in_(bindparam("p_groups", expanding=True)))
    .order_by(_g.c.id, _a.c.id)
)
_SHOWS = update(_o).where(_o.c.id == bindparam("p_id")).values(shown_alert_ids=bindparam("p_shown"))
_EXPIRED = update(_o).where(_o.c.id == bindparam("p_id")).values(status="expired", **_unleased)
_DEAD = (
    update(_o)
    .where(_o.c.id == bindparam("p_id"))
    .values(status="dead", last_error=bindparam("p_error"), **_unleased)
)
_COVERED = (
    update(_o)
    .where(_o.c.id == bindparam("p_id"))
    .values(status="sent", sent_at=bindparam("p_now"), **_unleased)
)
_RENEW = (
    update(_o)
    .where(
        _o.c.id == bindparam("p_id"),
        _o.c.status == "sending",
        _o.c.lease_owner == bindparam("p_token"),
    )
    .values(lease_expires_at=bindparam("p_until"))
)
# Confirm: the row is sent (a row whose lease passed on to another claim is recorded all the
# same, with a warning: the platform took this attempt's message).
_SENT_VALUES = {"status": "sent", "sent_at": bindparam("p_now"), "message_id": bindparam("p_mid")}
_SENT = (
    update(_o)
    .where(
        _o.c.id == bindparam("p_id"),
        or_(_o.c.lease_owner.is_(None), _o.c.lease_owner == bindparam("p_token")),
    )
    .values(**_SENT_VALUES, **_unleased)
)
_SENT_ANYWAY = update(_o).where(_o.c.id == bindparam("p_id")).values(**_SENT_VALUES, **_unleased)
# A channel not marked broken is only paced; one that was is cleared (it works again).
_PACED = (
    update(_ch)
    .where(_ch.c.id == bindparam("p_channel"), _ch.c.broken_since.is_(None))
    .values(deliver_after=bindparam("p_pace"))
)
_HEALED = (
    update(_ch)
    .where(_ch.c.id == bindparam("p_channel"))
    .values(
        deliver_after=bindparam("p_pace"),
        broken_since=None,
        broken_error=None,
        broken_failures=0,
    )
)
_POSTED_AS = (
    update(_g)
    .where(
        _g.c.id == bindparam("p_group"),
        or_(_g.c.message_id.is_(None), _g.c.message_id != bindparam("p_mid")),
    )
    .values(message_id=bindparam("p_mid"))
)
_SHOWN = (
    update(_a)
    .where(_a.c.id.in_(bindparam("p_alerts", expanding=True)), _a.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("p_now"))
)
_LANE_OPEN = exists().where(_o.c.channel_id == bindparam("p_channel"), _open)
# After a confirm: members no accepted message showed yet, an open row of the group that
# will show them, and any open row of the channel at all.
_AFTER_CONFIRM = select(
    exists().where(
        _a.c.group_id == bindparam("p_group"),
        _a.c.muted.is_(False),
        _a.c.delivered_at.is_(None),
    ),
    exists().where(_o.c.group_id == bindparam("p_group"), _open),
    _LANE_OPEN,
)
_QUEUE_EDIT = _o.insert().values(
    channel_id=bindparam("p_channel"),
    group_id=bindparam("p_group"),
    action="update",
    status="pending",
    attempts=0,
    not_before=bindparam("p_now"),
    created_at=bindparam("p_now"),
)
_IS_LANE_OPEN = select(_LANE_OPEN)
_RETRY = (
    update(_o)
    .where(_o.c.id == bindparam("p_id"), _o.c.status == "sending")
    .values(
        status="pending",
        not_before=bindparam("p_at"),
        last_error=bindparam("p_error"),
        **_unleased,
    )
)
_LANE_WAITS = (
    update(_ch).where(_ch.c.id == bindparam("p_channel")).values(deliver_after=bindparam("p_at"))
)
_UNKNOWN = (
    update(_o)
    .where(_o.c.id == bindparam("p_id"), _o.c.status == "sending")
    .values(lease_expires_at=bindparam("p_at"), last_error=bindparam("p_error"), lease_owner=None)
)
_GIVE_UP = (
    update(_o)
    .where(_o.c.id == bindparam("p_id"))
    .values(status="dead", last_error=bindparam("p_error"), **_unleased)
)
_NEXT_DUE = select(
    select(func.min(_o.c.not_before))
    .where(_o.c.status == "pending", _o.c.not_before > bindparam("p_now"))
    .scalar_subquery(),
    select(func.min(_o.c.lease_expires_at))
    .where(_o.c.status == "sending", _o.c.lease_expires_at > bindparam("p_now"))
    .scalar_subquery(),
    select(func.min(_ch.c.deliver_after))
    .where(
        _ch.c.deliver_after > bindparam("p_now"),
        exists().where(_o.c.channel_id == _ch.c.id, _open),
    )
    .scalar_subquery(),
)


@lru_cache(maxsize=64)
def _heads_query(
    one_channel: bool,
    excluding: bool,
    platforms: tuple[str, ...] | None,
    other_than: tuple[str, ...],
    limit: int,
) -> Select[Any]:
    """The due head rows of lanes, as ``claim`` asks for them (one statement per shape)."""
    # A lane's head is its channel's lowest open id. Asked as "the minimum per channel"
    # (an index-only scan of ix_outbox_open_channel_id), not "no earlier open row" per
    # candidate, which probed every open row of a deep backlog on each claim.
    earlier = _o.alias("earlier")
    heads = select(func.min(earlier.c.id)).where(earlier.c.status.in_(OPEN))
    if one_channel:
        heads = heads.where(earlier.c.channel_id == bindparam("p_channel"))
    heads = heads.group_by(earlier.c.channel_id)
    paused = exists().where(_ch.c.id == _o.c.channel_id, _ch.c.deliver_after > bindparam("p_now"))
    query = select(_o.c.id, _o.c.status, _o.c.lease_owner, _o.c.lease_expires_at).where(
        _DUE, _o.c.id.in_(heads), ~paused
    )
    if one_channel:
        query = query.where(_o.c.channel_id == bindparam("p_channel"))
    if excluding:
        query = query.where(_o.c.channel_id.not_in(bindparam("p_exclude", expanding=True)))
    if platforms is not None:
        query = query.where(or_(*(_o.c.channel_id.startswith(f"{p}:") for p in platforms)))
    for name in other_than:
        query = query.where(~_o.c.channel_id.startswith(f"{name}:"))
    return query.order_by(_o.c.id).limit(limit).with_for_update(skip_locked=True, of=_o)


class OutboxQueue:
    """The delivery side of ``SqlStore``; every method is one short transaction."""

    # -- claim ----------------------------------------------------------------------------

    def claim(
        self: _HasSessions,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        channel: str | None = None,
        limit: int = 100,
        exclude: Collection[str] = (),
        platforms: Collection[str] | None = None,
        other_than: Collection[str] = (),
    ) -> list[Delivery]:
        """Claim the due head row of up to ``limit`` lanes (or of ``channel``'s lane).

        ``platforms`` (names such as "slack"): only lanes of channels on those platforms, so a
        process never claims a row it has no client for while another process has one.
        ``other_than``: only lanes of channels on none of these platforms.
        """
        for _ in range(8):  # rows found to be covered already are finished, then look again
            try:
                claimed, finished = OutboxQueue._claim_once(
                    self, owner, now, lease, channel, limit, exclude, platforms, other_than
                )
            except OperationalError as exc:  # SQLite: another writer holds the file
                log.warning("outbox claim deferred: %s", exc.orig)
                return []
            if claimed or not finished:
                return claimed
        return []

    def _claim_once(
        self: _HasSessions,
        owner: str,
        now: datetime,
        lease: timedelta,
        channel: str | None,
        limit: int,
        exclude: Collection[str],
        platforms: Collection[str] | None = None,
        other_than: Collection[str] = (),
    ) -> tuple[list[Delivery], int]:
        if platforms is not None and not platforms:
            return [], 0
        query = _heads_query(
            channel is not None,
            bool(exclude),
            tuple(sorted(platforms)) if platforms is not None else None,
            tuple(sorted(other_than)),
            limit,
        )
        params: dict[str, Any] = {"p_now": now}
        if channel is not None:
            params["p_channel"] = channel
        if exclude:
            params["p_exclude"] = list(exclude)
        token = f"{owner}/{uuid.uuid4().hex[:8]}"
        until = now + lease
        with self.engine.begin() as conn:
            before = {row[0]: row for row in conn.execute(query, params)}
            if not before:
                return [], 0
            take = {"p_ids": list(before), "p_now": now, "p_token": token, "p_until": until}
            if conn.dialect.update_returning:
                rows = sorted(conn.execute(_TAKE_RETURNING, take), key=lambda r: r[0])
            else:
                conn.execute(_TAKE, take)
                rows = sorted(conn.execute(_TAKEN, {"p_token": token}), key=lambda r: r[0])
            group_ids = {row.group_id for row in rows if row.group_id is not None}
            groups: dict[int, str | None] = {}
            members: dict[int, list[tuple[int, dict[str, Any], datetime | None]]] = {}
            if group_ids:
                for gid, message_id, alert_id, data, delivered_at in conn.execute(
                    _MEMBERS, {"p_groups": list(group_ids)}
                ):
                    groups[gid] = message_id
                    shown_by = members.setdefault(gid, [])
                    if alert_id is not None:
                        shown_by.append((alert_id, data, delivered_at))
            deliveries: list[Delivery] = []
            shows: list[dict[str, Any]] = []
            finished = 0
            for row in rows:
                status, earlier_owner, earlier_expiry = before[row.id][1:4]
                reconcile = status == "sending"
                lapsed_at = after = None
                if reconcile:
                    if earlier_owner is not None and earlier_expiry is not None:
                        lapsed_at = _aware(earlier_expiry)
                    after = _newest_message_before(conn, row.channel_id, row.group_id, row.id)
                if row.group_id is None:
                    if row.expires_at is not None and _aware(row.expires_at) <= now:
                        # A digest whose window passed (the channel was down all along).
                        conn.execute(_EXPIRED, {"p_id": row.id})
                        finished += 1
                        continue
                    deliveries.append(
                        Delivery(
                            outbox_id=row.id,
                            channel=row.channel_id,
                            group_id=None,
                            message_id=None,
                            alerts=(),
                            alert_ids=(),
                            attempts=row.attempts,
                            lease_token=token,
                            lease_expires_at=until,
                            reconcile=reconcile,
                            lapsed_at=lapsed_at,
                            after_message_id=after,
                            kind=row.action,
                            notice=message_from_record((row.payload or {})["message"]),
                        )
                    )
                    continue
                shown = members.get(row.group_id, [])
                if row.group_id not in groups or not shown:
                    conn.execute(
                        _DEAD, {"p_id": row.id, "p_error": "its group has no alerts to show"}
                    )
                    finished += 1
                    continue
                message_id = groups[row.group_id]
                if reconcile and message_id is None and row.shown_alert_ids:
                    # The earlier attempt of this post may be on the platform: show exactly
                    # what it showed, so the platform's copy and our record agree.
                    earlier_ids = set(row.shown_alert_ids)
                    shown = [m for m in shown if m[0] in earlier_ids] or shown
                elif message_id is not None and all(m[2] is not None for m in shown):
                    # An edit with nothing new to show: an accepted message covers it all.
                    conn.execute(_COVERED, {"p_id": row.id, "p_now": now})
                    finished += 1
                    continue
                else:
                    shows.append({"p_id": row.id, "p_shown": [m[0] for m in shown]})
                deliveries.append(
                    Delivery(
                        outbox_id=row.id,
                        channel=row.channel_id,
                        group_id=row.group_id,
                        message_id=message_id,
                        alerts=tuple(alert_from_record(m[1]) for m in shown),
                        alert_ids=tuple(m[0] for m in shown),
                        attempts=row.attempts,
                        lease_token=token,
                        lease_expires_at=until,
                        reconcile=reconcile,
                        lapsed_at=lapsed_at,
                        after_message_id=after,
                        kind=row.action,
                    )
                )
            if shows:
                conn.execute(_SHOWS, shows)
            return deliveries, finished

    def renew(self: _HasSessions, delivery: Delivery, until: datetime) -> bool:
        """A send still in progress keeps its lease (a slow platform is not a dead worker).

        False if the row is no longer this claim's (its lease ran out and another took it).
        """
        with self.engine.begin() as conn:
            result = conn.execute(
                _RENEW,
                {"p_id": delivery.outbox_id, "p_token": delivery.lease_token, "p_until": until},
            )
            return bool(result.rowcount)

    def renew_many(self: _HasSessions, deliveries: Sequence[Delivery], until: datetime) -> set[int]:
        """``renew`` for many claims in one statement; the ids still theirs (renewed)."""
        if not deliveries:
            return set()
        by_token: dict[str, list[int]] = {}
        for delivery in deliveries:
            by_token.setdefault(delivery.lease_token, []).append(delivery.outbox_id)
        with self._tx() as session:
            return set(
                session.scalars(
                    update(OutboxRow)
                    .where(
                        OutboxRow.status == "sending",
                        or_(
                            *(
                                and_(OutboxRow.lease_owner == token, OutboxRow.id.in_(ids))
                                for token, ids in by_token.items()
                            )
                        ),
                    )
                    .values(lease_expires_at=until)
                    .returning(OutboxRow.id)
                    .execution_options(synchronize_session=False)
                )
            )

    def expire_leases(self: _HasSessions, now: datetime) -> int:
        """Every lease ends by now (a single-writer start: whoever held them is gone).

        A lease that ran out earlier keeps its time: it says when its holder went quiet.
        """
        with self._tx() as session:
            result = session.execute(
                update(OutboxRow)
                .where(OutboxRow.status == "sending", OutboxRow.lease_expires_at > now)
                .values(lease_expires_at=now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def end_leases(self: _HasSessions, owner: str, now: datetime) -> int:
        """A stopping process's claims end now, not when their leases would have run out.

        The rows stay ``sending``: a request of theirs may have reached the platform before
        the stop cut it, so the next claim reconciles (after the in-flight grace) instead of
        sending blind. On PostgreSQL the other processes are woken to take them.
        """
        with self._tx() as session:
            result = session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.status == "sending",
                    OutboxRow.lease_owner.startswith(f"{owner}/", autoescape=True),
                    OutboxRow.lease_expires_at > now,
                )
                .values(lease_expires_at=now)
            )
            ended = int(result.rowcount)  # type: ignore[attr-defined]
            if ended and session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_notify("marketbot_outbox", "")))
            return ended

    # -- notices --------------------------------------------------------------------------

    def queue_digest(
        self: _HasSessions,
        message: AlertMessage,
        *,
        day: date | None,
        now: datetime,
        expires_at: datetime,
    ) -> bool:
        """Queue the channel's daily digest for ``day`` unless the channel says it was queued.

        The channel's ``digest_sent`` day commits with the row: a crash leaves both or
        neither, so a digest is neither lost nor queued twice. With ``day`` None (``/digest``
        asked for now) the day is neither read nor marked: an on-demand digest must not
        stand in for the scheduled one.
        """
        with self._tx() as session:
            # FOR UPDATE (PostgreSQL): two processes that both think they lead (a deposed
            # leader that has not noticed yet) queue one digest: the second reads the day's
            # marker only once the first committed it.
            lane = session.get(ChannelRow, message.channel, with_for_update=day is not None)
            if lane is None and day is None:
                # ``/digest`` is the first thing anyone typed here: the channel is new to the
                # store, so it gets its row (and its lane) as a command would give it.
                self._ensure_channel(session, message.channel, now)
            elif lane is None:
                return False
            if day is not None and lane is not None:
                settings, _ = ChannelSettings.from_stored(lane.settings)
                if settings.digest_sent == day:
                    return False
                lane.settings = merged(lane.settings, replace(settings, digest_sent=day))
            session.add(_notice_row(message, "digest", now, expires_at=expires_at))
            return True

    def queue_summary(
        self: _HasSessions,
        mute: Mute,
        message: AlertMessage | None,
        keys: Sequence[str],
        now: datetime,
    ) -> bool:
        """An ended mute: its summary queued (if any), its alerts summarised, the mute gone.

        One transaction: the summary is queued exactly once, however the process stops.
        """
        with self._tx() as session:
            if message is not None:
                session.add(_notice_row(message, "summary", now))
            if keys:
                session.execute(
                    update(AlertRow).where(AlertRow.key.in_(list(keys))).values(summarized=True)
                )
            session.execute(
                delete(MuteRow).where(
                    MuteRow.channel_id == mute.channel, MuteRow.scope == mute.scope
                )
            )
            return message is not None

    # -- outcomes -------------------------------------------------------------------------

    def confirm(
        self: _HasSessions,
        delivery: Delivery,
        message_id: str,
        now: datetime,
        *,
        pace_until: datetime | None = None,
    ) -> bool:
        """The platform accepted a message showing ``delivery.alert_ids``; record it.

        Marks exactly those alerts delivered. Members that joined while the message was in
        flight are still undelivered: an edit is queued for them. Returns whether the channel
        was broken before (it works again now).
        """
        return OutboxQueue.confirm_and_look(self, delivery, message_id, now, pace_until=pace_until)[
            0
        ]

    def confirm_and_look(
        self: _HasSessions,
        delivery: Delivery,
        message_id: str,
        now: datetime,
        *,
        pace_until: datetime | None = None,
    ) -> tuple[bool, bool]:
        """``confirm``, and in the same transaction whether the channel's lane still has a
        row to deliver (due or not): (was broken, lane open)."""
        with self.engine.begin() as conn:
            sent = {
                "p_id": delivery.outbox_id,
                "p_token": delivery.lease_token,
                "p_now": now,
                "p_mid": message_id,
            }
            if not conn.execute(_SENT, sent).rowcount and conn.execute(_SENT_ANYWAY, sent).rowcount:
                log.warning("outbox row %s confirmed after its lease passed on", delivery.outbox_id)
            lane = {"p_channel": delivery.channel, "p_pace": pace_until}
            was_broken = False
            if not conn.execute(_PACED, lane).rowcount:
                # Not there, or marked broken: a send works again.
                was_broken = bool(conn.execute(_HEALED, lane).rowcount)
            if delivery.group_id is None:
                return was_broken, bool(conn.scalar(_IS_LANE_OPEN, {"p_channel": delivery.channel}))
            group = {"p_group": delivery.group_id, "p_mid": message_id}
            conn.execute(_POSTED_AS, group)
            if delivery.alert_ids:
                conn.execute(_SHOWN, {"p_alerts": list(delivery.alert_ids), "p_now": now})
            left, waiting, lane_open = conn.execute(
                _AFTER_CONFIRM, {"p_group": delivery.group_id, "p_channel": delivery.channel}
            ).one()
            if left and not waiting:
                conn.execute(
                    _QUEUE_EDIT,
                    {"p_channel": delivery.channel, "p_group": delivery.group_id, "p_now": now},
                )
                lane_open = True
            return was_broken, bool(lane_open)

    def retry_later(
        self: _HasSessions, delivery: Delivery, error: str, *, retry_at: datetime
    ) -> None:
        """The platform did not take it (429, 5xx): the whole lane waits until ``retry_at``."""
        with self.engine.begin() as conn:
            retried = conn.execute(
                _RETRY, {"p_id": delivery.outbox_id, "p_at": retry_at, "p_error": error[:2000]}
            )
            if retried.rowcount:
                conn.execute(_LANE_WAITS, {"p_channel": delivery.channel, "p_at": retry_at})

    def outcome_unknown(
        self: _HasSessions, delivery: Delivery, error: str, *, reconcile_at: datetime
    ) -> None:
        """The request may have reached the platform (reset, timeout): reconcile, not resend.

        The row keeps its ``sending`` state; its lease ends at ``reconcile_at``, when the
        next claim hands it over marked for reconciliation. The owner is cleared: this
        attempt is over, nothing of it can still be on its way.
        """
        with self.engine.begin() as conn:
            conn.execute(
                _UNKNOWN,
                {"p_id": delivery.outbox_id, "p_at": reconcile_at, "p_error": error[:2000]},
            )

    def give_up(self: _HasSessions, delivery: Delivery, error: str) -> None:
        """A refusal no retry can fix for this message (too long, invalid): kept as dead."""
        with self.engine.begin() as conn:
            conn.execute(_GIVE_UP, {"p_id": delivery.outbox_id, "p_error": error[:2000]})

    def repost(self: _HasSessions, delivery: Delivery, error: str, now: datetime) -> None:
        """The message to edit is gone (deleted by someone): post the group anew."""
        with self._tx() as session:
            group = (
                session.get(AlertGroupRow, delivery.group_id)
                if delivery.group_id is not None
                else None
            )
            if group is not None:
                group.message_id = None
            row = session.get(OutboxRow, delivery.outbox_id)
            if row is not None:
                row.status, row.not_before, row.last_error = "pending", now, error[:2000]
                row.lease_owner, row.lease_expires_at = None, None
                row.shown_alert_ids = None

    def mark_broken(
        self: _HasSessions, delivery: Delivery, error: str, now: datetime
    ) -> tuple[bool, int]:
        """The destination refused for good: drop its open rows, pause the lane, back off.

        Nothing piles up behind a dead channel. A later alert to it is tried after the
        backoff (5 min, doubling to 1 h); the first send that works clears the mark.
        Returns (newly broken, rows dropped).
        """
        with self._tx() as session:
            lane = session.get(ChannelRow, delivery.channel)
            newly = lane is None or lane.broken_since is None
            failures = 1 if lane is None else lane.broken_failures + 1
            backoff = min(MAX_BROKEN_BACKOFF, FIRST_BROKEN_BACKOFF * 2 ** (failures - 1))
            if lane is not None:
                lane.broken_since = lane.broken_since or now
                lane.broken_error = error[:2000]
                lane.broken_failures = failures
                lane.deliver_after = now + backoff
            result = session.execute(
                update(OutboxRow)
                .where(OutboxRow.channel_id == delivery.channel, OutboxRow.status.in_(OPEN))
                .values(
                    status="dropped",
                    last_error=error[:2000],
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            return newly, int(result.rowcount)  # type: ignore[attr-defined]

    # -- reads ----------------------------------------------------------------------------

    def lane_open(self: _HasSessions, channel: str) -> bool:
        """Whether ``channel`` has any row still to deliver (due or not).

        One indexed probe: a lane that has just emptied its channel ends on it instead of
        running a whole claim to find nothing (a storm empties a thousand lanes at once).
        """
        with self.engine.begin() as conn:
            return bool(conn.scalar(_IS_LANE_OPEN, {"p_channel": channel}))

    def next_due_at(self: _HasSessions, now: datetime) -> datetime | None:
        """The earliest future moment a row may become claimable (for the dispatcher's sleep)."""
        with self.engine.begin() as conn:
            times = conn.execute(_NEXT_DUE, {"p_now": now}).one()
        found = [_aware(t) for t in times if t is not None]
        return min(found) if found else None

    def broken_destinations(self: _HasSessions) -> list[BrokenDestination]:
        """Channels marked broken, oldest first (``marketbot doctor`` lists them)."""
        with self._tx() as session:
            return [
                BrokenDestination(
                    channel=row.id,
                    since=row.broken_since,
                    error=row.broken_error or "",
                    failures=row.broken_failures,
                    retry_at=row.deliver_after,
                )
                for row in session.scalars(
                    select(ChannelRow)
                    .where(ChannelRow.broken_since.is_not(None))
                    .order_by(ChannelRow.broken_since, ChannelRow.id)
                )
                if row.broken_since is not None
            ]

    def undelivered_alerts(self: _HasSessions, channel: str | None = None) -> list[Alert]:
        """Unmuted alerts no accepted message has shown yet (tests, doctor)."""
        with self._tx() as session:
            query = select(AlertRow).where(
                AlertRow.muted.is_(False), AlertRow.delivered_at.is_(None)
            )
            if channel is not None:
                query = query.where(AlertRow.channel_id == channel)
            return [alert_from_record(r.data) for r in session.scalars(query.order_by(AlertRow.id))]


def _newest_message_before(
    conn: Connection, channel: str, group_id: int | None, outbox_id: int
) -> str | None:
    """The newest message id recorded in the row's channel other than its own: any attempt
    of the row came after it (a lane sends one row at a time, in order)."""
    found = [
        conn.scalar(
            select(func.max(_g.c.message_id)).where(
                _g.c.channel_id == channel,
                _g.c.id != group_id if group_id is not None else true(),
            )
        ),
        conn.scalar(
            select(func.max(_o.c.message_id)).where(
                _o.c.channel_id == channel, _o.c.id != outbox_id
            )
        ),
    ]
    known = [m for m in found if m is not None]
    # Ids of one platform have one width (Slack ts "1737968700.000123"): text order is age.
    return max(known, key=lambda m: (len(m), m)) if known else None


def _notice_row(
    message: AlertMessage, action: str, now: datetime, *, expires_at: datetime | None = None
) -> OutboxRow:
    return OutboxRow(
        channel_id=message.channel,
        group_id=None,
        action=action,
        status="pending",
        attempts=0,
        not_before=now,
        created_at=now,
        payload={"message": message_to_record(message)},
        expires_at=expires_at,
    )


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
