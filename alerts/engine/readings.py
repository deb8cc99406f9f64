"""Readings per rule family on one symbol's quote: change and level ladders, rolling windows,
gaps and volume. Each turns a quote into a ``Reading`` through the shared band arithmetic."""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta

from alerts.engine.bands import (
    Crossing,
    crossing,
    once_crossing,
    pct_band,
    pct_crossing,
    price_band,
)
from alerts.engine.config import EngineConfig
from alerts.engine.index import ABOVE, BELOW, LADDER_FAMILIES, PCT_FAMILIES, Binding
from alerts.engine.volume import VolumeProfile
from alerts.lifecycle import Reading
from alerts.models import MarketSession, Quote
from alerts.rules import ChangeRule, Direction, GapRule, VolumeRule

# Sessions in which a quote's ``open`` is today's: "from open" rules wait for them.
OPENED = frozenset({MarketSession.REGULAR, MarketSession.POST})


def pct(price: float, base: float) -> float:
    # Rounded so that 90 against 100 is exactly -10%, not -9.999999999999998: a user's
    # threshold must fire when the price sits exactly on it.
    return round((price / base - 1.0) * 100.0, 9)


def directional(direction: Direction, change: float) -> float:
    """A change in the rule's own direction: a drop of 5% is +5 for "drop", -5 for "rise"."""
    if direction is Direction.DROP:
        return -change
    if direction is Direction.RISE:
        return change
    return abs(change)


_FAMILY_PARTS = {f: (f.partition("-")[0], Direction(f.partition("-")[2])) for f in LADDER_FAMILIES}


def family_metric(
    family: str, price: float, change: float, change_open: float | None
) -> float | None:
    """The value a ladder family sorts its triggers by (None: not measurable yet)."""
    if family == ABOVE:
        return price
    if family == BELOW:
        return -price
    basis, direction = _FAMILY_PARTS[family]
    value = change if basis == "close" else change_open
    if value is None:
        return None
    return directional(direction, value)


def todays_open(q: Quote) -> float | None:
    """The quote's open when it is today's: before the open a quote may carry the last one."""
    o = q.open
    if o is None or not math.isfinite(o) or o <= 0 or q.session not in OPENED:
        return None
    return o


_new_reading = tuple.__new__


def quote_reading(
    metric: float,
    crossed: Crossing,
    q: Quote,
    reference: float | None,
    reference_price: float | None,
    change: float | None,
    price: float | None = None,
) -> Reading:
    """The Reading of one rule on one quote (``price``: the quote's, unless given). Built
    with ``tuple.__new__``: NamedTuple's own constructor is a Python function, and this runs
    once per rule per quote."""
    holds, recovered, tier = crossed
    shown_price = q.price if price is None else price
    fields = (metric, holds, recovered, tier, q.time, reference, shown_price)
    return _new_reading(Reading, (*fields, reference_price, change, q.session, None))


def ladder_thresholds(family: str, level: float, cfg: EngineConfig) -> tuple[float, float]:
    """A ladder rule's (recovery level, escalation step): percentage rules escalate, price
    levels do not."""
    if family in PCT_FAMILIES:
        return level - pct_band(level, cfg), cfg.escalation_step_pct
    return level - price_band(level, cfg), 0.0


def ladder_reading(b: Binding, m: float, q: Quote, change: float, open_: float | None) -> Reading:
    """A change ("drop 10%", "rise 5% from open") or level ("above 150") rule's reading."""
    crossed = crossing(m, b.level, b.rearm, b.step)
    family = b.family
    if family in PCT_FAMILIES:
        if family.startswith("open-"):
            shown = pct(q.price, open_) if open_ is not None and q.price is not None else None
            return quote_reading(m, crossed, q, open_, open_, shown)
        return quote_reading(m, crossed, q, q.previous_close, q.previous_close, change)
    return quote_reading(m, crossed, q, None, q.previous_close, change)


def remember_price(history: deque[tuple[datetime, float]], q: Quote, window: timedelta) -> None:
    """Keep the prices of the longest rolling window any rule of the symbol looks back on."""
    assert q.price is not None
    if not history or history[-1][0] < q.time:
        history.append((q.time, q.price))
    horizon = q.time - window
    while history and history[0][0] < horizon:
        history.popleft()


def window_reading(
    rule: ChangeRule, history: deque[tuple[datetime, float]], q: Quote, cfg: EngineConfig
) -> Reading | None:
    """A rolling window ("drop 3% in 15m"): the move from the window's high (drop), low
    (rise) or either (move)."""
    price = q.price
    assert price is not None
    assert rule.window is not None
    horizon = q.time - rule.window
    window = [p for t, p in history if t >= horizon]
    if not window:
        return None
    hi, lo = max(window), min(window)
    fall, rise = -pct(price, hi), pct(price, lo)
    if rule.direction is Direction.DROP:
        m, ref = fall, hi
    elif rule.direction is Direction.RISE:
        m, ref = rise, lo
    else:
        m, ref = (fall, hi) if fall >= rise else (rise, lo)
    return quote_reading(m, pct_crossing(m, rule.pct, cfg), q, None, ref, pct(price, ref))


def gap_reading(rule: GapRule, q: Quote, open_: float | None) -> Reading | None:
    """ "gap 4%": the regular open against the previous close, once the market has opened."""
    if open_ is None:
        return None
    gap = pct(open_, q.previous_close or open_)
    m = directional(rule.direction, gap)
    prev = q.previous_close
    return quote_reading(m, once_crossing(m, rule.pct), q, prev, prev, gap, price=open_)


def volume_reading(
    rule: VolumeRule, q: Quote, profile: VolumeProfile | None, change: float
) -> Reading | None:
    """ "volume 3x": today's volume so far against the average by this time of day."""
    if profile is None or q.day_volume is None or q.session is not MarketSession.REGULAR:
        return None
    expected = profile.expected(q.time)
    if expected is None or expected <= 0 or not math.isfinite(q.day_volume):
        return None
    ratio = q.day_volume / expected
    prev = q.previous_close
    return quote_reading(ratio, once_crossing(ratio, rule.multiple), q, prev, prev, change)
