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
from typing import Protocol

from sqlalchemy import and_, delete, exists, func, or_, select, true, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

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
    def _tx(self) -> AbstractContextManager[Session]: ...


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        and_(OutboxRow.status == "pending", OutboxRow.not_before <= now),
        and_(OutboxRow.status == "sending", OutboxRow.lease_expires_at <= now),
    )


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
    ) -> list[Delivery]:
        """Claim the due head row of up to ``limit`` lanes (or of ``channel``'s lane).

        ``platforms`` (names such as "slack"): only lanes of channels on those platforms, so a
        process never claims a row it has no client for while another process has one.
        """
        for _ in range(8):  # rows found to be covered already are finished, then look again
            try:
                claimed, finished = OutboxQueue._claim_once(
                    self, owner, now, lease, channel, limit, exclude, platforms
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
    ) -> tuple[list[Delivery], int]:
        # A lane's head is its channel's lowest open id. Asked as "the minimum per channel"
        # (an index-only scan of ix_outbox_open_channel_id), not "no earlier open row" per
        # candidate, which probed every open row of a deep backlog on each claim.
        earlier = aliased(OutboxRow)
        heads = select(func.min(earlier.id)).where(earlier.status.in_(OPEN))
        if channel is not None:
            heads = heads.where(earlier.channel_id == channel)
        heads = heads.group_by(earlier.channel_id)
        paused = exists().where(
            ChannelRow.id == OutboxRow.channel_id, ChannelRow.deliver_after > now
        )
        query = select(
            OutboxRow.id, OutboxRow.status, OutboxRow.lease_owner, OutboxRow.lease_expires_at
        ).where(_due(now), OutboxRow.id.in_(heads), ~paused)
        if channel is not None:
            query = query.where(OutboxRow.channel_id == channel)
        if exclude:
            query = query.where(OutboxRow.channel_id.not_in(list(exclude)))
        if platforms is not None:
            if not platforms:
                return [], 0
            query = query.where(or_(*(OutboxRow.channel_id.startswith(f"{p}:") for p in platforms)))
        query = (
            query.order_by(OutboxRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OutboxRow)
        )
        token = f"{owner}/{uuid.uuid4().hex[:8]}"
        with self._tx() as session:
            before = {row[0]: row for row in session.execute(query)}
            picked: dict[int, str] = {row_id: row[1] for row_id, row in before.items()}
            if not picked:
                return [], 0
            # Conditional: on SQLite (no row locks) a row someone else claimed is left alone.
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(picked)), _due(now))
                .values(
                    status="sending",
                    lease_owner=token,
                    lease_expires_at=now + lease,
                    attempts=OutboxRow.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            rows = list(
                session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.lease_owner == token)
                    .order_by(OutboxRow.id)
                    .execution_options(populate_existing=True)
                )
            )
            group_ids = {row.group_id for row in rows if row.group_id is not None}
            members = _members(session, group_ids)
            groups = {
                g.id: g
                for g in session.scalars(
                    select(AlertGroupRow).where(AlertGroupRow.id.in_(group_ids))
                )
            }
            deliveries: list[Delivery] = []
            finished = 0
            for row in rows:
                reconcile = picked[row.id] == "sending"
                lapsed_at = after = None
                if reconcile:
                    _, _, earlier_owner, earlier_expiry = before[row.id]
                    if earlier_owner is not None and earlier_expiry is not None:
                        lapsed_at = _aware(earlier_expiry)
                    after = _newest_message_before(session, row)
                if row.group_id is None:
                    if row.expires_at is not None and _aware(row.expires_at) <= now:
                        # A digest whose window passed (the channel was down all along).
                        row.status, row.lease_owner, row.lease_expires_at = "expired", None, None
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
                            lease_expires_at=now + lease,
                            reconcile=reconcile,
                            lapsed_at=lapsed_at,
                            after_message_id=after,
                            kind=row.action,
                            notice=message_from_record((row.payload or {})["message"]),
                        )
                    )
                    continue
                group = groups.get(row.group_id)
                shown = members.get(row.group_id, [])
                if group is None or not shown:
                    row.status, row.lease_owner, row.lease_expires_at = "dead", None, None
                    row.last_error = "its group has no alerts to show"
                    finished += 1
                    continue
                if reconcile and group.message_id is None and row.shown_alert_ids:
                    # The earlier attempt of this post may be on the platform: show exactly
                    # what it showed, so the platform's copy and our record agree.
                    earlier_ids = set(row.shown_alert_ids)
                    shown = [m for m in shown if m.id in earlier_ids] or shown
                elif group.message_id is not None and all(
                    m.delivered_at is not None for m in shown
                ):
                    # An edit with nothing new to show: an accepted message covers it all.
                    row.status, row.sent_at = "sent", now
                    row.lease_owner, row.lease_expires_at = None, None
                    finished += 1
                    continue
                else:
                    row.shown_alert_ids = [m.id for m in shown]
                deliveries.append(
                    Delivery(
                        outbox_id=row.id,
                        channel=row.channel_id,
                        group_id=row.group_id,
                        message_id=group.message_id,
                        alerts=tuple(alert_from_record(m.data) for m in shown),
                        alert_ids=tuple(m.id for m in shown),
                        attempts=row.attempts,
                        lease_token=token,
                        lease_expires_at=now + lease,
                        reconcile=reconcile,
                        lapsed_at=lapsed_at,
                        after_message_id=after,
                        kind=row.action,
                    )
                )
            return deliveries, finished

    def renew(self: _HasSessions, delivery: Delivery, until: datetime) -> bool:
        """A send still in progress keeps its lease (a slow platform is not a dead worker).

        False if the row is no longer this claim's (its lease ran out and another took it).
        """
        with self._tx() as session:
            result = session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id == delivery.outbox_id,
                    OutboxRow.status == "sending",
                    OutboxRow.lease_owner == delivery.lease_token,
                )
                .values(lease_expires_at=until)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

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
            lane = session.get(ChannelRow, message.channel)
            if lane is None:
                return False
            if day is not None:
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
        with self._tx() as session:
            row = session.get(OutboxRow, delivery.outbox_id)
            if row is not None:
                if row.lease_owner not in (None, delivery.lease_token):
                    log.warning("outbox row %s confirmed after its lease passed on", row.id)
                row.status, row.sent_at, row.message_id = "sent", now, message_id
                row.lease_owner, row.lease_expires_at = None, None
            lane = session.get(ChannelRow, delivery.channel)
            was_broken = False
            if lane is not None:
                was_broken = lane.broken_since is not None
                lane.deliver_after = pace_until
                lane.broken_since, lane.broken_error, lane.broken_failures = None, None, 0
            if delivery.group_id is None:
                return was_broken
            group = session.get(AlertGroupRow, delivery.group_id)
            if group is not None and group.message_id != message_id:
                group.message_id = message_id
            if delivery.alert_ids:
                session.execute(
                    update(AlertRow)
                    .where(AlertRow.id.in_(delivery.alert_ids), AlertRow.delivered_at.is_(None))
                    .values(delivered_at=now)
                )
            left = session.scalar(
                select(func.count())
                .select_from(AlertRow)
                .where(
                    AlertRow.group_id == delivery.group_id,
                    AlertRow.muted.is_(False),
                    AlertRow.delivered_at.is_(None),
                )
            )
            waiting = session.scalar(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.group_id == delivery.group_id, OutboxRow.status.in_(OPEN))
            )
            if left and not waiting:
                session.add(
                    OutboxRow(
                        channel_id=delivery.channel,
                        group_id=delivery.group_id,
                        action="update",
                        status="pending",
                        attempts=0,
                        not_before=now,
                        created_at=now,
                    )
                )
            return was_broken

    def retry_later(
        self: _HasSessions, delivery: Delivery, error: str, *, retry_at: datetime
    ) -> None:
        """The platform did not take it (429, 5xx): the whole lane waits until ``retry_at``."""
        with self._tx() as session:
            row = session.get(OutboxRow, delivery.outbox_id)
            if row is None or row.status != "sending":
                return
            row.status, row.not_before, row.last_error = "pending", retry_at, error[:2000]
            row.lease_owner, row.lease_expires_at = None, None
            lane = session.get(ChannelRow, delivery.channel)
            if lane is not None:
                lane.deliver_after = retry_at
        return

    def outcome_unknown(
        self: _HasSessions, delivery: Delivery, error: str, *, reconcile_at: datetime
    ) -> None:
        """The request may have reached the platform (reset, timeout): reconcile, not resend.

        The row keeps its ``sending`` state; its lease ends at ``reconcile_at``, when the
        next claim hands it over marked for reconciliation. The owner is cleared: this
        attempt is over, nothing of it can still be on its way.
        """
        with self._tx() as session:
            row = session.get(OutboxRow, delivery.outbox_id)
            if row is None or row.status != "sending":
                return
            row.lease_expires_at, row.last_error = reconcile_at, error[:2000]
            row.lease_owner = None

    def give_up(self: _HasSessions, delivery: Delivery, error: str) -> None:
        """A refusal no retry can fix for this message (too long, invalid): kept as dead."""
        with self._tx() as session:
            row = session.get(OutboxRow, delivery.outbox_id)
            if row is None:
                return
            row.status, row.last_error = "dead", error[:2000]
            row.lease_owner, row.lease_expires_at = None, None

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
        with self._tx() as session:
            return (
                session.scalar(
                    select(OutboxRow.id)
                    .where(OutboxRow.channel_id == channel, OutboxRow.status.in_(OPEN))
                    .limit(1)
                )
                is not None
            )

    def next_due_at(self: _HasSessions, now: datetime) -> datetime | None:
        """The earliest future moment a row may become claimable (for the dispatcher's sleep)."""
        with self._tx() as session:
            times = [
                session.scalar(
                    select(func.min(OutboxRow.not_before)).where(
                        OutboxRow.status == "pending", OutboxRow.not_before > now
                    )
                ),
                session.scalar(
                    select(func.min(OutboxRow.lease_expires_at)).where(
                        OutboxRow.status == "sending", OutboxRow.lease_expires_at > now
                    )
                ),
                session.scalar(
                    select(func.min(ChannelRow.deliver_after)).where(
                        ChannelRow.deliver_after > now,
                        exists().where(
                            OutboxRow.channel_id == ChannelRow.id, OutboxRow.status.in_(OPEN)
                        ),
                    )
                ),
            ]
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


def _newest_message_before(session: Session, row: OutboxRow) -> str | None:
    """The newest message id recorded in ``row``'s channel other than its own: any attempt
    of ``row`` came after it (a lane sends one row at a time, in order)."""
    found = [
        session.scalar(
            select(func.max(AlertGroupRow.message_id)).where(
                AlertGroupRow.channel_id == row.channel_id,
                AlertGroupRow.id != row.group_id if row.group_id is not None else true(),
            )
        ),
        session.scalar(
            select(func.max(OutboxRow.message_id)).where(
                OutboxRow.channel_id == row.channel_id, OutboxRow.id != row.id
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


def _members(session: Session, group_ids: set[int]) -> dict[int, list[AlertRow]]:
    found: dict[int, list[AlertRow]] = {}
    if not group_ids:
        return found
    for alert in session.scalars(
        select(AlertRow).where(AlertRow.group_id.in_(group_ids)).order_by(AlertRow.id)
    ):
        assert alert.group_id is not None
        found.setdefault(alert.group_id, []).append(alert)
    return found


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
