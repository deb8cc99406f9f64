"""Relative moves: a symbol's move against its benchmark (NVDA -13% while NQ=F -4.3%: -8.7
points of its own), for ``drop 5% vs NQ=F`` rules and the figure every price alert shows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from alerts.engine.bands import pct_crossing
from alerts.engine.config import EngineConfig
from alerts.engine.readings import directional, pct, quote_reading
from alerts.lifecycle import Reading
from alerts.models import Quote
from alerts.rules import ChangeRule, Rule

# Yahoo's exchange codes (quote ``exchange``) and names (``fullExchangeName``) for Nasdaq,
# plus the spelling scenario files use.
_NASDAQ = frozenset({"NMS", "NGM", "NCM", "NAS", "NASDAQ", "NASDAQGS", "NASDAQGM", "NASDAQCM"})


def is_nasdaq(exchange: str | None) -> bool:
    return exchange is not None and exchange.replace(" ", "").upper() in _NASDAQ


def _is_benchmark_kind(symbol: str) -> bool:
    # Futures, indices, currencies and crypto are benchmarks or their own market, not stocks.
    return symbol.endswith(("=F", "=X", "-USD")) or symbol.startswith("^")


def benchmark_for(
    symbol: str, rule: Rule | None, exchange: str | None, cfg: EngineConfig
) -> str | None:
    """The benchmark a symbol's move is compared with: the rule's own (``vs NQ=F``), else the
    configured one for the symbol, else Nasdaq futures for Nasdaq listings and S&P futures
    for everything else. None for futures, indices, currencies and crypto themselves."""
    if isinstance(rule, ChangeRule) and rule.benchmark is not None:
        return rule.benchmark
    chosen = cfg.benchmarks.get(symbol)
    if chosen is None and not _is_benchmark_kind(symbol):
        chosen = cfg.benchmark_nasdaq if is_nasdaq(exchange) else cfg.benchmark_other
    return chosen if chosen != symbol else None


def benchmark_change(
    benchmark: str,
    quotes: Mapping[str, Quote],
    nodata: Mapping[str, object],
    at: datetime,
    cfg: EngineConfig,
) -> float | None:
    """The benchmark's change against its previous close, from a recent good quote."""
    q = quotes.get(benchmark)
    if q is None or benchmark in nodata or q.price is None or not q.previous_close:
        return None
    if at - q.time > cfg.benchmark_max_age:
        return None  # an old benchmark quote would make up a move of its own
    return pct(q.price, q.previous_close)


def relative_reading(
    rule: ChangeRule, q: Quote, bench_change: float | None, cfg: EngineConfig
) -> Reading | None:
    """``drop 5% vs NQ=F``: the symbol's change minus the benchmark's, in points."""
    if bench_change is None or q.price is None or not q.previous_close:
        return None  # without the benchmark there is no relative move: neither fire nor recover
    change = pct(q.price, q.previous_close)
    m = directional(rule.direction, round(change - bench_change, 9))
    prev = q.previous_close
    return quote_reading(m, pct_crossing(m, rule.pct, cfg), q, prev, prev, change)
