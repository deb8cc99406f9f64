"""Mutes: whether a channel's mute covers an alert, and the summary of what it missed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo

from alerts.baskets import BASKET_PREFIX, basket_name, is_basket_target, resolve_basket
from alerts.models import Alert, AlertMessage, Mute, Severity
from alerts.wording import plural

ALL = "all"


def mute_covers(
    mute: Mute, alert: Alert, baskets: Mapping[str, Sequence[str]] | None = None
) -> bool:
    """Whether ``mute``'s scope covers ``alert`` (ignoring time)."""
    if mute.channel != alert.channel:
        return False
    scope = mute.scope.strip()
    if scope.lower() == ALL:
        return True
    if is_basket_target(scope):
        name = basket_name(scope)
        if alert.symbol.lower() == BASKET_PREFIX + name:
            return True
        return alert.symbol.upper() in {m.upper() for m in resolve_basket(name, baskets)}
    return alert.symbol.upper() == scope.upper()


def is_muted(
    alert: Alert,
    mutes: Sequence[Mute],
    now: datetime,
    baskets: Mapping[str, Sequence[str]] | None = None,
) -> bool:
    """True when a mute of the alert's channel is in force at ``now`` and covers the alert.

    Muting suppresses sending only: the engine still tracks the alert, and the channel gets a
    summary when the mute ends (``summarize_missed``).
    """
    return any(m.created_at <= now < m.until and mute_covers(m, alert, baskets) for m in mutes)


def summarize_missed(
    channel: str, missed: Sequence[Alert], mute: Mute, now: datetime, zone: tzinfo = UTC
) -> AlertMessage:
    """One short message: what fired while the channel had ``mute`` in force.

    One line per symbol (its most severe, then latest alert), most severe first. ``zone``:
    the display zone its times are shown in.
    """
    best: dict[str, Alert] = {}
    for alert in missed:
        held = best.get(alert.symbol)
        if held is None or (alert.severity.rank, alert.tier, alert.at) >= (
            held.severity.rank,
            held.tier,
            held.at,
        ):
            best[alert.symbol] = alert
    lines = sorted(
        best.values(),
        key=lambda a: (-a.severity.rank, -abs(a.change_pct or 0.0), a.symbol),
    )
    n, k = len(missed), len(lines)
    scope = "everything" if mute.scope.lower() == ALL else mute.scope
    title = f"While {scope} was muted: {plural(n, 'alert')} on {plural(k, 'name')}"
    severity = max((a.severity for a in lines), key=lambda s: s.rank, default=Severity.INFO)
    started, ended = mute.created_at.astimezone(zone), min(mute.until, now).astimezone(zone)
    # One abbreviation unless the clocks changed during the mute (01:30 EST-03:30 EDT).
    span = (
        f"{started:%H:%M}-{ended:%H:%M} {ended.tzname()}"
        if started.tzname() == ended.tzname()
        else f"{started:%H:%M} {started.tzname()}-{ended:%H:%M} {ended.tzname()}"
    )
    return AlertMessage(
        channel=channel,
        title=title,
        alerts=tuple(lines),
        at=now,
        footer=f"Muted {span}; the alerts were tracked, not sent.",
        severity=severity,
        extra={"kind": "mute_summary", "scope": mute.scope},
    )
