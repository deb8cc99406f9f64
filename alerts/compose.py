"""Compose one chat message from a channel's grouped alerts: order, title, context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from alerts.attribution import Attribution
from alerts.baskets import BASKET_PREFIX
from alerts.models import (
    Alert,
    AlertKind,
    AlertMessage,
    ContextLine,
    MarketSession,
    NewsItem,
    Severity,
)
from alerts.rules import BreadthRule, ChangeRule, Direction, LevelRule, RuleSyntaxError, parse_rule

# A basket leads the title when this many of its names are in one group.
BASKET_HEADLINE_MIN = 3

PRICE_KINDS = frozenset({AlertKind.FIRING, AlertKind.ESCALATED, AlertKind.REPEAT})
_SESSION_WORD = {
    MarketSession.PRE: "premarket",
    MarketSession.POST: "after hours",
    MarketSession.REGULAR: "",
    MarketSession.CLOSED: "",
}


def session_word(session: MarketSession | None) -> str:
    return _SESSION_WORD.get(session, "") if session is not None else ""


def _rank(alert: Alert) -> tuple[int, int, float, datetime]:
    return (alert.severity.rank, alert.tier, abs(alert.change_pct or 0.0), alert.at)


def latest_per_crossing(alerts: Sequence[Alert]) -> list[Alert]:
    """One alert per (watch, symbol): an escalation supersedes the first fire of the same
    crossing, while two watches on one name (``drop 7%`` and ``move 7%``) both stay visible,
    each with its own rule and note."""
    best: dict[tuple[str, int | None, str], Alert] = {}
    for alert in alerts:
        if alert.kind in (AlertKind.DEGRADED, AlertKind.RECOVERED, AlertKind.NEWS):
            best[(alert.key, None, "")] = alert  # notices are not per crossing
            continue
        crossing = ("", alert.watch_id, alert.symbol)
        held = best.get(crossing)
        if held is None or (alert.at, _rank(alert)) >= (held.at, _rank(held)):
            best[crossing] = alert
    return list(best.values())


def order_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """Most severe first; among equals, the larger move first; then by name for stability."""
    return sorted(
        alerts,
        key=lambda a: (-a.severity.rank, -abs(a.change_pct or 0.0), a.symbol, a.key),
    )


def _pct_of(alert: Alert) -> float | None:
    try:
        rule = parse_rule(alert.rule_text)
    except RuleSyntaxError:
        return None
    if isinstance(rule, ChangeRule | BreadthRule):
        return rule.pct
    return None


def _fmt_pct(x: float) -> str:
    return f"{x:g}"


def _basket_label(name: str) -> str:
    return name.upper() if len(name) <= 3 else name.capitalize()


def _basket_headline(
    price_alerts: Sequence[Alert],
    baskets: Mapping[str, Sequence[str]],
    moves: Mapping[str, float] | None = None,
) -> str | None:
    """ "AI selloff: 6 of 8 down more than 5%" when a basket dominates the group.

    The count covers the whole basket: the group's own alerts, overlaid with ``moves`` (the
    latest change per symbol) when given, so a follow-up message does not undercount names
    that fired in an earlier message.
    """
    best: tuple[int, str] | None = None
    by_symbol = {a.symbol.upper(): a for a in price_alerts if a.change_pct is not None}
    latest = {k.upper(): v for k, v in (moves or {}).items()}
    for name, members in sorted(baskets.items()):
        upper = [m.upper() for m in members]
        hits = [by_symbol[m] for m in upper if m in by_symbol]
        if len(hits) < BASKET_HEADLINE_MIN:
            continue
        down = [a for a in hits if (a.change_pct or 0.0) < 0]
        up = [a for a in hits if (a.change_pct or 0.0) > 0]
        side, word, verb = (
            (down, "selloff", "down") if len(down) >= len(up) else (up, "rally", "up")
        )
        if len(side) < BASKET_HEADLINE_MIN:
            continue
        thresholds = [p for p in (_pct_of(a) for a in side) if p is not None]
        if thresholds:
            floor = min(thresholds)
            sign = -1.0 if verb == "down" else 1.0
            now_moves = {m: by_symbol[m].change_pct or 0.0 for m in upper if m in by_symbol}
            now_moves.update({m: latest[m] for m in upper if m in latest})
            count = sum(1 for v in now_moves.values() if sign * v >= floor)
            text = (
                f"{_basket_label(name)} {word}: {count} of {len(upper)} {verb} more than"
                f" {_fmt_pct(floor)}%"
            )
        else:
            count = len(side)
            text = f"{_basket_label(name)} {word}: {count} of {len(upper)} {verb}"
        if best is None or count > best[0]:
            best = (count, text)
    return best[1] if best is not None else None


def _alert_phrase(alert: Alert) -> str:
    chg = f" {alert.change_pct:+.1f}%" if alert.change_pct is not None else ""
    if alert.kind is AlertKind.RESOLVED:
        return f"{alert.symbol} recovered{chg}"
    try:
        rule = parse_rule(alert.rule_text) if alert.rule_text else None
    except RuleSyntaxError:
        rule = None
    if isinstance(rule, LevelRule) and alert.price is not None:
        side = "above" if rule.above else "below"
        return f"{alert.symbol} {side} {rule.price:g} at {alert.price:,.2f}"
    if isinstance(rule, BreadthRule):
        verb = {Direction.DROP: "down", Direction.RISE: "up", Direction.MOVE: "moving"}
        return f"{alert.symbol}: {rule.count}+ names {verb[rule.direction]} {rule.pct:g}%"
    return f"{alert.symbol}{chg}"


def compose_title(
    alerts: Sequence[Alert],
    baskets: Mapping[str, Sequence[str]],
    moves: Mapping[str, float] | None = None,
) -> str:
    price = [a for a in alerts if a.kind in PRICE_KINDS]
    lead = _basket_headline(price, baskets, moves)
    if lead is not None:
        return lead
    names = [a for a in price if not a.symbol.startswith(BASKET_PREFIX)]
    if len({a.symbol for a in names}) >= BASKET_HEADLINE_MIN:
        down = [a for a in names if (a.change_pct or 0.0) < 0]
        up = [a for a in names if (a.change_pct or 0.0) > 0]
        side, word, verb = (
            (down, "selloff", "down") if len(down) >= len(up) else (up, "rally", "up")
        )
        count = len({a.symbol for a in side})
        thresholds = [p for p in (_pct_of(a) for a in side) if p is not None]
        if count >= BASKET_HEADLINE_MIN and thresholds:
            return f"Watchlist {word}: {count} names {verb} more than {_fmt_pct(min(thresholds))}%"
        return f"Watchlist: {len({a.symbol for a in names})} names moving"
    if price:
        shown = order_alerts(price)[:2]
        words = {session_word(a.session) for a in shown} - {""}
        tail = f" {words.pop()}" if len(words) == 1 else ""
        return ", ".join(_alert_phrase(a) for a in shown) + tail
    if not alerts:
        return "No alerts"
    first = order_alerts(alerts)[0]
    if first.kind is AlertKind.NEWS:
        return f"News: {first.headline or first.symbol}"
    if first.kind is AlertKind.DEGRADED:
        return f"Market data degraded: {first.note or first.symbol}"
    if first.kind is AlertKind.RECOVERED:
        return f"Market data is back ({first.note})" if first.note else "Market data is back"
    return ", ".join(_alert_phrase(a) for a in order_alerts(alerts)[:2])


def compose_message(
    channel: str,
    alerts: Sequence[Alert],
    *,
    context: Sequence[ContextLine] = (),
    headlines: Sequence[NewsItem] = (),
    baskets: Mapping[str, Sequence[str]] | None = None,
    now: datetime,
    moves: Mapping[str, float] | None = None,
    attribution: Attribution | None = None,
) -> AlertMessage:
    """The message for one group: one line per crossing, most severe first, a leading title.

    Called again with the grown list when names join, so an edit shows the whole group.
    ``moves`` (symbol -> latest change %, e.g. ``Engine.latest_changes()``) lets a basket
    headline count names that fired in an earlier message too. ``attribution`` (price groups)
    replaces ``headlines`` with the ranked catalysts, names a grouped move's theme in the
    title, and says so when no headline explains the move.
    """
    own = [a for a in alerts if a.channel == channel]
    shown = order_alerts(latest_per_crossing(own))
    baskets = baskets or {}
    title = compose_title(shown, baskets, moves)
    severity = max((a.severity for a in shown), key=lambda s: s.rank, default=Severity.INFO)
    news_alert_titles = {a.headline for a in shown if a.headline}
    price = [a for a in shown if a.kind in PRICE_KINDS]
    extra: dict[str, str] = {}
    times: dict[str, str] = {}
    note: str | None = None
    if attribution is not None and price:
        headlines = [c.item for c in attribution.catalysts]
        times = {c.item.key: c.when for c in attribution.catalysts}
        note = attribution.note
        if attribution.theme and len({a.symbol for a in price}) > 1:
            # "AI selloff — DeepSeek: 6 of 8 down more than 5%"
            head, colon, rest = title.partition(":")
            title = f"{head} — {attribution.theme}{colon}{rest}"
            extra["theme"] = attribution.theme
    return AlertMessage(
        channel=channel,
        title=title,
        alerts=tuple(shown),
        at=now,
        context=tuple(context),
        headlines=tuple(h for h in headlines if h.title not in news_alert_titles),
        footer=None,
        severity=severity,
        extra=extra,
        headline_times=times,
        news_note=note,
    )
