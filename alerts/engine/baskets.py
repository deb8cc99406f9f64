"""Basket readings: a basket's average move and its breadth (how many members moved)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime

from alerts.engine.bands import count_crossing, pct_crossing
from alerts.engine.config import EngineConfig
from alerts.engine.readings import OPENED, directional, pct
from alerts.lifecycle import Reading
from alerts.models import MarketSession, Quote
from alerts.rules import Basis, BreadthRule, ChangeRule, Rule


def basket_reading(
    rule: Rule,
    members: Sequence[str],
    quotes: Mapping[str, Quote],
    day: date,
    day_start: datetime,
    cfg: EngineConfig,
) -> Reading | None:
    """The basket's reading from its members' latest good quotes of today (None: too few)."""
    moves = _member_moves(rule, members, quotes, day_start)
    if moves is None:
        return None
    changes, latest, session = moves
    # An average over too few names is one stock's move in disguise; breadth only counts
    # names that moved, so it needs no coverage.
    needed = 1
    if not isinstance(rule, BreadthRule):
        needed = max(1, math.ceil(len(members) * cfg.basket_min_coverage))
    if len(changes) < needed:
        return None
    average = sum(changes) / len(changes)
    if isinstance(rule, ChangeRule):
        m = directional(rule.direction, average)
        holds, recovered, tier = pct_crossing(m, rule.pct, cfg)
    elif isinstance(rule, BreadthRule):
        counted = [directional(rule.direction, c) for c in changes]
        holds, recovered, tier = count_crossing(counted, rule.count, rule.pct, cfg)
        m = float(sum(1 for c in counted if c >= rule.pct))
    else:
        return None
    return Reading(m, holds, recovered, tier, latest, None, None, None, average, session, day)


def _member_moves(
    rule: Rule, members: Sequence[str], quotes: Mapping[str, Quote], day_start: datetime
) -> tuple[list[float], datetime, MarketSession] | None:
    changes: list[float] = []
    latest: datetime | None = None
    session = MarketSession.CLOSED
    basis_open = isinstance(rule, ChangeRule) and rule.basis is Basis.OPEN
    for member in members:
        # A member in NoData or halted counts with its last good quote: dropping it would move
        # the average (or the count) and read as a crossing or a recovery.
        q = quotes.get(member)
        if q is None or q.price is None or q.previous_close is None:
            continue
        if q.session is MarketSession.CLOSED or q.time < day_start:
            continue  # an earlier day's move is not part of today's average or count
        if basis_open and q.session not in OPENED:
            continue
        base = q.open if basis_open else q.previous_close
        if base is None or not math.isfinite(base) or base <= 0:
            continue
        changes.append(pct(q.price, base))
        if latest is None or q.time > latest:
            latest, session = q.time, q.session
    if latest is None:
        return None
    return changes, latest, session
