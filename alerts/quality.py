"""The data-quality gate: decide per quote whether the rules may see it (ok, nodata, suspect)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from alerts.models import MarketSession, Quote


class Verdict(StrEnum):
    OK = "ok"
    NODATA = "nodata"  # nothing usable: missing, stale, NaN, non-positive, absurd reference
    SUSPECT = "suspect"  # a value that may be real but needs confirmation before it counts


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    symbol: str
    verdict: Verdict
    reason: str | None = None
    quote: Quote | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


@dataclass(frozen=True, slots=True)
class QuoteBatch:
    """What a market-data source hands the engine: quotes the gate passed, and the rest.

    ``unavailable`` maps a symbol to a short reason ("stale: 130 s old", "rate limited");
    the engine treats those symbols as NoData and evaluates none of their rules.
    """

    at: datetime
    quotes: tuple[Quote, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)
    source: str = "poll"

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(q.symbol for q in self.quotes) | frozenset(self.unavailable)


def plain_reason(reason: str) -> str:
    """A gate reason as a user reads it: ``nodata: bad price 0.0`` -> ``bad price 0.0``.

    ``QuoteBatch.unavailable`` keeps the verdict in front (logs and metrics group by it);
    a chat notice needs only what is wrong.
    """
    head, sep, rest = reason.partition(": ")
    if sep and head in _VERDICT_WORDS:
        return f"unconfirmed {rest}" if head == Verdict.SUSPECT.value else rest
    return reason


_VERDICT_WORDS = frozenset(v.value for v in Verdict)


@dataclass(slots=True)
class _SymbolState:
    last_good: Quote | None = None
    pending: Quote | None = None  # a big jump awaiting confirmation by the next quote


def _bad_number(value: float | None) -> bool:
    return value is None or not math.isfinite(value) or value <= 0


@dataclass(frozen=True, slots=True)
class QuoteProblem:
    """Why one quote cannot be used. ``kind`` is short and stable (states store it, tests and
    metrics group by it); ``detail`` carries the offending value for people and logs."""

    kind: str
    detail: str


def quote_problem(
    quote: Quote,
    *,
    now: datetime,
    stale_after: timedelta,
    max_price_ratio: float = 20.0,
    require_previous_close: bool = True,
    session: MarketSession | None = None,
) -> QuoteProblem | None:
    """The stateless checks every quote passes before a rule sees it, or None when usable.

    The one definition of a usable quote: the market source's gate and the engine both call
    it. ``max_price_ratio``: a price that far from the previous close (either way) means a
    broken reference; Yahoo has served previous closes near zero. ``session`` is the
    calendar's session at ``now`` (None: the quote's own); staleness only counts in the
    regular session, since pre- and post-market may not trade for an hour (at 04:00 a thin
    name's latest price is still the previous close): no move, and no outage.
    """
    price, prev = quote.price, quote.previous_close
    if price is None:
        return QuoteProblem("no price", "bad price None")
    if _bad_number(price):
        return QuoteProblem("bad price", f"bad price {price!r}")
    if prev is None:
        if not require_previous_close:
            return _stale(quote, now, stale_after, session)
        return QuoteProblem("no previous close", "no previous close")
    if _bad_number(prev) or prev <= 1e-9:
        return QuoteProblem("bad previous close", f"absurd previous close {prev!r}")
    ratio = price / prev
    if ratio > max_price_ratio:
        return QuoteProblem("implausible price", f"absurd previous close {prev!r}")
    if ratio < 1.0 / max_price_ratio:
        return QuoteProblem("implausible price", f"implausible price {price:g} against {prev:g}")
    return _stale(quote, now, stale_after, session)


def _stale(
    quote: Quote, now: datetime, stale_after: timedelta, session: MarketSession | None
) -> QuoteProblem | None:
    age = now - quote.time
    if (session or quote.session) is MarketSession.REGULAR and age > stale_after:
        return QuoteProblem("stale", f"stale: {age.total_seconds():.0f} s old")
    return None


class QualityGate:
    """Stateful per symbol: it remembers the last good quote to judge jumps against.

    ``max_jump_pct``: a move larger than this against the last good quote is Suspect until it is
    confirmed by something one bad print cannot fake: the new level still holding
    ``jump_confirm_after`` later (every quote in between nearer the new level than the old), or
    a second source (stream vs poll) seeing the new level. A quote back near the old level
    drops the jump. A burst of bad ticks within a second therefore never confirms itself,
    while a real collapse on the stream is confirmed within a few seconds.
    ``min_reference_ratio``: a previous close below ``price * ratio`` is treated as a broken
    reference (Yahoo has served previous closes near zero), i.e. NoData.
    ``stale_factor``: in the regular session a quote older than ``factor * expected_interval`` is
    stale (extended hours trade too thinly for an old trade to mean a fault).
    """

    def __init__(
        self,
        *,
        max_jump_pct: float = 50.0,
        min_reference_ratio: float = 0.05,
        stale_factor: float = 2.0,
        require_previous_close: bool = True,
        jump_confirm_after: timedelta = timedelta(seconds=5),
    ) -> None:
        self.max_jump_pct = max_jump_pct
        self.jump_confirm_after = jump_confirm_after
        self.min_reference_ratio = min_reference_ratio
        self.stale_factor = stale_factor
        self.require_previous_close = require_previous_close
        self._state: dict[str, _SymbolState] = {}

    def last_good(self, symbol: str) -> Quote | None:
        state = self._state.get(symbol)
        return state.last_good if state else None

    def check(
        self,
        symbol: str,
        quote: Quote | None,
        *,
        now: datetime,
        expected_interval: timedelta,
        session: MarketSession | None = None,
    ) -> QualityVerdict:
        """Judge one observation. ``session`` is the calendar's session at ``now`` (None: the
        quote's own); staleness only counts while that session is open."""
        state = self._state.setdefault(symbol, _SymbolState())
        if quote is None:
            return QualityVerdict(symbol, Verdict.NODATA, "no quote in the response")
        problem = quote_problem(
            quote,
            now=now,
            stale_after=expected_interval * self.stale_factor,
            max_price_ratio=1.0 / self.min_reference_ratio,
            require_previous_close=self.require_previous_close,
            session=session,
        )
        if problem is not None:
            return QualityVerdict(symbol, Verdict.NODATA, problem.detail, quote)
        return self._judge_jump(symbol, state, quote)

    def _judge_jump(self, symbol: str, state: _SymbolState, quote: Quote) -> QualityVerdict:
        assert quote.price is not None
        anchor = state.last_good
        if anchor is None or anchor.price is None:
            state.last_good = quote
            state.pending = None
            return QualityVerdict(symbol, Verdict.OK, None, quote)
        old = anchor.price
        pending = state.pending
        if pending is not None and pending.price is not None and quote.time > pending.time:
            if abs(quote.price - pending.price) >= abs(quote.price - old):
                state.pending = None  # back near the old level: the jump was a bad print
            elif (
                quote.time - pending.time >= self.jump_confirm_after
                or quote.source != pending.source
            ):
                state.pending = None
                state.last_good = quote
                return QualityVerdict(symbol, Verdict.OK, "jump confirmed", quote)
        move_pct = abs(quote.price / old - 1.0) * 100.0
        if move_pct > self.max_jump_pct:
            if state.pending is None:
                state.pending = quote  # the first print of the jump: confirmation counts from it
            return QualityVerdict(
                symbol,
                Verdict.SUSPECT,
                f"jump of {move_pct:.0f}% against last good {old:g}, awaiting confirmation",
                quote,
            )
        state.last_good = quote
        state.pending = None  # an ordinary move from here: the jump is judged afresh
        return QualityVerdict(symbol, Verdict.OK, None, quote)

    def judge_batch(
        self,
        symbols: frozenset[str] | set[str] | list[str] | tuple[str, ...],
        quotes: Mapping[str, Quote],
        *,
        now: datetime,
        expected_interval: timedelta,
        sessions: Mapping[str, MarketSession] | None = None,
        source: str = "poll",
    ) -> QuoteBatch:
        """Judge every requested symbol; those absent from ``quotes`` are NoData."""
        good: list[Quote] = []
        bad: dict[str, str] = {}
        for sym in symbols:
            verdict = self.check(
                sym,
                quotes.get(sym),
                now=now,
                expected_interval=expected_interval,
                session=sessions.get(sym) if sessions else None,
            )
            if verdict.ok and verdict.quote is not None:
                good.append(verdict.quote)
            else:
                bad[sym] = f"{verdict.verdict.value}: {verdict.reason}"
        return QuoteBatch(at=now, quotes=tuple(good), unavailable=bad, source=source)
