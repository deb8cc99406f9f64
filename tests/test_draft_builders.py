"""The hot path's builders (``new_state``, ``new_alert``) make the same frozen values as the
constructors: same type, equal, same hash, still frozen, every field in its place."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from alerts.lifecycle import RuleState, RuleStatus, new_state
from alerts.models import Alert, AlertKind, MarketSession, Severity, new_alert

AT = datetime(2025, 1, 27, 14, 31, tzinfo=UTC)

# A distinct value for every field, so a field stored in another's slot cannot go unnoticed.
STATE_VALUES = (
    7,
    "NVDA",
    RuleStatus.FIRING,
    2,
    "2025-01-27T14:31:00+00:00",
    AT,
    131.5,
    datetime(2025, 1, 27, 14, 32, tzinfo=UTC),
    datetime(2025, 1, 27, 14, 33, tzinfo=UTC),
    3,
    datetime(2025, 1, 27, 14, 34, tzinfo=UTC),
    "stale",
    ("story-1",),
    date(2025, 1, 27),
)
ALERT_VALUES = (
    "7:NVDA:2025-01-27T14:31:00+00:00:firing:0",
    "C1",
    AlertKind.ESCALATED,
    "NVDA",
    AT,
    Severity.CRITICAL,
    7,
    "drop 10%",
    118.0,
    131.5,
    -10.27,
    MarketSession.REGULAR,
    1,
    "Nvidia falls",
    "https://example.com/n",
    "earnings",
    "NQ=F",
    -4.3,
    -5.97,
)


@pytest.mark.parametrize(
    ("cls", "build", "values"),
    [(RuleState, new_state, STATE_VALUES), (Alert, new_alert, ALERT_VALUES)],
)
def test_builder_makes_what_the_constructor_makes(
    cls: type, build: object, values: tuple[object, ...]
) -> None:
    assert callable(build)
    built = build(*values)
    expected = cls(*values)
    assert type(built) is cls
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
    names = [f.name for f in dataclasses.fields(cls)]
    assert len(names) == len(values)  # a new field must be added to the builder too
    assert {n: getattr(built, n) for n in names} == dict(zip(names, values, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.tier = 9
    assert dataclasses.replace(built, tier=5) == dataclasses.replace(expected, tier=5)
