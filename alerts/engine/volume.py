"""Volume profiles for ``volume Nx`` rules: the average cumulative volume by time of day."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class VolumeProfile:
    """Average cumulative regular-session volume by time of day, for ``volume Nx`` rules.

    ``cumulative[i]`` is the average volume traded from the open to the end of bucket ``i``
    (``bucket_minutes`` long) over recent sessions (e.g. 20 sessions of 5-minute bars).
    """

    tz: str
    open_time: time
    bucket_minutes: int
    cumulative: tuple[float, ...]

    def expected(self, at: datetime) -> float | None:
        """The average volume by ``at``; None before the first bucket ends or without data."""
        if not self.cumulative or self.bucket_minutes <= 0:
            return None
        local = at.astimezone(ZoneInfo(self.tz))
        opened = local.replace(
            hour=self.open_time.hour, minute=self.open_time.minute, second=0, microsecond=0
        )
        minutes = (local - opened).total_seconds() / 60.0
        index = int(minutes // self.bucket_minutes) - 1
        if index < 0:
            return None
        return self.cumulative[min(index, len(self.cumulative) - 1)]


def build_volume_profile(
    bars: Iterable[tuple[datetime, float]],
    *,
    tz: str,
    open_time: time = time(9, 30),
    bucket_minutes: int = 5,
    sessions: int = 20,
) -> VolumeProfile | None:
    """Average cumulative volume by time of day from intraday bars (start time, volume).

    Feed it regular-session bars of the last few weeks (e.g. yfinance ``period="1mo",
    interval="5m"``); pre/post-market bars are ignored. Only the latest ``sessions`` days
    count; today's partial session should be left out by the caller. None without data.
    """
    zone = ZoneInfo(tz)
    days: dict[date, list[float]] = {}
    for start, volume in bars:
        if not math.isfinite(volume) or volume < 0:
            continue
        local = start.astimezone(zone)
        opened = local.replace(
            hour=open_time.hour, minute=open_time.minute, second=0, microsecond=0
        )
        minutes = (local - opened).total_seconds() / 60.0
        if minutes < 0:
            continue
        index = int(minutes // bucket_minutes)
        if index >= 24 * 60 // bucket_minutes:
            continue
        per_bucket = days.setdefault(local.date(), [])
        if len(per_bucket) <= index:
            per_bucket.extend([0.0] * (index + 1 - len(per_bucket)))
        per_bucket[index] += volume
    chosen = [days[d] for d in sorted(days)[-sessions:]]
    if not chosen:
        return None
    width = max(len(b) for b in chosen)
    cumulative: list[float] = []
    for i in range(width):
        totals = [sum(b[: i + 1]) for b in chosen if len(b) > i]
        cumulative.append(sum(totals) / len(totals))
    return VolumeProfile(tz, open_time, bucket_minutes, tuple(cumulative))
