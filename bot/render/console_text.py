"""AlertMessage -> plain terminal text: the console platform's view and `--render console`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from alerts.mentions import console_text as clean
from alerts.models import AlertMessage, Severity
from bot.render import format as fmt

_SEVERITY = {Severity.INFO: "info", Severity.WARNING: "WARNING", Severity.CRITICAL: "CRITICAL"}
_ARROW = {"🔻": "▼", "🔺": "▲", "▪️": "■", "•": "•"}


def render_text(message: AlertMessage, tz: tzinfo | None = None) -> str:
    """Every alert, context figure and headline, one per line; no markup, no truncation."""
    tz = tz or fmt.zone(None)
    out = [
        f"[{_SEVERITY[message.severity]}] {clean(message.title)}",
        f"  {fmt.when(message.at, tz)}",
    ]
    shown = {item.title for item in message.headlines}
    width = max((len(a.symbol) for a in message.alerts), default=0)
    for alert in message.alerts:
        parts = fmt.alert_parts(alert)
        line = f"  {_ARROW.get(parts.arrow, parts.arrow)} {clean(parts.symbol):<{width}}"
        if parts.change:
            line += f"  {parts.change:>7}"
        if parts.detail:
            line += f"  {clean(parts.detail)}"
        out.append(line.rstrip())
        if parts.note:
            out.append(f"      note: {clean(parts.note)}")
        if parts.headline and parts.headline not in shown:
            out.append(f"      news: {clean(parts.headline)}")
    if message.context:
        out.append("  Market: " + " · ".join(clean(fmt.context_text(c)) for c in message.context))
    if message.headlines:
        out.append("  News:")
        for item in message.headlines:
            line = f"    • {clean(item.title)}"
            if item.source:
                line += f" — {clean(item.source)}"
            if item.url:
                line += f" <{clean(item.url)}>"
            when = message.headline_times.get(item.key)
            if when:
                line += f" ({clean(when)})"
            out.append(line)
    elif message.news_note:
        out.append(f"  News: {clean(message.news_note)}")
    if message.footer:
        out.append(f"  {clean(message.footer)}")
    return "\n".join(out)


def render_console(message: AlertMessage, tz: tzinfo | None = None) -> str:
    """The console platform's renderer (same as ``render_text``)."""
    return render_text(message, tz)


def console_renderer(timezone: str | None) -> Callable[[AlertMessage], str]:
    """The console platform's renderer showing times in the display zone ``timezone``."""
    tz = fmt.zone(timezone)
    return lambda message: render_text(message, tz)
