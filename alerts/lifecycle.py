"""The persisted per-(watch, symbol) lifecycle state and its JSON-safe record form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


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
