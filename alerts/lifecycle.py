"""The alert lifecycle: the per-(watch, symbol) state, its record form, and the pure
``advance(state, reading, policy) -> (state, event)`` every rule family runs through."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from alerts.models import AlertKind, MarketSession, draft_class


class RuleStatus(StrEnum):
    ARMED = "armed"  # waiting for a crossing
    PENDING = "pending"  # the condition holds but has not held for the rule's "for" duration yet
    FIRING = "firing"  # fired; waits for recovery past the hysteresis band to re-arm


def _dt(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO time, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"expected an aware ISO time, got {value!r}")
    return parsed


def _date(value: object) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO date, got {value!r}")
    return date.fromisoformat(value)


def _float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    out = float(value)
    return out if math.isfinite(out) else None


def _str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def _int(value: object, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one (watch, symbol) pair is in its alert lifecycle.

    ``episode`` names the current crossing (the ISO time it started) and goes into every
    alert key of that crossing, so a restarted engine produces the same keys and the store's
    unique index refuses the duplicates. ``reference`` is the previous close (or open) the
    episode was measured against: when it changes, a new trading day began, and the episode
    ends silently instead of counting as a recovery. A basket has no one previous close, so
    ``day`` does that job for it: the New York trading day its episode belongs to (None for
    single-symbol rules, and in records written before baskets had it). ``nodata_since`` is
    set while the symbol's data is untrustworthy; the status underneath is kept, so an outage
    neither fires nor resolves anything.
    """

    watch_id: int
    symbol: str
    status: RuleStatus = RuleStatus.ARMED
    tier: int = 0
    episode: str | None = None
    since: datetime | None = None
    reference: float | None = None
    fired_at: datetime | None = None
    last_alert_at: datetime | None = None
    repeats: int = 0
    nodata_since: datetime | None = None
    nodata_reason: str | None = None
    seen: tuple[str, ...] = ()  # news rules: keys of stories already alerted (bounded)
    day: date | None = None

    @property
    def nodata(self) -> bool:
        return self.nodata_since is not None

    def to_record(self) -> dict[str, object]:
        """A JSON-safe dict (no watch id or symbol: the store keys rows by those)."""

        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d is not None else None

        record: dict[str, object] = {
            "status": self.status.value,
            "tier": self.tier,
            "episode": self.episode,
            "since": iso(self.since),
            "reference": self.reference,
            "fired_at": iso(self.fired_at),
            "last_alert_at": iso(self.last_alert_at),
            "repeats": self.repeats,
            "nodata_since": iso(self.nodata_since),
            "nodata_reason": self.nodata_reason,
            "day": self.day.isoformat() if self.day is not None else None,
        }
        if self.seen:
            record["seen"] = list(self.seen)
        return record

    @classmethod
    def from_record(cls, watch_id: int, symbol: str, record: dict[str, object]) -> RuleState:
        """Rebuild from ``to_record``; unknown keys are ignored, so older records still load."""
        seen_raw = record.get("seen") or []
        if not isinstance(seen_raw, list) or not all(isinstance(s, str) for s in seen_raw):
            raise ValueError("seen must be a list of strings")
        status_raw = record.get("status", RuleStatus.ARMED.value)
        return cls(
            watch_id=watch_id,
            symbol=symbol,
            status=RuleStatus(str(status_raw)),
            tier=_int(record.get("tier")),
            episode=_str(record.get("episode")),
            since=_dt(record.get("since")),
            reference=_float(record.get("reference")),
            fired_at=_dt(record.get("fired_at")),
            last_alert_at=_dt(record.get("last_alert_at")),
            repeats=_int(record.get("repeats")),
            nodata_since=_dt(record.get("nodata_since")),
            nodata_reason=_str(record.get("nodata_reason")),
            seen=tuple(str(s) for s in seen_raw),
            day=_date(record.get("day")),
        )


_StateDraft = draft_class(RuleState)
_new_object = object.__new__


def new_state(
    watch_id: int,
    symbol: str,
    status: RuleStatus,
    tier: int,
    episode: str | None,
    since: datetime | None,
    reference: float | None,
    fired_at: datetime | None,
    last_alert_at: datetime | None,
    repeats: int,
    nodata_since: datetime | None,
    nodata_reason: str | None,
    seen: tuple[str, ...],
    day: date | None,
) -> RuleState:
    """``RuleState(...)`` with every field, in order, at a fifth of the cost (``draft_class``):
    every transition of a storm builds one."""
    s: Any = _new_object(_StateDraft)
    s.watch_id = watch_id
    s.symbol = symbol
    s.status = status
    s.tier = tier
    s.episode = episode
    s.since = since
    s.reference = reference
    s.fired_at = fired_at
    s.last_alert_at = last_alert_at
    s.repeats = repeats
    s.nodata_since = nodata_since
    s.nodata_reason = nodata_reason
    s.seen = seen
    s.day = day
    s.__class__ = RuleState
    state: RuleState = s
    return state


