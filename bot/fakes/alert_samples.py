"""Ready-made AlertMessages (the DeepSeek premarket, storms, hostile text) for tests and demos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.models import (
    Alert,
    AlertKind,
    AlertMessage,
    ContextLine,
    MarketSession,
    NewsItem,
    Severity,
)

DEEPSEEK_AT = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)  # 04:05 ET

# (symbol, previous close 2025-01-24, premarket change %) shaped to the reported moves.
DEEPSEEK_MOVES = (
    ("NVDA", 142.62, -13.0),
    ("AVGO", 239.01, -12.9),
    ("ASML.AS", 722.10, -10.6),
    ("MSFT", 444.06, -6.7),
    ("AMD", 124.70, -6.3),
    ("META", 647.49, -5.5),
    ("GOOGL", 200.21, -4.6),
)
DEEPSEEK_CONTEXT = (
    ("NQ=F", "Nasdaq-100 futures", 21891.0, -4.3),
    ("ES=F", "S&P 500 futures", 6118.75, -2.5),
    ("YM=F", "Dow futures", 44600.0, -0.8),
)
DEEPSEEK_HEADLINE = NewsItem(
    key="deepseek-r1",
    title="Chinese AI start-up DeepSeek's R1 model rattles US tech stocks before the open",
    published=datetime(2025, 1, 27, 8, 40, tzinfo=UTC),
    url="https://example.com/markets/deepseek-r1-selloff",
    source="Reuters",
    symbols=("NVDA", "AVGO", "ASML.AS"),
)


def _alert(channel: str, symbol: str, close: float, change: float, **extra: object) -> Alert:
    severity = Severity.CRITICAL if change <= -10 else Severity.WARNING
    rule = "drop 10%" if change <= -10 else "drop 5%"
    return Alert(
        key=f"sample:{channel}:{symbol}:firing:0",
        channel=channel,
        kind=AlertKind.FIRING,
        symbol=symbol,
        at=DEEPSEEK_AT,
        severity=severity,
        rule_text=rule,
        price=round(close * (1 + change / 100), 2),
        reference_price=close,
        change_pct=change,
        session=MarketSession.PRE,
        **extra,  # type: ignore[arg-type]
    )


def deepseek_message(channel: str = "console:default") -> AlertMessage:
    """The motivating day: one grouped message for the watched names, futures and the headline."""
    alerts = tuple(_alert(channel, sym, close, chg) for sym, close, chg in DEEPSEEK_MOVES)
    context = tuple(
        ContextLine(symbol=sym, label=label, price=round(close * (1 + chg / 100)), change_pct=chg)
        for sym, label, close, chg in DEEPSEEK_CONTEXT
    )
    return AlertMessage(
        channel=channel,
        title="AI selloff: 7 of 7 watched names down more than 4% premarket",
        alerts=alerts,
        at=DEEPSEEK_AT,
        context=context,
        headlines=(DEEPSEEK_HEADLINE,),
        footer="marketbot · changes against Friday's close",
        severity=Severity.CRITICAL,
    )


def storm_message(count: int, channel: str = "console:default") -> AlertMessage:
    """``count`` alerts in one group, each with a note and headline: a limits stress case."""
    alerts = tuple(
        _alert(
            channel,
            f"SYM{i:03d}.AS",
            100.0 + i,
            -5.0 - (i % 10),
            note=f"watch note {i}: " + "long words " * 20,
            headline=f"Headline {i} " + "about the market " * 10,
        )
        for i in range(count)
    )
    news = tuple(
        NewsItem(
            key=f"n{i}",
            title=f"Story {i} " + "x" * 400,
            published=DEEPSEEK_AT - timedelta(minutes=i),
            url=f"https://example.com/{i}",
            source="Wire",
        )
        for i in range(12)
    )
    context = tuple(
        ContextLine(symbol=sym, label=label, price=close, change_pct=chg)
        for sym, label, close, chg in DEEPSEEK_CONTEXT
    )
    return AlertMessage(
        channel=channel,
        title=f"Market storm: {count} names moving " + "!" * 300,
        alerts=alerts,
        at=DEEPSEEK_AT,
        context=context,
        headlines=news,
        footer="f" * 3000,
        severity=Severity.CRITICAL,
    )


def deepseek_digest(channel: str = "console:default") -> AlertMessage:
    """The 08:00 ET premarket digest of that Monday, through the core's own composer."""
    from datetime import date

    from alerts.digest import compose_digest
    from alerts.models import Quote

    at = datetime(2025, 1, 27, 13, 0, tzinfo=UTC)  # 08:00 ET
    latest = {
        sym: Quote(
            symbol=sym,
            price=round(close * (1 + chg / 100), 2),
            time=at,
            session=MarketSession.PRE,
            previous_close=close,
        )
        for sym, close, chg in DEEPSEEK_MOVES
    }
    context = tuple(
        ContextLine(symbol=sym, label=label, price=round(close * (1 + chg / 100)), change_pct=chg)
        for sym, label, close, chg in DEEPSEEK_CONTEXT
    )
    return compose_digest(
        channel,
        [*latest, "TSLA"],  # TSLA has no quote yet: the digest names it
        latest,
        day=date(2025, 1, 27),
        now=at,
        context=context,
        headlines=(DEEPSEEK_HEADLINE,),
    )
