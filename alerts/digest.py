"""The daily premarket digest: where each watched symbol and the futures stand before the open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from alerts.models import Alert, AlertKind, AlertMessage, ContextLine, NewsItem, Quote, Severity

MAX_DIGEST_HEADLINES = 3


def digest_key(channel: str, day: date) -> str:
    """The digest's idempotency key: one digest per channel per trading day."""
    return f"digest:{channel}:{day.isoformat()}"


def compose_digest(
    channel: str,
    symbols: Sequence[str],
    latest: Mapping[str, Quote],
    *,
    day: date,
    now: datetime,
    context: Sequence[ContextLine] = (),
    headlines: Sequence[NewsItem] = (),
) -> AlertMessage:
    """Biggest movers first; symbols without a usable quote are named in the footer."""
    lines: list[Alert] = []
    missing: list[str] = []
    for symbol in dict.fromkeys(symbols):
        quote = latest.get(symbol)
        change = quote.change_pct() if quote is not None else None
        if quote is None or quote.price is None or change is None:
            missing.append(symbol)
            continue
        lines.append(
            Alert(
                key=f"{digest_key(channel, day)}:{symbol}",
                channel=channel,
                kind=AlertKind.DIGEST,
                symbol=symbol,
                at=quote.time,
                severity=Severity.INFO,
                price=quote.price,
                reference_price=quote.previous_close,
                change_pct=change,
                session=quote.session,
            )
        )
    lines.sort(key=lambda a: (-abs(a.change_pct or 0.0), a.symbol))
    if lines:
        top = lines[0]
        title = (
            f"Premarket digest {day:%a %Y-%m-%d}: biggest move {top.symbol} {top.change_pct:+.1f}%"
        )
    else:
        title = f"Premarket digest {day:%a %Y-%m-%d}"
    footer = f"No quote yet: {', '.join(missing)}" if missing else None
    return AlertMessage(
        channel=channel,
        title=title,
        alerts=tuple(lines),
        at=now,
        context=tuple(context),
        headlines=tuple(headlines[:MAX_DIGEST_HEADLINES]),
        footer=footer,
        severity=Severity.INFO,
    )
