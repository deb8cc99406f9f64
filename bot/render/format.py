"""Platform-neutral wording of alerts: the same words on Slack, Discord and the console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from alerts.mentions import fit
from alerts.models import Alert, AlertKind, AlertMessage, ContextLine, MarketSession, Severity

DEFAULT_TZ = "America/New_York"

SEVERITY_EMOJI = {Severity.INFO: "🔵", Severity.WARNING: "🟠", Severity.CRITICAL: "🔴"}

_SESSION_LABEL = {
    MarketSession.PRE: "premarket",
    MarketSession.REGULAR: "regular session",
    MarketSession.POST: "after hours",
    MarketSession.CLOSED: "market closed",
}

_KIND_LABEL = {
    AlertKind.FIRING: "",
    AlertKind.ESCALATED: "deeper",
    AlertKind.RESOLVED: "recovered past the band",
    AlertKind.REPEAT: "still",
    AlertKind.DEGRADED: "data degraded",
    AlertKind.RECOVERED: "data back",
    AlertKind.NEWS: "news",
}


def zone(name: str | None) -> tzinfo:
    return ZoneInfo(name or DEFAULT_TZ)


def price(value: float | None) -> str:
    if value is None:
        return "n/a"
    # Index futures read as whole points (20,950), stocks with cents (124.00).
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def pct(value: float | None) -> str:
    if value is None:
        return "n/a"
    # A real minus sign reads better than a hyphen next to a number.
    sign = "+" if value > 0 else ("−" if value < 0 else "±")
    return f"{sign}{abs(value):.1f}%"


def arrow(change: float | None) -> str:
    if change is None:
        return "•"
    return "🔻" if change < 0 else ("🔺" if change > 0 else "▪️")


def when(at: datetime, tz: tzinfo) -> str:
    local = at.astimezone(tz)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


@dataclass(frozen=True, slots=True)
class AlertLineParts:
    """One alert split into the pieces every renderer arranges: raw, unescaped text."""

    arrow: str
    symbol: str
    change: str  # "−13.0%"
    detail: str  # "to 124.00 (prev close 142.62) · premarket · drop 10%"
    note: str | None
    headline: str | None


def alert_parts(alert: Alert) -> AlertLineParts:
    bits: list[str] = []
    label = _KIND_LABEL.get(alert.kind, "")
    if label:
        bits.append(label)
    if alert.price is not None:
        move = f"to {price(alert.price)}"
        if alert.reference_price is not None:
            move += f" (prev close {price(alert.reference_price)})"
        bits.append(move)
    if alert.benchmark is not None and alert.relative_pct is not None:
        # "NQ=F −4.3%, −8.7 pts own": how much of the move is the symbol's own.
        own = pct(alert.relative_pct).removesuffix("%")
        bits.append(f"{alert.benchmark} {pct(alert.benchmark_change_pct)}, {own} pts own")
    if alert.session is not None and alert.session is not MarketSession.REGULAR:
        bits.append(_SESSION_LABEL[alert.session])
    if alert.rule_text:
        bits.append(alert.rule_text)
    return AlertLineParts(
        arrow=arrow(alert.change_pct),
        symbol=alert.symbol,
        change=pct(alert.change_pct) if alert.change_pct is not None else "",
        detail=" · ".join(bits),
        note=alert.note,
        headline=alert.headline,
    )


def context_text(line: ContextLine) -> str:
    """``NQ=F −4.3% 20,950`` (label used when it differs from the symbol)."""
    name = line.label if line.label and line.label != line.symbol else line.symbol
    head = f"{name} ({line.symbol})" if name != line.symbol else name
    return f"{head} {pct(line.change_pct)} {price(line.price)}".strip()


def more_marker(hidden: int) -> str:
    return f"… and {hidden} more"


NOTE_CHARS = 300  # a note or headline under an alert line


@dataclass(frozen=True, slots=True)
class Markup:
    """How one chat platform spells emphasis and escapes user text."""

    escape: Callable[[str], str]
    bold: str
    italic: str
    indent: str


def alert_line(message: AlertMessage, index: int, markup: Markup) -> str:
    """One alert as a chat line, with its note and (if not shown below) its headline."""
    parts = alert_parts(message.alerts[index])
    b, i, esc = markup.bold, markup.italic, markup.escape
    line = f"{parts.arrow} {b}{esc(parts.symbol)}{b}"
    if parts.change:
        line += f"  {b}{parts.change}{b}"
    if parts.detail:
        line += f"  {esc(parts.detail)}"
    if parts.note:
        line += f"\n{markup.indent}📝 {i}{fit(parts.note, NOTE_CHARS, esc)}{i}"
    shown = {item.title for item in message.headlines}
    if parts.headline and parts.headline not in shown:
        line += f"\n{markup.indent}📰 {fit(parts.headline, NOTE_CHARS, esc)}"
    return line
