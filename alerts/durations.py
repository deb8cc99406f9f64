"""Parses and prints the short durations people type: 30s, 15m, 2h, 1d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=365)


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """``"15m"`` -> 15 minutes. Units s, m, h, d, w; parts may be combined (``1h30m``)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise DurationError(f"`{text}` is not a duration; write it like 30m, 2h or 1d")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _PART.findall(compact))
    if seconds <= 0:
        raise DurationError(f"`{text}` is no time at all; write it like 30m, 2h or 1d")
    duration = timedelta(seconds=seconds)
    if duration > MAX_DURATION:
        raise DurationError(f"`{text}` is longer than a year")
    return duration


def format_duration(duration: timedelta) -> str:
    """The shortest canonical text: 90 minutes -> ``1h30m``; ``parse_duration`` reads it back."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