class Reading(NamedTuple):
    """One rule family's verdict on one input, and what an alert of it would show.

    ``holds``: the condition is met; ``recovered``: the value is back past the hysteresis
    band; ``tier``: the escalation step reached. ``reference`` is the day marker (the previous
    close or open; None for day-free rules), ``day`` a basket's New York trading day.
    """

    metric: float
    holds: bool
    recovered: bool
    tier: int
    at: datetime
    reference: float | None
    price: float | None
    reference_price: float | None
    change_pct: float | None
    session: MarketSession | None
    day: date | None = None


class Policy(NamedTuple):
    """How one binding moves through the lifecycle (from its rule, channel and config)."""

    confirm: timedelta | None = None  # "for 2m": hold that long before firing
    cooldown: timedelta | None = None  # after a fire, a fresh crossing waits this long
    repeat_interval: timedelta | None = None  # while firing with no new tier, say it again
    resolved_notices: bool = False  # announce the recovery


class Event(NamedTuple):
    """What a transition tells the channel: an alert kind and its number (tier or repeat)."""

    kind: AlertKind
    n: int


_ARMED, _PENDING, _FIRING = RuleStatus.ARMED, RuleStatus.PENDING, RuleStatus.FIRING
_FIRED, _ESCALATED = AlertKind.FIRING, AlertKind.ESCALATED
_RESOLVED, _REPEATED = AlertKind.RESOLVED, AlertKind.REPEAT
# Events are built with tuple.__new__: NamedTuple's own constructor is a Python function,
# and a storm builds one per crossing.
_new = tuple.__new__


def advance(st: RuleState, r: Reading, policy: Policy) -> tuple[RuleState, Event | None]:
    """The next state of one (watch, symbol) pair given a reading, and the alert it owes.

    Pure. Returns ``st`` itself when nothing changed, so identity tells callers whether to
    persist. NoData is never a crossing and never a recovery.
    """
    if st.nodata_since is not None:
        return st, None
    if (
        st.status is _FIRING
        and r.holds
        and r.tier <= st.tier
        and policy.repeat_interval is None
        and r.day is None
        and (r.reference is None or st.reference is None or same_value(st.reference, r.reference))
    ):
        return st, None  # the common case of a storm: still past the trigger, nothing new
    if st.status is not _ARMED and _new_day(st, r):
        # A new trading day moved the baseline: the old episode ends without a "resolved".
        st = _evolve(st, _ARMED, 0, None, st.reference, st.last_alert_at, 0, st.day)
    if st.status is _ARMED:
        return _from_armed(st, r, policy)
    if st.status is _PENDING:
        if not r.holds:
            return _evolve(
                st, _ARMED, st.tier, None, st.reference, st.last_alert_at, 0, st.day
            ), None
        confirm = policy.confirm
        if confirm and st.since is not None and r.at - st.since >= confirm:
            return fire(st, r, st.since), _new(Event, (_FIRED, r.tier))
        return st, None
    return _from_firing(st, r, policy)


def _from_armed(st: RuleState, r: Reading, policy: Policy) -> tuple[RuleState, Event | None]:
    if not r.holds:
        return st, None
    cooldown = policy.cooldown
    if cooldown and st.fired_at is not None and r.at < st.fired_at + cooldown:
        return st, None  # held back: stays armed until the cooldown is over
    if policy.confirm:
        return _evolve(st, _PENDING, st.tier, r.at, r.reference, st.last_alert_at, 0, r.day), None
    return fire(st, r, r.at), _new(Event, (_FIRED, r.tier))


def _from_firing(st: RuleState, r: Reading, policy: Policy) -> tuple[RuleState, Event | None]:
    if r.recovered:
        new = _evolve(st, _ARMED, st.tier, r.at, st.reference, st.last_alert_at, 0, st.day)
        return new, _new(Event, (_RESOLVED, st.tier)) if policy.resolved_notices else None
    if r.holds and r.tier > st.tier:
        new = _evolve(st, st.status, r.tier, st.since, st.reference, r.at, st.repeats, st.day)
        return new, _new(Event, (_ESCALATED, r.tier))
    every = policy.repeat_interval
    if every is not None and st.last_alert_at is not None and r.at - st.last_alert_at >= every:
        repeats = st.repeats + 1
        new = _evolve(st, st.status, st.tier, st.since, st.reference, r.at, repeats, st.day)
        return new, _new(Event, (_REPEATED, repeats))
    return st, None


