"""Alert keys and severity: what makes one crossing's alert unique, and how loud it is."""

from __future__ import annotations

from datetime import UTC

from alerts.engine.index import Binding
from alerts.lifecycle import Event, Reading, RuleState
from alerts.models import Alert, AlertKind, Severity, new_alert
from alerts.rules import ChangeRule

_KIND_TEXT = {k: k.value for k in AlertKind}
# Enum members as plain module names: a member lookup on the class is a descriptor call, and
# this runs once per alert.
_RESOLVED = AlertKind.RESOLVED
_INFO, _WARNING, _CRITICAL = Severity.INFO, Severity.WARNING, Severity.CRITICAL


def severity_of(
    b: Binding, st: RuleState, r: Reading, kind: AlertKind, critical: float
) -> Severity:
    """A recovery is info; a follow-up tier, or a first fire already ``critical`` times the
    threshold, is critical; anything else a warning."""
    if kind is _RESOLVED:
        return _INFO
    if st.tier >= 1 or (isinstance(b.rule, ChangeRule) and r.metric >= critical * b.rule.pct):
        return _CRITICAL
    return _WARNING


def alert_key(b: Binding, episode: str, event: Event) -> str:
    """``12:NVDA:2025-01-27T09:01:00+00:00:firing:0``: deterministic per crossing and tier,
    so a restarted engine produces the same key and the store refuses the second copy."""
    return f"{b.watch.id}:{b.symbol}:{episode}:{_KIND_TEXT[event.kind]}:{event.n}"


def price_alert(
    b: Binding,
    st: RuleState,
    r: Reading,
    event: Event,
    critical_multiple: float,
    relative: tuple[str, float, float] | None = None,
) -> Alert:
    """The alert a lifecycle event of a price rule owes its channel; ``relative`` is the move
    against a benchmark (benchmark, its change, the symbol's change minus it)."""
    episode = st.episode or r.at.astimezone(UTC).isoformat()
    benchmark, benchmark_change, own = relative if relative is not None else (None, None, None)
    return new_alert(
        alert_key(b, episode, event),
        b.channel,
        event.kind,
        b.symbol,
        r.at,
        severity_of(b, st, r, event.kind, critical_multiple),
        b.watch.id,
        b.text,
        r.price,
        r.reference_price,
        r.change_pct,
        r.session,
        st.tier,
        None,  # headline and url: a price alert has neither
        None,
        b.watch.note,
        benchmark,
        benchmark_change,
        own,
    )
