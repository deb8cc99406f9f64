"""Parses and prints the short durations people type: 30s, 15m, 2h, 1d, 1h30m, 90 minutes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

# Every spelling the rule language and the commands accept, in seconds.
UNIT_SECONDS: Mapping[str, int] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "week", "weeks"), 604800),
}
_PART = re.compile(r"(\d+)\s*([a-z]+)")
MAX_DURATION = timedelta(days=365)


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """``"15m"`` -> 15 minutes. Parts may be combined (``1h30m``); units as in UNIT_SECONDS."""
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    leftover = _PART.sub("", compact).strip()
    if not parts or leftover or any(unit not in UNIT_SECONDS for _, unit in parts):
        raise DurationError(f"`{text}` is not a duration; write it like 30m, 2h or 1d")
    seconds = sum(int(number) * UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise DurationError(f"`{text}` is no time at all; write it like 30m, 2h or 1d")
    # Compared as seconds first: a huge number would overflow timedelta itself.
    if seconds > MAX_DURATION.total_seconds():
        raise DurationError(f"`{text[:40]}` is longer than a year")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The shortest canonical text: 90 minutes -> ``1h30m``; ``parse_duration`` reads it back."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
