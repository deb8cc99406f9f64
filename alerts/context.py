"""Market context shown beside alerts: index futures and volatility, with readable labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerts.models import ContextLine, Quote

LABELS: Mapping[str, str] = {
    "NQ=F": "Nasdaq-100 futures",
    "ES=F": "S&P 500 futures",
    "YM=F": "Dow futures",
    "RTY=F": "Russell 2000 futures",
    "^VIX": "VIX",
    "CL=F": "Crude oil",
    "GC=F": "Gold",
    "DX-Y.NYB": "US dollar index",
}


def context_lines(symbols: Sequence[str], latest: Mapping[str, Quote]) -> tuple[ContextLine, ...]:
    """One line per context symbol that has a usable quote, in the configured order."""
    lines = []
    for symbol in symbols:
        quote = latest.get(symbol)
        if quote is None or quote.price is None:
            continue
        lines.append(
            ContextLine(
                symbol=symbol,
                label=LABELS.get(symbol, symbol),
                price=quote.price,
                change_pct=quote.change_pct(),
            )
        )
    return tuple(lines)
