"""The pure lifecycle, by table: (state, reading, policy) -> (next status, tier, event)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from alerts.lifecycle import Event, Policy, Reading, RuleState, RuleStatus, advance, begin
from alerts.models import AlertKind, MarketSession

T0 = datetime(2025, 1, 27, 15, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
A, P, F = RuleStatus.ARMED, RuleStatus.PENDING, RuleStatus.FIRING
FIRING, ESCALATED = AlertKind.FIRING, AlertKind.ESCALATED
RESOLVED, REPEAT = AlertKind.RESOLVED, AlertKind.REPEAT


def reading(
    holds: bool,
    recovered: bool = False,
    tier: int = 0,
    at: datetime = T0,
    reference: float | None = 100.0,
    day: date | None = None,
) -> Reading:
    return Reading(
        12.0, holds, recovered, tier, at, reference, 88.0, 100.0, -12.0, MarketSession.PRE, day
    )


def state(
    status: RuleStatus = A,
    tier: int = 0,
    since: datetime | None = None,
    fired_at: datetime | None = None,
    last_alert_at: datetime | None = None,
    reference: float | None = 100.0,
    nodata: bool = False,
) -> RuleState:
    return RuleState(
        1,
        "NVDA",
        status,
        tier,
        episode=T0.isoformat() if status is F else None,
        since=since,
        reference=reference,
        fired_at=fired_at,
        last_alert_at=last_alert_at,
        nodata_since=T0 - MIN if nodata else None,
    )


PLAIN = Policy()
CONFIRM = Policy(confirm=2 * MIN)
COOL = Policy(cooldown=10 * MIN)
REPEATING = Policy(repeat_interval=30 * MIN)
RESOLVING = Policy(resolved_notices=True)

TABLE = [
    # armed
    ("armed, condition holds: fire", state(), reading(True), PLAIN, F, 0, Event(FIRING, 0)),
    ("armed, not holding: nothing", state(), reading(False), PLAIN, A, 0, None),
    ("armed, first fire at tier 1", state(), reading(True, tier=1), PLAIN, F, 1, Event(FIRING, 1)),
    ("armed, needs confirmation: pending", state(), reading(True), CONFIRM, P, 0, None),
    (
        "armed, cooling down after a fire: held back",
        state(fired_at=T0 - 5 * MIN),
        reading(True),
        COOL,
        A,
        0,
        None,
    ),
    (
        "armed, cooldown over: fire",
        state(fired_at=T0 - 11 * MIN),
        reading(True),
        COOL,
        F,
        0,
        Event(FIRING, 0),
    ),
    # pending
    (
        "pending, held long enough: fire",
        state(P, since=T0 - 2 * MIN),
        reading(True),
        CONFIRM,
        F,
        0,
        Event(FIRING, 0),
    ),
    ("pending, not yet long enough", state(P, since=T0 - MIN), reading(True), CONFIRM, P, 0, None),
    (
        "pending, condition gone: re-arm",
        state(P, since=T0 - MIN),
        reading(False),
        CONFIRM,
        A,
        0,
        None,
    ),
    # firing
    ("firing, still holding: quiet", state(F, since=T0), reading(True), PLAIN, F, 0, None),
    (
        "firing, next tier: escalate",
        state(F),
        reading(True, tier=1),
        PLAIN,
        F,
        1,
        Event(ESCALATED, 1),
    ),
    ("firing, lower tier: quiet", state(F, tier=2), reading(True, tier=1), PLAIN, F, 2, None),
    ("firing, inside the band: quiet", state(F), reading(False), PLAIN, F, 0, None),
    (
        "firing, recovered: re-arm silently",
        state(F),
        reading(False, recovered=True),
        PLAIN,
        A,
        0,
        None,
    ),
    (
        "firing, recovered with notices on",
        state(F),
        reading(False, recovered=True),
        RESOLVING,
        A,
        0,
        Event(RESOLVED, 0),
    ),
    (
        "firing, repeat interval elapsed",
        state(F, last_alert_at=T0 - 30 * MIN),
        reading(True),
        REPEATING,
        F,
        0,
        Event(REPEAT, 1),
    ),
    (
        "firing, repeat interval not yet",
        state(F, last_alert_at=T0 - 29 * MIN),
        reading(True),
        REPEATING,
        F,
        0,
        None,
    ),
    # a new trading day (new previous close) ends the episode silently, then it is judged anew
    (
        "firing, new day, not holding",
        state(F),
        reading(False, reference=95.0),
        RESOLVING,
        A,
        0,
        None,
    ),
    (
        "firing, new day, holding: a new fire",
        state(F),
        reading(True, reference=95.0),
        PLAIN,
        F,
        0,
        Event(FIRING, 0),
    ),
    # NoData is never a crossing and never a recovery
    ("nodata, holding", state(nodata=True), reading(True), PLAIN, A, 0, None),
    (
        "nodata, recovered",
        state(F, nodata=True),
        reading(False, recovered=True),
        RESOLVING,
        F,
        0,
        None,
    ),
]


@pytest.mark.parametrize(
    ("st", "r", "policy", "status", "tier", "event"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_advance(
    st: RuleState,
    r: Reading,
    policy: Policy,
    status: RuleStatus,
    tier: int,
    event: Event | None,
) -> None:
    new, got = advance(st, r, policy)
    assert (new.status, new.tier, got) == (status, tier, event)


def test_advance_returns_the_same_object_when_nothing_changes() -> None:
    st = state(F)
    new, event = advance(st, reading(True), PLAIN)
    assert new is st
    assert event is None


def test_a_fire_names_its_episode_by_its_start_and_a_refire_at_the_same_instant_differs() -> None:
    first, _ = advance(state(), reading(True), PLAIN)
    assert first.episode == T0.isoformat()
    rearmed, _ = advance(first, reading(False, recovered=True), PLAIN)
    again, _ = advance(rearmed, reading(True), PLAIN)
    assert again.episode == f"{T0.isoformat()}#2"


def test_a_confirmed_fire_starts_when_the_condition_began() -> None:
    pending, _ = advance(state(), reading(True, at=T0), CONFIRM)
    fired, event = advance(pending, reading(True, at=T0 + 2 * MIN), CONFIRM)
    assert event == Event(FIRING, 0)
    assert fired.episode == T0.isoformat()


@pytest.mark.parametrize("policy", [PLAIN, CONFIRM, COOL, REPEATING, RESOLVING])
@pytest.mark.parametrize(
    "r",
    [
        reading(True),
        reading(False),
        reading(True, tier=2),
        reading(True, recovered=True),
        reading(True, reference=None, day=date(2025, 1, 27)),
    ],
)
def test_begin_is_advance_from_a_blank_state(r: Reading, policy: Policy) -> None:
    # The engine's shortcut for pairs without a state must be the lifecycle itself.
    blank = RuleState(7, "AMD")
    expected_state, expected_event = advance(blank, r, policy)
    got_state, got_event = begin(7, "AMD", r, policy)
    assert got_event == expected_event
    assert got_state == (None if expected_state is blank else expected_state)
