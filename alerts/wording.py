"""Small wording helpers every reply and renderer shares, so counts read as English."""

from __future__ import annotations

from datetime import datetime, tzinfo

_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 message``, ``2 messages``, ``0 watches``: the count and the noun that agrees with it.

    Regular English plurals are derived (``watch`` -> ``watches``); pass ``plural_form`` for
    the irregular ones (``story``/``stories`` is regular enough: a consonant before ``y``).
    """
    if count == 1:
        return f"{count} {noun}"
    if plural_form is None:
        if noun.endswith(_SIBILANT_ENDINGS):
            plural_form = noun + "es"
        elif noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            plural_form = noun[:-1] + "ies"
        else:
            plural_form = noun + "s"
    return f"{count} {plural_form}"


def local_time(at: datetime, zone: tzinfo) -> str:
    """``2025-01-27 04:00 EST``: a moment in the display zone, with the zone's abbreviation
    for that date (so a July time reads EDT and a January one EST)."""
    local = at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
