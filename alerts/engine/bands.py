"""The one threshold arithmetic every rule family shares: holds, recovered, escalation tier."""

from __future__ import annotations

from alerts.engine.config import EngineConfig

# (holds, recovered, tier): the metric is at or past the trigger; it is back inside the
# hysteresis band (re-arm); escalation steps past the trigger (0: none). A plain tuple, not a
# NamedTuple: this is built once per rule per quote, and NamedTuple's __new__ costs 10x more.
Crossing = tuple[bool, bool, int]


def pct_band(level: float, cfg: EngineConfig) -> float:
    """The hysteresis band of a percentage trigger, capped at half of it, so that "drop 1%"
    re-arms at -0.5% rather than needing a rise."""
    return min(cfg.hysteresis_pct, level / 2.0)


def price_band(level: float, cfg: EngineConfig) -> float:
    """The hysteresis band of a price level ("above 150"; "below P" as -price):
    ``hysteresis_pct`` percent of the price."""
    return abs(level) * cfg.hysteresis_pct / 100.0


def crossing(metric: float, level: float, rearm: float, step: float) -> Crossing:
    """The metric against its trigger ``level``: it holds at or past the level, recovers
    below ``rearm`` (the level minus its band) and escalates one tier per ``step`` past the
    level (0: no tiers). A ladder computes ``rearm`` once per rule, not once per quote."""
    holds = metric >= level
    tier = int((metric - level) // step) if step > 0 and holds else 0
    return holds, metric < rearm, tier


def pct_crossing(metric: float, level: float, cfg: EngineConfig) -> Crossing:
    """A move in percentage points against its trigger: "drop 10%" fires at -10%, escalates
    at -15%, -20% (``escalation_step_pct``) and re-arms above -8% (``hysteresis_pct``)."""
    return crossing(metric, level, level - pct_band(level, cfg), cfg.escalation_step_pct)


def price_crossing(metric: float, level: float, cfg: EngineConfig) -> Crossing:
    """A price level: a band of ``hysteresis_pct`` percent of the price, no tiers."""
    return crossing(metric, level, level - price_band(level, cfg), 0.0)


def once_crossing(metric: float, level: float) -> Crossing:
    """A once-a-day event (a gap, a volume surge): it holds or not, and never recovers."""
    return metric >= level, False, 0


def count_crossing(counts: list[float], count: int, pct: float, cfg: EngineConfig) -> Crossing:
    """Breadth: at least ``count`` of the directional moves reach ``pct``; it recovers when
    fewer than ``count`` are even within the band of it."""
    band = pct_band(pct, cfg)
    hit = sum(1 for c in counts if c >= pct)
    near = sum(1 for c in counts if c >= pct - band)
    return hit >= count, near < count, 0