def _new_day(st: RuleState, r: Reading) -> bool:
    # A symbol's day is its previous close (or open); a basket's is New York's trading day.
    if (
        r.reference is not None
        and st.reference is not None
        and not same_value(st.reference, r.reference)
    ):
        return True
    return r.day is not None and _day_moved(st, r.day)


def _day_moved(st: RuleState, day: date) -> bool:
    held = st.day
    if held is None:
        # A record written before ``day`` existed: the episode began on the day of ``since``.
        if st.since is None:
            return False
        held = trading_day(st.since)[0]
    return held != day


def begin(
    watch_id: int, symbol: str, r: Reading, policy: Policy
) -> tuple[RuleState | None, Event | None]:
    """``advance(RuleState(watch_id, symbol), r, policy)`` for a pair with no state yet (armed,
    never fired, no data gap), without building that blank state first: a frozen state costs
    more than the rest of a fire. The state is None while the reading changes nothing."""
    if not r.holds:
        return None, None
    if policy.confirm:
        pending = new_state(
            watch_id,
            symbol,
            _PENDING,
            0,
            None,
            r.at,
            r.reference,
            None,
            None,
            0,
            None,
            None,
            (),
            r.day,
        )
        return pending, None
    at = r.at
    fired = new_state(
        watch_id,
        symbol,
        _FIRING,
        r.tier,
        _episode_name(at),
        at,
        r.reference,
        at,
        at,
        0,
        None,
        None,
        (),
        r.day,
    )
    return fired, _new(Event, (_FIRED, r.tier))


def fire(st: RuleState, r: Reading, started: datetime) -> RuleState:
    """The state of a fresh crossing that started at ``started``; its episode names it."""
    episode = _episode_name(started)
    if st.episode is not None and st.episode.partition("#")[0] == episode:
        # Fired, re-armed and fired again at one timestamp: keep the keys distinct.
        _, _, n = st.episode.partition("#")
        episode = f"{episode}#{int(n or 1) + 1}"
    # Built directly rather than with dataclasses.replace: this is the hot path of a storm.
    return new_state(
        st.watch_id,
        st.symbol,
        _FIRING,
        r.tier,
        episode,
        r.at,
        r.reference,
        r.at,
        r.at,
        0,
        st.nodata_since,
        st.nodata_reason,
        st.seen,
        r.day,
    )


# The last episode name: one quote crossing many rules starts all their episodes at the same
# time object, and naming one costs more than the rest of a fire's bookkeeping.
_named: tuple[datetime | None, str] = (None, "")


def _episode_name(started: datetime) -> str:
    global _named
    last = _named  # one read: another thread may replace it meanwhile
    if last[0] is started:
        return last[1]
    # In UTC, so the same instant gives the same key whichever zone the source used.
    name = started.astimezone(UTC).isoformat()
    _named = (started, name)
    return name


def _evolve(
    st: RuleState,
    status: RuleStatus,
    tier: int,
    since: datetime | None,
    reference: float | None,
    last_alert_at: datetime | None,
    repeats: int,
    day: date | None,
) -> RuleState:
    # dataclasses.replace is several times slower, and this runs for every crossing.
    return new_state(
        st.watch_id,
        st.symbol,
        status,
        tier,
        st.episode,
        since,
        reference,
        st.fired_at,
        last_alert_at,
        repeats,
        st.nodata_since,
        st.nodata_reason,
        st.seen,
        day,
    )


def same_value(a: float, b: float) -> bool:
    """Equal up to float noise: previous closes and opens arrive re-computed by sources."""
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


# A basket's trading day is New York's, starting with the US premarket at 04:00 ET: its
# members' previous closes change at different hours (Amsterdam's at 03:00 ET), so they
# cannot mark the day without resetting a mixed basket twice. A weekend belongs to Friday's
# day, so Amsterdam's Monday 03:00 ET open does not start a day of its own an hour before
# New York's. (Holidays would need an exchange calendar; alerts/ stays pure.)
_NEW_YORK = ZoneInfo("America/New_York")
_DAY_STARTS = time(4, 0)


def trading_day(at: datetime) -> tuple[date, datetime]:
    """The New York trading day ``at`` belongs to, and the instant that day started."""
    local = at.astimezone(_NEW_YORK)
    day = local.date()
    if local.time() < _DAY_STARTS:
        day -= timedelta(days=1)
    if day.weekday() >= 5:
        day -= timedelta(days=day.weekday() - 4)
    # 04:00 is never inside a DST gap or fold (those happen at 02:00).
    return day, datetime.combine(day, _DAY_STARTS, tzinfo=_NEW_YORK)
