"""How the engine decides (its settings) and what one engine call returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from alerts.lifecycle import RuleState
from alerts.models import Alert


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine decides. Percent figures are percentage points of the rule's metric."""

    # Fire at -10%, re-arm only above -8%. Capped at half the threshold so "drop 1%" re-arms
    # at -0.5% rather than needing a rise.
    hysteresis_pct: float = 2.0
    # Follow-ups at -15%, -20%, ... for a "drop 10%" rule.
    escalation_step_pct: float = 5.0
    # A regular-session quote older than this is stale: NoData. Pre/post-market quotes may
    # legitimately be old (thin trading), so they are only not evaluated.
    stale_after: timedelta = timedelta(minutes=15)
    # Default for channels without their own setting (``Engine.set_resolved_notices``).
    resolved_notices: bool = False
    # While firing with no new tier, say it again after this long (None: never).
    repeat_interval: timedelta | None = None
    # After a fire, a fresh crossing of the same (watch, symbol) waits this long.
    cooldown: timedelta = timedelta(0)
    # A price more than this factor away from the previous close is a bad tick: NoData.
    max_price_ratio: float = 20.0
    # A first fire at least this multiple of the threshold is already critical.
    critical_multiple: float = 2.0
    # News older than this is not alerted (a new watch would otherwise get the backlog).
    news_max_age: timedelta = timedelta(hours=12)
    news_memory: int = 200
    # A basket's average needs at least this share of its members to have good data.
    basket_min_coverage: float = 0.5
    # Relative moves: Nasdaq listings (by the quote's exchange) are compared with
    # ``benchmark_nasdaq``, everything else with ``benchmark_other``; ``benchmarks`` names a
    # symbol's own (symbol -> benchmark). None switches a default off.
    benchmark_nasdaq: str | None = "NQ=F"
    benchmark_other: str | None = "ES=F"
    benchmarks: Mapping[str, str] = field(default_factory=dict)
    # A benchmark quote older than this is not compared with (it would invent a move).
    benchmark_max_age: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one engine call changed: the states to persist and the alerts to record."""

    states: tuple[RuleState, ...] = ()
    alerts: tuple[Alert, ...] = ()
