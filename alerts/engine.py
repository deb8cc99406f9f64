"""The alert engine: turns quotes and headlines into alerts, once per crossing, by symbol."""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from alerts.baskets import BASKET_PREFIX, basket_name, is_basket_target, resolve_basket
from alerts.index import (
    ABOVE,
    AGGREGATE,
    BELOW,
    LADDER_FAMILIES,
    NEWS,
    OTHER,
    PCT_FAMILIES,
    Binding,
    Ladder,
    SymbolIndex,
)
from alerts.lifecycle import RuleState, RuleStatus
from alerts.models import Alert, AlertKind, MarketSession, NewsItem, Quote, Severity, Watch
from alerts.quality import plain_reason
from alerts.rules import (
    Basis,
    BreadthRule,
    ChangeRule,
    Direction,
    GapRule,
    LevelRule,
    NewsRule,
    Rule,
    RuleSyntaxError,
    VolumeRule,
    parse_rule,
    rule_target_problem,
)

log = logging.getLogger(__name__)

__all__ = [
    "Engine",
    "EngineConfig",
    "Evaluation",
    "RuleState",
    "RuleStatus",
    "VolumeProfile",
    "build_volume_profile",
    "quote_problem",
]


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
    # False evaluates every rule of every quoted symbol on every batch: the baseline the
    # benchmark measures the index against. Results are identical either way.
    indexed: bool = True


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one engine call changed: the states to persist and the alerts to record."""

    states: tuple[RuleState, ...] = ()
    alerts: tuple[Alert, ...] = ()


@dataclass(frozen=True, slots=True)
class VolumeProfile:
    """Average cumulative regular-session volume by time of day, for ``volume Nx`` rules.

    ``cumulative[i]`` is the average volume traded from the open to the end of bucket ``i``
    (``bucket_minutes`` long) over recent sessions (e.g. 20 sessions of 5-minute bars).
    """

    tz: str
    open_time: time
    bucket_minutes: int
    cumulative: tuple[float, ...]

    def expected(self, at: datetime) -> float | None:
        """The average volume by ``at``; None before the first bucket ends or without data."""
        if not self.cumulative or self.bucket_minutes <= 0:
            return None
        local = at.astimezone(ZoneInfo(self.tz))
        opened = local.replace(
            hour=self.open_time.hour, minute=self.open_time.minute, second=0, microsecond=0
        )
        minutes = (local - opened).total_seconds() / 60.0
        index = int(minutes // self.bucket_minutes) - 1
        if index < 0:
            return None
        return self.cumulative[min(index, len(self.cumulative) - 1)]


def build_volume_profile(
    bars: Iterable[tuple[datetime, float]],
    *,
    tz: str,
    open_time: time = time(9, 30),
    bucket_minutes: int = 5,
    sessions: int = 20,
) -> VolumeProfile | None:
    """Average cumulative volume by time of day from intraday bars (start time, volume).

    Feed it regular-session bars of the last few weeks (e.g. yfinance ``period="1mo",
    interval="5m"``); pre/post-market bars are ignored. Only the latest ``sessions`` days
    count; today's partial session should be left out by the caller. None without data.
    """
    zone = ZoneInfo(tz)
    days: dict[date, list[float]] = {}
    for start, volume in bars:
        if not math.isfinite(volume) or volume < 0:
            continue
        local = start.astimezone(zone)
        opened = local.replace(
            hour=open_time.hour, minute=open_time.minute, second=0, microsecond=0
        )
        minutes = (local - opened).total_seconds() / 60.0
        if minutes < 0:
            continue
        index = int(minutes // bucket_minutes)
        if index >= 24 * 60 // bucket_minutes:
            continue
        per_bucket = days.setdefault(local.date(), [])
        if len(per_bucket) <= index:
            per_bucket.extend([0.0] * (index + 1 - len(per_bucket)))
        per_bucket[index] += volume
    chosen = [days[d] for d in sorted(days)[-sessions:]]
    if not chosen:
        return None
    width = max(len(b) for b in chosen)
    cumulative: list[float] = []
    for i in range(width):
        totals = [sum(b[: i + 1]) for b in chosen if len(b) > i]
        cumulative.append(sum(totals) / len(totals))
    return VolumeProfile(tz, open_time, bucket_minutes, tuple(cumulative))


def quote_problem(quote: Quote, now: datetime, config: EngineConfig) -> str | None:
    """Why a quote cannot be trusted (NoData), or None when it is usable."""
    price, prev = quote.price, quote.previous_close
    if price is None:
        return "no price"
    if not math.isfinite(price) or price <= 0:
        return "bad price"
    if prev is None:
        return "no previous close"
    if not math.isfinite(prev) or prev <= 1e-9:
        return "bad previous close"
    ratio = price / prev
    if ratio > config.max_price_ratio or ratio < 1.0 / config.max_price_ratio:
        return "implausible price"
    if quote.session is MarketSession.REGULAR and now - quote.time > config.stale_after:
        return "stale"
    return None


@dataclass(slots=True)
class _Out:
    states: dict[tuple[int, str], RuleState] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    degraded: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def result(self) -> Evaluation:
        return Evaluation(tuple(self.states.values()), tuple(self.alerts))


class _Reading(NamedTuple):
    """One evaluation input for a binding: the condition and what an alert would show."""

    metric: float
    holds: bool
    recovered: bool
    tier: int
    at: datetime
    reference: float | None  # the day marker (previous close / open); None for day-free rules
    price: float | None
    reference_price: float | None
    change_pct: float | None
    session: MarketSession | None
    day: date | None = None  # baskets' day marker: the New York trading day of the reading


# Enum member lookups are descriptor calls; the hot path uses plain module names.
_ARMED, _PENDING, _FIRING = RuleStatus.ARMED, RuleStatus.PENDING, RuleStatus.FIRING
_K_FIRING, _K_ESCALATED = AlertKind.FIRING, AlertKind.ESCALATED
_K_RESOLVED, _K_REPEAT = AlertKind.RESOLVED, AlertKind.REPEAT
_KIND_TEXT = {k: k.value for k in AlertKind}
# Sessions in which a quote's ``open`` is today's: "from open" rules wait for them.
_OPENED = frozenset({MarketSession.REGULAR, MarketSession.POST})
# A basket's trading day is New York's, starting with the US premarket at 04:00 ET: its
# members' previous closes change at different hours (Amsterdam's at 03:00 ET), so they
# cannot mark the day without resetting a mixed basket twice. A weekend belongs to Friday's
# day, so Amsterdam's Monday 03:00 ET open does not start a day of its own an hour before
# New York's. (Holidays would need an exchange calendar; alerts/ stays pure.)
_NEW_YORK = ZoneInfo("America/New_York")
_DAY_STARTS = time(4, 0)


def _trading_day(at: datetime) -> tuple[date, datetime]:
    """The New York trading day ``at`` belongs to, and the instant that day started."""
    local = at.astimezone(_NEW_YORK)
    day = local.date()
    if local.time() < _DAY_STARTS:
        day -= timedelta(days=1)
    if day.weekday() >= 5:
        day -= timedelta(days=day.weekday() - 4)
    # 04:00 is never inside a DST gap or fold (those happen at 02:00).
    return day, datetime.combine(day, _DAY_STARTS, tzinfo=_NEW_YORK)


def _evolve(
    st: RuleState,
    status: RuleStatus,
    tier: int,
    since: datetime | None,
    reference: float | None,
    last_alert_at: datetime | None,
    repeats: int,
    day: date | None,
) -> RuleState:
    # dataclasses.replace is several times slower, and this runs for every crossing.
    return RuleState(
        st.watch_id,
        st.symbol,
        status,
        tier,
        st.episode,
        since,
        reference,
        st.fired_at,
        last_alert_at,
        repeats,
        st.nodata_since,
        st.nodata_reason,
        st.seen,
        day,
    )


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def _directional(direction: Direction, change: float) -> float:
    if direction is Direction.DROP:
        return -change
    if direction is Direction.RISE:
        return change
    return abs(change)


class Engine:
    """Holds the watches, their states and the last quotes; every call returns what changed.

    Not thread-safe: the pipeline calls it from one task.
    """

    def __init__(self, config: EngineConfig = EngineConfig()) -> None:
        self.config = config
        self._logged_rejections: set[tuple[int, str]] = set()
        self._reset()

    def _reset(self) -> None:
        self._watches: dict[int, Watch] = {}
        self._bound: dict[int, list[Binding]] = {}
        self._index: dict[str, SymbolIndex] = {}
        self._aggregates: dict[tuple[int, str], Binding] = {}
        self._news: dict[tuple[int, str], Binding] = {}
        self._states: dict[tuple[int, str], RuleState] = {}
        self._baskets: dict[str, dict[str, tuple[str, ...]]] = {}
        self._quotes: dict[str, Quote] = {}
        self._history: dict[str, deque[tuple[datetime, float]]] = {}
        self._profiles: dict[str, VolumeProfile] = {}
        self._nodata: dict[str, tuple[datetime, str]] = {}
        self._channel_nodata: dict[str, set[str]] = {}
        self._outages: dict[str, datetime] = {}
        self._resolved: dict[str, bool] = {}
        self._parse_cache: dict[str, Rule] = {}
        self._has_cooldown = self.config.cooldown > timedelta(0)
        self.rejected: dict[int, str] = {}  # watch id -> why its rule could not be used

    # ------------------------------------------------------------------ set-up

    def load(
        self,
        watches: Iterable[Watch],
        states: Iterable[RuleState],
        baskets: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        """Replace everything with what the store holds (at start-up or after a restart)."""
        self._reset()
        for channel, own in (baskets or {}).items():
            self._baskets[channel] = {n.lower(): tuple(m) for n, m in own.items()}
        for w in watches:
            self._bind(w)
        for st in states:
            key = (st.watch_id, st.symbol)
            self._states[key] = st
            b = self._find_binding(key)
            if b is None:
                continue
            if st.status is not RuleStatus.ARMED and b.family not in (AGGREGATE, NEWS):
                idx = self._index.get(b.symbol)
                if idx is not None and b.key not in idx.others:
                    idx.active[b.key] = b
            if st.nodata_since is not None and b.family not in (AGGREGATE, NEWS):
                since = st.nodata_since
                prior = self._nodata.get(st.symbol)
                if prior is None or since < prior[0]:
                    self._nodata[st.symbol] = (since, st.nodata_reason or "no data")
                self._channel_nodata.setdefault(b.channel, set()).add(st.symbol)
                start = self._outages.get(b.channel)
                if start is None or since < start:
                    self._outages[b.channel] = since

    def upsert_watch(self, watch: Watch) -> None:
        """Add or replace a watch. A new watch whose condition already holds fires on the
        next quote of its symbol."""
        old = self._watches.get(watch.id)
        if old is not None:
            same_rule = old.rule_text == watch.rule_text and old.target == watch.target
            self._unbind(watch.id, keep_states=same_rule)
        self._bind(watch)
        if old is not None:
            # Only after re-binding: a replaced watch still on a NoData symbol keeps the
            # channel's outage open, so "recovered" follows the "degraded" it was sent.
            self._forget_channel_nodata(old.channel)

    def remove_watch(self, watch_id: int) -> None:
        watch = self._watches.get(watch_id)
        self._unbind(watch_id, keep_states=False)
        if watch is not None:
            self._forget_channel_nodata(watch.channel)

    def set_baskets(self, channel: str, baskets: Mapping[str, Sequence[str]]) -> None:
        """Replace a channel's own baskets and re-bind the watches that use them."""
        self._baskets[channel] = {n.lower(): tuple(m) for n, m in baskets.items()}
        for w in [w for w in self._watches.values() if w.channel == channel]:
            if is_basket_target(w.target):
                before = {b.key for b in self._bound.get(w.id, [])}
                self._unbind(w.id, keep_states=True)
                self._bind(w)
                after = {b.key for b in self._bound.get(w.id, [])}
                for gone in before - after:
                    self._states.pop(gone, None)
        self._forget_channel_nodata(channel)

    def set_resolved_notices(self, channel: str, enabled: bool) -> None:
        self._resolved[channel] = enabled

    def set_volume_profile(self, symbol: str, profile: VolumeProfile | None) -> None:
        if profile is None:
            self._profiles.pop(symbol, None)
        else:
            self._profiles[symbol] = profile

    def symbols(self) -> frozenset[str]:
        """Every symbol some watch needs quotes for, baskets expanded."""
        return frozenset(s for s, idx in self._index.items() if idx.bindings or idx.aggregates)

    def states(self) -> list[RuleState]:
        return list(self._states.values())

    def state(self, watch_id: int, symbol: str) -> RuleState | None:
        return self._states.get((watch_id, symbol))

    def watches(self) -> list[Watch]:
        return list(self._watches.values())

    def last_quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    def latest_changes(self, symbols: Iterable[str] | None = None) -> dict[str, float]:
        """Latest change % against the previous close, for symbols with good data."""
        wanted = self._quotes.keys() if symbols is None else symbols
        out: dict[str, float] = {}
        for symbol in wanted:
            q = self._quotes.get(symbol)
            if q is None or symbol in self._nodata or q.price is None or not q.previous_close:
                continue
            out[symbol] = _pct(q.price, q.previous_close)
        return out

    def nodata_symbols(self) -> dict[str, str]:
        """Symbols currently in NoData, with the reason."""
        return {s: reason for s, (_, reason) in self._nodata.items()}

    # ------------------------------------------------------------------ binding

    def _parse(self, text: str) -> Rule:
        rule = self._parse_cache.get(text)
        if rule is None:
            rule = parse_rule(text)
            self._parse_cache[text] = rule
        return rule

    def _find_binding(self, key: tuple[int, str]) -> Binding | None:
        for b in self._bound.get(key[0], ()):
            if b.key == key:
                return b
        return None

    def _symbol_index(self, symbol: str) -> SymbolIndex:
        idx = self._index.get(symbol)
        if idx is None:
            idx = self._index[symbol] = SymbolIndex()
        return idx

    def _bind(self, watch: Watch) -> None:
        try:
            rule = self._parse(watch.rule_text)
            problem = rule_target_problem(rule, watch.target)
        except RuleSyntaxError as exc:
            problem = str(exc)
        if problem is not None:
            self._reject(watch, problem)
            return
        self._watches[watch.id] = watch
        bound: list[Binding] = []
        target = watch.target
        if isinstance(rule, NewsRule):
            b = Binding(watch, rule, target, NEWS, 0.0)
            self._news[b.key] = b
            bound.append(b)
        elif is_basket_target(target):
            name = basket_name(target)
            members = resolve_basket(name, self._baskets.get(watch.channel))
            symbol = BASKET_PREFIX + name
            aggregate = isinstance(rule, BreadthRule) or (
                isinstance(rule, ChangeRule) and rule.window is None
            )
            if aggregate:
                b = Binding(watch, rule, symbol, AGGREGATE, 0.0)
                self._aggregates[b.key] = b
                bound.append(b)
                for m in members:
                    self._symbol_index(m).aggregates[b.key] = b
            if not isinstance(rule, BreadthRule):
                for m in members:
                    bound.append(self._bind_symbol(watch, rule, m))
        else:
            bound.append(self._bind_symbol(watch, rule, target))
        self._bound[watch.id] = bound

    def _reject(self, watch: Watch, problem: str) -> None:
        self.rejected[watch.id] = problem
        # Once per watch and rule text for the engine's life: load() runs again on every
        # restart of the pipeline's view, and a broken watch stays broken until edited.
        if (watch.id, watch.rule_text) not in self._logged_rejections:
            self._logged_rejections.add((watch.id, watch.rule_text))
            log.warning(
                "watch #%s on %s in %s is never evaluated: %s",
                watch.id,
                watch.target,
                watch.channel,
                problem,
            )

    def _bind_symbol(self, watch: Watch, rule: Rule, symbol: str) -> Binding:
        idx = self._symbol_index(symbol)
        family, level = OTHER, 0.0
        if isinstance(rule, ChangeRule) and rule.window is None:
            family = f"{rule.basis.value}-{rule.direction.value}"
            level = rule.pct
        elif isinstance(rule, LevelRule):
            family = ABOVE if rule.above else BELOW
            level = rule.price if rule.above else -rule.price
        b = Binding(watch, rule, symbol, family, level)
        idx.bindings[b.key] = b
        if family == OTHER:
            idx.others[b.key] = b
            if isinstance(rule, ChangeRule) and rule.window is not None:
                if idx.max_window is None or rule.window > idx.max_window:
                    idx.max_window = rule.window
                self._history.setdefault(symbol, deque())
        else:
            ladder = idx.ladders.get(family)
            if ladder is None:
                ladder = idx.ladders[family] = Ladder()
            ladder.add(b)
            # It may already be past its level: look at it on the next quote.
            idx.active[b.key] = b
        st = self._states.get(b.key)
        if st is None and symbol in self._nodata:
            since, reason = self._nodata[symbol]
            self._states[b.key] = RuleState(
                watch.id, symbol, nodata_since=since, nodata_reason=reason
            )
            self._channel_nodata.setdefault(b.channel, set()).add(symbol)
        return b

    def _unbind(self, watch_id: int, *, keep_states: bool) -> None:
        self._watches.pop(watch_id, None)
        self.rejected.pop(watch_id, None)
        for b in self._bound.pop(watch_id, []):
            if not keep_states:
                self._states.pop(b.key, None)
            if b.family == NEWS:
                self._news.pop(b.key, None)
                continue
            if b.family == AGGREGATE:
                self._aggregates.pop(b.key, None)
                for member_idx in self._index.values():
                    member_idx.aggregates.pop(b.key, None)
                continue
            found = self._index.get(b.symbol)
            if found is None:
                continue
            idx = found
            idx.bindings.pop(b.key, None)
            idx.active.pop(b.key, None)
            if idx.others.pop(b.key, None) is not None:
                idx.max_window = max(
                    (
                        o.rule.window
                        for o in idx.others.values()
                        if isinstance(o.rule, ChangeRule) and o.rule.window is not None
                    ),
                    default=None,
                )
            ladder = idx.ladders.get(b.family)
            if ladder is not None:
                ladder.remove(b)

    def _forget_channel_nodata(self, channel: str) -> None:
        # A channel that no longer watches a NoData symbol is not degraded by it.
        bad = self._channel_nodata.get(channel)
        if not bad:
            return
        still = {
            s
            for s in bad
            if any(
                b.channel == channel for b in self._index.get(s, SymbolIndex()).bindings.values()
            )
        }
        self._channel_nodata[channel] = still
        if not still:
            self._outages.pop(channel, None)

    # ------------------------------------------------------------------ evaluation

    def on_quotes(self, quotes: Sequence[Quote], now: datetime) -> Evaluation:
        """Evaluate a batch of quotes in order. Bad quotes put their symbol into NoData."""
        out = _Out()
        naive = not self.config.indexed
        fresh_after = now - self.config.stale_after
        index, last_quotes, nodata = self._index, self._quotes, self._nodata
        regular = MarketSession.REGULAR
        quoted: set[str] = set()
        touched_aggregates: dict[tuple[int, str], Binding] = {}
        for q in quotes:
            idx = index.get(q.symbol)
            if idx is None:
                continue
            last = last_quotes.get(q.symbol)
            if last is not None:
                if q.time < last.time:
                    continue  # out of order: never let an older price overwrite a newer one
                if (
                    not naive
                    and q.price == last.price
                    and q.previous_close == last.previous_close
                    and q.open == last.open
                    and q.session is last.session
                    and q.halted == last.halted
                    and not idx.active
                    and not idx.others
                    and not idx.aggregates
                    and q.symbol not in nodata
                    and (q.session is not regular or q.time >= fresh_after)
                ):
                    # Most of a batch is unchanged prices; they can cross nothing. (A NaN
                    # never compares equal, so bad quotes always take the full path.)
                    last_quotes[q.symbol] = q
                    continue
            if idx.aggregates:
                touched_aggregates.update(idx.aggregates)
            problem = quote_problem(q, now, self.config)
            if problem is not None:
                self._enter_nodata(q.symbol, problem, now, out)
                continue
            self._quotes[q.symbol] = q
            if q.symbol in self._nodata:
                self._leave_nodata(q.symbol, now, out)
            if q.session is MarketSession.CLOSED or q.halted:
                continue  # inhibited: a closed or halted market moves nothing
            quoted.add(q.symbol)
            self._evaluate_symbol(idx, q, out, naive=naive)
        if naive:
            for symbol, idx in self._index.items():
                q2 = self._quotes.get(symbol)
                if (
                    symbol not in quoted
                    and q2 is not None
                    and symbol not in self._nodata
                    and q2.session is not MarketSession.CLOSED
                    and not q2.halted
                ):
                    self._evaluate_symbol(idx, q2, out, naive=True)
        if touched_aggregates:
            day, day_start = _trading_day(now)
            for b in touched_aggregates.values():
                self._evaluate_aggregate(b, day, day_start, out)
        self._flush_degraded(now, out)
        return out.result()

    def mark_nodata(self, symbols: Iterable[str], reason: str, now: datetime) -> Evaluation:
        """The market-data gate says these symbols cannot be trusted, all for one reason."""
        return self.mark_unavailable(dict.fromkeys(symbols, reason), now)

    def mark_unavailable(self, reasons: Mapping[str, str], now: datetime) -> Evaluation:
        """The market-data gate's verdict on a batch: symbol -> why it cannot be trusted.

        One call per batch, so a channel's "degraded" notice names every symbol that went
        bad together (reasons differ per symbol: a jump's reason carries its size).
        """
        out = _Out()
        for symbol in sorted(reasons):
            if symbol in self._index:
                self._enter_nodata(symbol, reasons[symbol], now, out)
        self._flush_degraded(now, out)
        return out.result()

    def on_news(self, items: Sequence[NewsItem], now: datetime) -> Evaluation:
        """Match headlines against news rules; each story is alerted once per watch."""
        out = _Out()
        if not self._news:
            return out.result()
        recent = [i for i in items if now - i.published <= self.config.news_max_age]
        for b in self._news.values():
            rule = b.rule
            assert isinstance(rule, NewsRule)
            pattern = _keyword_pattern(rule.keyword)
            st = self._states.get(b.key) or RuleState(b.watch.id, b.symbol)
            seen = list(st.seen)
            new_alerts: list[Alert] = []
            for item in recent:
                if item.key in seen or not pattern.search(item.title):
                    continue
                target = b.watch.target
                if target.lower() != "news" and item.symbols and target not in item.symbols:
                    continue
                seen.append(item.key)
                new_alerts.append(
                    Alert(
                        key=f"{b.watch.id}:news:{item.key}",
                        channel=b.channel,
                        kind=AlertKind.NEWS,
                        symbol=item.symbols[0] if item.symbols else target,
                        at=now,
                        severity=Severity.INFO,
                        watch_id=b.watch.id,
                        rule_text=rule.canonical,
                        headline=item.title,
                        url=item.url,
                        note=b.watch.note,
                    )
                )
            if new_alerts:
                kept = tuple(seen[-self.config.news_memory :])
                new_state = replace(st, seen=kept, last_alert_at=now)
                self._states[b.key] = new_state
                out.states[b.key] = new_state
                out.alerts.extend(new_alerts)
        return out.result()

    # -- NoData

    def _enter_nodata(self, symbol: str, reason: str, now: datetime, out: _Out) -> None:
        if symbol in self._nodata:
            return
        self._nodata[symbol] = (now, reason)
        idx = self._index[symbol]
        idx.reset_levels()
        idx.last_prev = idx.last_open = None
        history = self._history.get(symbol)
        if history is not None:
            history.clear()
        for b in idx.bindings.values():
            st = self._states.get(b.key) or RuleState(b.watch.id, symbol)
            new_state = replace(st, nodata_since=now, nodata_reason=reason)
            self._states[b.key] = new_state
            out.states[b.key] = new_state
            channel_bad = self._channel_nodata.setdefault(b.channel, set())
            if symbol not in channel_bad:
                channel_bad.add(symbol)
                if b.channel not in self._outages:
                    # A new outage for this channel: one notice, sent when the call ends.
                    self._outages[b.channel] = now
                    out.degraded[b.channel] = []
                if b.channel in out.degraded:
                    out.degraded[b.channel].append((symbol, reason))

    def _flush_degraded(self, now: datetime, out: _Out) -> None:
        for channel, items in out.degraded.items():
            if not items or channel not in self._outages:
                continue
            symbols = sorted({s for s, _ in items})
            out.alerts.append(
                Alert(
                    key=f"degraded:{channel}:{self._outages[channel].astimezone(UTC).isoformat()}",
                    channel=channel,
                    kind=AlertKind.DEGRADED,
                    symbol=symbols[0] if len(symbols) == 1 else "*",
                    at=now,
                    severity=Severity.WARNING,
                    note=degraded_note(items),
                )
            )
        out.degraded.clear()

    def _leave_nodata(self, symbol: str, now: datetime, out: _Out) -> None:
        self._nodata.pop(symbol, None)
        idx = self._index[symbol]
        idx.reset_levels()
        channels: set[str] = set()
        for b in idx.bindings.values():
            channels.add(b.channel)
            st = self._states.get(b.key)
            if st is not None and st.nodata_since is not None:
                new_state = replace(st, nodata_since=None, nodata_reason=None)
                self._states[b.key] = new_state
                out.states[b.key] = new_state
        for channel in sorted(channels):
            bad = self._channel_nodata.get(channel)
            if bad is None:
                continue
            bad.discard(symbol)
            if bad:
                continue
            start = self._outages.pop(channel, None)
            if start is None:
                continue
            if out.degraded.pop(channel, None) is not None:
                continue  # degraded and back within one call: say nothing
            out.alerts.append(
                Alert(
                    key=f"recovered:{channel}:{start.astimezone(UTC).isoformat()}",
                    channel=channel,
                    kind=AlertKind.RECOVERED,
                    symbol=symbol,
                    at=now,
                    severity=Severity.INFO,
                    note=f"data is back after {_short(now - start)}",
                )
            )

    # -- price rules

    def _evaluate_symbol(self, idx: SymbolIndex, q: Quote, out: _Out, *, naive: bool) -> None:
        price = q.price
        prev = q.previous_close
        assert price is not None
        assert prev is not None
        seen = (price, prev, q.open, q.session)
        if not naive and seen == idx.last_seen and not idx.active and not idx.others:
            return  # nothing moved and nothing waits on time: no rule can change
        idx.last_seen = seen
        if idx.last_prev is not None and not _same(idx.last_prev, prev):
            idx.reset_levels("close-")  # a new trading day: the old metric says nothing
        idx.last_prev = prev
        open_ = q.open if q.open is not None and math.isfinite(q.open) and q.open > 0 else None
        if q.session not in _OPENED:
            open_ = None  # before today's open a quote may still carry the last session's
        if open_ is None or (idx.last_open is not None and not _same(idx.last_open, open_)):
            idx.reset_levels("open-")
        idx.last_open = open_
        change = _pct(price, prev)
        change_open = _pct(price, open_) if open_ is not None else None

        history = self._history.get(q.symbol)
        if history is not None and idx.max_window is not None:
            if not history or history[-1][0] < q.time:
                history.append((q.time, price))
            horizon = q.time - idx.max_window
            while history and history[0][0] < horizon:
                history.popleft()

        metrics: dict[str, float] = {}
        for family in idx.ladders:
            m = _family_metric(family, price, change, change_open)
            if m is not None:
                metrics[family] = m

        done: set[tuple[int, str]] = set()
        for b in list(idx.active.values()):
            if b.family in metrics:
                done.add(b.key)
                self._advance(b, self._ladder_reading(b, metrics[b.family], q, change, open_), out)
        for family, ladder in idx.ladders.items():
            m1 = metrics.get(family)
            if m1 is None:
                continue
            # The baseline evaluates every rule, every time.
            candidates = ladder.items if naive else ladder.candidates(m1)
            ladder.last = m1
            for b in candidates:
                if b.key not in done:
                    self._advance(b, self._ladder_reading(b, m1, q, change, open_), out)
        for b in idx.others.values():
            reading = self._other_reading(b, q, change, open_)
            if reading is not None:
                self._advance(b, reading, out)

    def _ladder_reading(
        self, b: Binding, m: float, q: Quote, change: float, open_: float | None
    ) -> _Reading:
        cfg = self.config
        level = b.level
        if b.family in PCT_FAMILIES:
            band = min(cfg.hysteresis_pct, level / 2.0)
            step = cfg.escalation_step_pct
            tier = int((m - level) // step) if step > 0 and m >= level else 0
            is_open = b.family.startswith("open-")
            reference = open_ if is_open else q.previous_close
            shown = change_open_of(q, open_) if is_open else change
            return _Reading(
                m,
                m >= level,
                m < level - band,
                tier,
                q.time,
                reference,
                q.price,
                reference,
                shown,
                q.session,
            )
        band = abs(level) * cfg.hysteresis_pct / 100.0
        return _Reading(
            m,
            m >= level,
            m < level - band,
            0,
            q.time,
            None,
            q.price,
            q.previous_close,
            change,
            q.session,
        )

    def _other_reading(
        self, b: Binding, q: Quote, change: float, open_: float | None
    ) -> _Reading | None:
        rule = b.rule
        cfg = self.config
        price = q.price
        assert price is not None
        if isinstance(rule, ChangeRule) and rule.window is not None:
            history = self._history.get(q.symbol)
            if not history:
                return None
            horizon = q.time - rule.window
            window = [p for t, p in history if t >= horizon]
            hi, lo = max(window), min(window)
            fall = -_pct(price, hi)
            rise = _pct(price, lo)
            if rule.direction is Direction.DROP:
                m, ref = fall, hi
            elif rule.direction is Direction.RISE:
                m, ref = rise, lo
            else:
                m, ref = (fall, hi) if fall >= rise else (rise, lo)
            band = min(cfg.hysteresis_pct, rule.pct / 2.0)
            step = cfg.escalation_step_pct
            tier = int((m - rule.pct) // step) if step > 0 and m >= rule.pct else 0
            return _Reading(
                m,
                m >= rule.pct,
                m < rule.pct - band,
                tier,
                q.time,
                None,
                price,
                ref,
                _pct(price, ref),
                q.session,
            )
        if isinstance(rule, GapRule):
            if open_ is None or q.session not in (MarketSession.REGULAR, MarketSession.POST):
                return None
            gap = _pct(open_, q.previous_close or open_)
            m = _directional(rule.direction, gap)
            return _Reading(
                m,
                m >= rule.pct,
                False,
                0,
                q.time,
                q.previous_close,
                open_,
                q.previous_close,
                gap,
                q.session,
            )
        if isinstance(rule, VolumeRule):
            profile = self._profiles.get(q.symbol)
            if profile is None or q.day_volume is None or q.session is not MarketSession.REGULAR:
                return None
            expected = profile.expected(q.time)
            if expected is None or expected <= 0 or not math.isfinite(q.day_volume):
                return None
            ratio = q.day_volume / expected
            return _Reading(
                ratio,
                ratio >= rule.multiple,
                False,
                0,
                q.time,
                q.previous_close,
                price,
                q.previous_close,
                change,
                q.session,
            )
        return None

    def _evaluate_aggregate(self, b: Binding, day: date, day_start: datetime, out: _Out) -> None:
        rule = b.rule
        name = b.symbol[len(BASKET_PREFIX) :]
        members = resolve_basket(name, self._baskets.get(b.channel))
        if not members:
            return
        changes: list[float] = []
        latest: datetime | None = None
        session: MarketSession | None = None
        basis_open = isinstance(rule, ChangeRule) and rule.basis is Basis.OPEN
        for member in members:
            # A member in NoData or halted counts with its last good quote: dropping it would
            # move the average (or the count) and read as a crossing or a recovery.
            q = self._quotes.get(member)
            if q is None or q.price is None or q.previous_close is None:
                continue
            if q.session is MarketSession.CLOSED:
                continue
            if q.time < day_start:
                continue  # an earlier day's move is not part of today's average or count
            base = q.open if basis_open else q.previous_close
            if basis_open and q.session not in _OPENED:
                continue
            if base is None or not math.isfinite(base) or base <= 0:
                continue
            changes.append(_pct(q.price, base))
            if latest is None or q.time > latest:
                latest, session = q.time, q.session
        # An average over too few names is one stock's move in disguise; breadth only
        # counts names that moved, so it needs no coverage.
        needed = 1
        if not isinstance(rule, BreadthRule):
            needed = max(1, math.ceil(len(members) * self.config.basket_min_coverage))
        if latest is None or len(changes) < needed:
            return
        average = sum(changes) / len(changes)
        cfg = self.config
        if isinstance(rule, ChangeRule):
            m = _directional(rule.direction, average)
            band = min(cfg.hysteresis_pct, rule.pct / 2.0)
            step = cfg.escalation_step_pct
            tier = int((m - rule.pct) // step) if step > 0 and m >= rule.pct else 0
            reading = _Reading(
                m,
                m >= rule.pct,
                m < rule.pct - band,
                tier,
                latest,
                None,
                None,
                None,
                average,
                session,
                day,
            )
        elif isinstance(rule, BreadthRule):
            band = min(cfg.hysteresis_pct, rule.pct / 2.0)
            hit = sum(1 for c in changes if _directional(rule.direction, c) >= rule.pct)
            near = sum(1 for c in changes if _directional(rule.direction, c) >= rule.pct - band)
            reading = _Reading(
                float(hit),
                hit >= rule.count,
                near < rule.count,
                0,
                latest,
                None,
                None,
                None,
                average,
                session,
                day,
            )
        else:
            return
        self._advance(b, reading, out)

    # -- the lifecycle

    def _advance(self, b: Binding, r: _Reading, out: _Out) -> None:
        cfg = self.config
        key = b.key
        old = self._states.get(key)
        st = old if old is not None else RuleState(b.watch.id, b.symbol)
        if st.nodata_since is not None:
            return  # never a crossing, never a recovery on NoData
        if (
            st.status is not _ARMED
            and r.reference is not None
            and st.reference is not None
            and not _same(st.reference, r.reference)
        ):
            # A new trading day moved the baseline: the old episode ends without a "resolved".
            st = _evolve(st, _ARMED, 0, None, st.reference, st.last_alert_at, 0, st.day)
        elif st.status is not _ARMED and r.day is not None and _day_moved(st, r.day):
            # The same for a basket, whose day is New York's (see ``_trading_day``).
            st = _evolve(st, _ARMED, 0, None, st.reference, st.last_alert_at, 0, st.day)
        confirm = b.confirm
        alert: tuple[AlertKind, int] | None = None
        new = st
        if st.status is _ARMED:
            if r.holds:
                cooling = (
                    self._has_cooldown
                    and st.fired_at is not None
                    and r.at < st.fired_at + cfg.cooldown
                )
                if cooling:
                    pass  # held back: stays armed (and active) until the cooldown is over
                elif confirm:
                    new = _evolve(
                        st, _PENDING, st.tier, r.at, r.reference, st.last_alert_at, 0, r.day
                    )
                else:
                    new, alert = self._fire(st, r, r.at), (_K_FIRING, r.tier)
        elif st.status is _PENDING:
            if not r.holds:
                new = _evolve(st, _ARMED, st.tier, None, st.reference, st.last_alert_at, 0, st.day)
            elif confirm and st.since is not None and r.at - st.since >= confirm:
                new, alert = self._fire(st, r, st.since), (_K_FIRING, r.tier)
        else:  # FIRING
            if r.recovered:
                new = _evolve(st, _ARMED, st.tier, r.at, st.reference, st.last_alert_at, 0, st.day)
                if self._resolved.get(b.channel, cfg.resolved_notices):
                    alert = (_K_RESOLVED, st.tier)
            elif r.holds and r.tier > st.tier:
                new = _evolve(
                    st, st.status, r.tier, st.since, st.reference, r.at, st.repeats, st.day
                )
                alert = (_K_ESCALATED, r.tier)
            elif (
                cfg.repeat_interval is not None
                and st.last_alert_at is not None
                and r.at - st.last_alert_at >= cfg.repeat_interval
            ):
                new = _evolve(
                    st, st.status, st.tier, st.since, st.reference, r.at, st.repeats + 1, st.day
                )
                alert = (_K_REPEAT, new.repeats)
        # Transitions always build a new object, so identity tells whether anything changed.
        if new is not (old if old is not None else st):
            self._states[key] = new
            out.states[key] = new
        if b.family not in (OTHER, AGGREGATE):
            idx = self._index[b.symbol]
            if new.status is _ARMED and not r.holds:
                idx.active.pop(key, None)
            else:
                idx.active[key] = b
        if alert is not None:
            out.alerts.append(self._alert(b, new, r, *alert))

    def _fire(self, st: RuleState, r: _Reading, started: datetime) -> RuleState:
        # In UTC, so the same instant gives the same key whichever zone the source used.
        episode = started.astimezone(UTC).isoformat()
        if st.episode is not None and st.episode.partition("#")[0] == episode:
            # Fired, re-armed and fired again at one timestamp: keep the keys distinct.
            _, _, n = st.episode.partition("#")
            episode = f"{episode}#{int(n or 1) + 1}"
        # Built directly rather than with dataclasses.replace: this is the hot path of a storm.
        return RuleState(
            st.watch_id,
            st.symbol,
            _FIRING,
            r.tier,
            episode,
            r.at,
            r.reference,
            r.at,
            r.at,
            0,
            st.nodata_since,
            st.nodata_reason,
            st.seen,
            r.day,
        )

    def _alert(self, b: Binding, st: RuleState, r: _Reading, kind: AlertKind, n: int) -> Alert:
        if kind is _K_RESOLVED:
            severity = Severity.INFO
        elif st.tier >= 1 or (
            isinstance(b.rule, ChangeRule)
            and r.metric >= self.config.critical_multiple * b.rule.pct
        ):
            severity = Severity.CRITICAL
        else:
            severity = Severity.WARNING
        episode = st.episode or r.at.astimezone(UTC).isoformat()
        return Alert(
            key=f"{b.watch.id}:{b.symbol}:{episode}:{_KIND_TEXT[kind]}:{n}",
            channel=b.channel,
            kind=kind,
            symbol=b.symbol,
            at=r.at,
            severity=severity,
            watch_id=b.watch.id,
            rule_text=b.text,
            price=r.price,
            reference_price=r.reference_price,
            change_pct=r.change_pct,
            session=r.session,
            tier=st.tier,
            note=b.watch.note,
        )


# A notice names this many symbols, then counts the rest: a whole-feed outage of 500 names
# must still fit a chat message's title.
NOTICE_NAMES = 12


def degraded_note(items: Iterable[tuple[str, str]]) -> str:
    """``SMCI (bad price 0.0); AMD, NVDA (unreachable)``: every symbol, grouped by reason.

    Deterministic: symbols sorted, reasons in the order of their first symbol.
    """
    by_reason: dict[str, list[str]] = {}
    for symbol, reason in sorted(set(items)):
        by_reason.setdefault(plain_reason(reason), []).append(symbol)
    parts: list[str] = []
    named = 0
    for reason, symbols in by_reason.items():
        room = NOTICE_NAMES - named
        if room <= 0:
            break
        named += len(symbols[:room])
        parts.append(f"{', '.join(symbols[:room])} ({reason})")
    total = sum(len(s) for s in by_reason.values())
    more = f" and {total - named} more" if total > named else ""
    return "; ".join(parts) + more


def _day_moved(st: RuleState, day: date) -> bool:
    held = st.day
    if held is None:
        # A record written before ``day`` existed: the episode began on the day of ``since``.
        if st.since is None:
            return False
        held = _trading_day(st.since)[0]
    return held != day


def _pct(price: float, base: float) -> float:
    # Rounded so that 90 against 100 is exactly -10%, not -9.999999999999998: a user's
    # threshold must fire when the price sits exactly on it.
    return round((price / base - 1.0) * 100.0, 9)


def change_open_of(q: Quote, open_: float | None) -> float | None:
    if open_ is None or q.price is None:
        return None
    return _pct(q.price, open_)


def _family_metric(
    family: str, price: float, change: float, change_open: float | None
) -> float | None:
    if family == ABOVE:
        return price
    if family == BELOW:
        return -price
    basis, direction = _FAMILY_PARTS[family]
    value = change if basis == "close" else change_open
    if value is None:
        return None
    return _directional(direction, value)


_FAMILY_PARTS = {f: (f.partition("-")[0], Direction(f.partition("-")[2])) for f in LADDER_FAMILIES}


_KEYWORD_CACHE: dict[str, re.Pattern[str]] = {}


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    pattern = _KEYWORD_CACHE.get(keyword)
    if pattern is None:
        pattern = re.compile(r"(?<!\w)" + re.escape(keyword) + r"(?!\w)", re.IGNORECASE)
        _KEYWORD_CACHE[keyword] = pattern
    return pattern


def _short(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    if minutes < 1:
        return f"{int(d.total_seconds())}s"
    if minutes < 120:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"
