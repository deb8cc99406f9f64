"""The Engine: holds watches, states and the last quotes, and routes each quote through the
quality gate, the readings of its rule families and the lifecycle; every call returns what
changed. The jobs themselves live in the sibling modules."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar

from alerts.baskets import is_basket_target
from alerts.engine.baskets import basket_reading
from alerts.engine.binding import Key, WatchBook
from alerts.engine.config import EngineConfig, Evaluation
from alerts.engine.index import AGGREGATE, NEWS, OTHER, Binding, SymbolIndex
from alerts.engine.keys import price_alert
from alerts.engine.news import match_news
from alerts.engine.outages import Outages
from alerts.engine.readings import (
    family_metric,
    gap_reading,
    ladder_reading,
    ladder_thresholds,
    pct,
    remember_price,
    todays_open,
    volume_reading,
    window_reading,
)
from alerts.engine.relative import benchmark_change, benchmark_for, relative_reading
from alerts.engine.volume import VolumeProfile
from alerts.lifecycle import (
    Policy,
    Reading,
    RuleState,
    RuleStatus,
    advance,
    begin,
    same_value,
    trading_day,
)
from alerts.models import Alert, MarketSession, NewsItem, Quote, Watch
from alerts.quality import quote_problem
from alerts.rules import ChangeRule, GapRule, VolumeRule

log = logging.getLogger("alerts.engine")

_ARMED, _FIRING = RuleStatus.ARMED, RuleStatus.FIRING
_CLOSED, _REGULAR = MarketSession.CLOSED, MarketSession.REGULAR
_NOT_INDEXED = (OTHER, AGGREGATE)
_NOT_LADDERS = (OTHER, AGGREGATE, NEWS)
DEFAULT_CONFIG = EngineConfig()


@dataclass(slots=True)
class _Out:
    states: dict[Key, RuleState] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    def result(self) -> Evaluation:
        return Evaluation(tuple(self.states.values()), tuple(self.alerts))


class Engine:
    """Holds the watches, their states and the last quotes; every call returns what changed.

    Not thread-safe: the pipeline calls it from one task.
    """

    # Skip quotes equal to the symbol's last one. Only the benchmark's naive baseline
    # (benchmarks/naive_engine.py, which also replaces _evaluate_symbol and _advance with a
    # loop over every rule) turns it off; a flag read once a batch, because a hook method
    # per quote costs about 8% of a batch.
    index_shortcuts: ClassVar[bool] = True

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._logged_rejections: set[tuple[int, str]] = set()
        self._reset()

    def _reset(self) -> None:
        self._book = WatchBook()
        self._states: dict[Key, RuleState] = {}
        self._quotes: dict[str, Quote] = {}
        self._profiles: dict[str, VolumeProfile] = {}
        self._outages = Outages()
        self._resolved: dict[str, bool] = {}
        self._benchmark_of: dict[tuple[str, str | None], str | None] = {}
        # Quotes of the default benchmarks are kept even when no watch names them, so that
        # every price alert can show its move against one.
        cfg = self.config
        defaults = (cfg.benchmark_nasdaq, cfg.benchmark_other, *cfg.benchmarks.values())
        self._benchmarks = frozenset(b for b in defaults if b)
        self.rejected = self._book.rejected  # watch id -> why its rule could not be used

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
            self._book.set_channel_baskets(channel, own)
        for w in watches:
            self._bind(w)
        for st in states:
            self._states[(st.watch_id, st.symbol)] = st
            b = self._book.find((st.watch_id, st.symbol))
            if b is None or b.family in (AGGREGATE, NEWS):
                continue
            idx = self._book.index.get(b.symbol)
            if st.status is not _ARMED and idx is not None and b.key not in idx.others:
                idx.active[b.key] = idx.unsettled[b.key] = b
            if st.nodata_since is not None:
                self._outages.restore(st.symbol, b.channel, st.nodata_since, st.nodata_reason)

    def upsert_watch(self, watch: Watch) -> None:
        """Add or replace a watch. A new watch whose condition already holds fires on the
        next quote of its symbol."""
        old = self._book.watches.get(watch.id)
        if old is not None:
            same_rule = old.rule_text == watch.rule_text and old.target == watch.target
            self._unbind(watch.id, keep_states=same_rule)
        self._bind(watch)
        if old is not None:
            # Only after re-binding: a replaced watch still on a NoData symbol keeps the
            # channel's outage open, so "recovered" follows the "degraded" it was sent.
            self._forget_channel_nodata(old.channel)

    def remove_watch(self, watch_id: int) -> None:
        watch = self._book.watches.get(watch_id)
        self._unbind(watch_id, keep_states=False)
        if watch is not None:
            self._forget_channel_nodata(watch.channel)

    def set_baskets(self, channel: str, baskets: Mapping[str, Sequence[str]]) -> None:
        """Replace a channel's own baskets and re-bind the watches that use them."""
        self._book.set_channel_baskets(channel, baskets)
        for w in [w for w in self._book.watches.values() if w.channel == channel]:
            if is_basket_target(w.target):
                before = {b.key for b in self._book.bound.get(w.id, [])}
                self._unbind(w.id, keep_states=True)
                self._bind(w)
                after = {b.key for b in self._book.bound.get(w.id, [])}
                for gone in before - after:
                    self._states.pop(gone, None)
        self._forget_channel_nodata(channel)

    def set_resolved_notices(self, channel: str, enabled: bool) -> None:
        self._resolved[channel] = enabled
        for bound in self._book.bound.values():
            for b in bound:
                if b.channel == channel:
                    b.policy = self._policy(b)

    def set_volume_profile(self, symbol: str, profile: VolumeProfile | None) -> None:
        if profile is None:
            self._profiles.pop(symbol, None)
        else:
            self._profiles[symbol] = profile

    # ------------------------------------------------------------------ queries

    def symbols(self) -> frozenset[str]:
        """Every symbol some watch needs quotes for, baskets expanded."""
        index = self._book.index
        return frozenset(
            s for s, idx in index.items() if idx.bindings or idx.aggregates or idx.followers
        )

    def states(self) -> list[RuleState]:
        return list(self._states.values())

    def state(self, watch_id: int, symbol: str) -> RuleState | None:
        return self._states.get((watch_id, symbol))

    def watches(self) -> list[Watch]:
        return list(self._book.watches.values())

    def last_quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    def latest_changes(self, symbols: Iterable[str] | None = None) -> dict[str, float]:
        """Latest change % against the previous close, for symbols with good data."""
        wanted = self._quotes.keys() if symbols is None else symbols
        out: dict[str, float] = {}
        for symbol in wanted:
            q = self._quotes.get(symbol)
            if q is None or symbol in self._outages or q.price is None or not q.previous_close:
                continue
            out[symbol] = pct(q.price, q.previous_close)
        return out

    def nodata_symbols(self) -> dict[str, str]:
        """Symbols currently in NoData, with the reason."""
        return {s: reason for s, (_, reason) in self._outages.symbols.items()}

    # ------------------------------------------------------------------ binding

    def _bind(self, watch: Watch) -> None:
        bound = self._book.bind(watch)
        if bound is None:
            self._log_rejection(watch)
            return
        cfg = self.config
        for b in bound:
            b.policy = self._policy(b)
            if b.family not in _NOT_LADDERS:
                b.rearm, b.step = ladder_thresholds(b.family, b.level, cfg)
            if b.family in (AGGREGATE, NEWS) or b.key in self._states:
                continue
            nodata = self._outages.symbols.get(b.symbol)
            if nodata is not None:
                since, reason = nodata
                self._states[b.key] = RuleState(
                    watch.id, b.symbol, nodata_since=since, nodata_reason=reason
                )
                self._outages.joined(b.symbol, b.channel)

    def _unbind(self, watch_id: int, *, keep_states: bool) -> None:
        for b in self._book.unbind(watch_id):
            if not keep_states:
                self._states.pop(b.key, None)

    def _policy(self, b: Binding) -> Policy:
        cfg = self.config
        return Policy(
            confirm=b.confirm,
            cooldown=cfg.cooldown if cfg.cooldown > timedelta(0) else None,
            repeat_interval=cfg.repeat_interval,
            resolved_notices=self._resolved.get(b.channel, cfg.resolved_notices),
        )

    def _log_rejection(self, watch: Watch) -> None:
        # Once per watch and rule text for the engine's life: load() runs again after every
        # restart of the pipeline's view, and a broken watch stays broken until edited.
        if (watch.id, watch.rule_text) in self._logged_rejections:
            return
        self._logged_rejections.add((watch.id, watch.rule_text))
        log.warning(
            "watch #%s on %s in %s is never evaluated: %s",
            watch.id,
            watch.target,
            watch.channel,
            self.rejected[watch.id],
        )

    def _forget_channel_nodata(self, channel: str) -> None:
        # A channel that no longer watches a NoData symbol is not degraded by it.
        still = {
            s
            for s in self._outages.bad_symbols(channel)
            if any(b.channel == channel for b in self._book.bindings_on(s))
        }
        self._outages.forget(channel, still)

    # ------------------------------------------------------------------ evaluation

    def on_quotes(self, quotes: Sequence[Quote], now: datetime) -> Evaluation:
        """Evaluate a batch of quotes in order. Bad quotes put their symbol into NoData."""
        out = _Out()
        cfg = self.config
        fresh_after = now - cfg.stale_after
        index, last_quotes, nodata = self._book.index, self._quotes, self._outages.symbols
        shortcuts = self.index_shortcuts
        quoted: set[str] = set()
        touched_aggregates: dict[Key, Binding] = {}
        touched_followers: dict[Key, Binding] = {}
        for q in quotes:
            idx = index.get(q.symbol)
            if idx is None:
                if q.symbol in self._benchmarks:
                    self._keep_benchmark(q, now)
                continue
            last = last_quotes.get(q.symbol)
            if last is not None:
                if q.time < last.time:
                    continue  # out of order: never let an older price overwrite a newer one
                if (
                    shortcuts
                    and q.price == last.price
                    and q.previous_close == last.previous_close
                    and q.open == last.open
                    and q.session is last.session
                    and q.halted == last.halted
                    and not idx.unsettled
                    and not idx.others
                    and not idx.aggregates
                    and q.symbol not in nodata
                    and (q.session is not _REGULAR or q.time >= fresh_after)
                ):
                    # Most of a batch is unchanged prices; they can cross nothing. (A NaN never
                    # compares equal, so bad quotes always take the full path.)
                    last_quotes[q.symbol] = q
                    continue
            if idx.aggregates:
                touched_aggregates.update(idx.aggregates)
            problem = quote_problem(
                q, now=now, stale_after=cfg.stale_after, max_price_ratio=cfg.max_price_ratio
            )
            if problem is not None:
                self._enter_nodata(q.symbol, problem.kind, now, out)
                continue
            last_quotes[q.symbol] = q
            if q.symbol in nodata:
                self._leave_nodata(q.symbol, now, out)
            if q.session is _CLOSED or q.halted:
                continue  # inhibited: a closed or halted market moves nothing
            quoted.add(q.symbol)
            self._evaluate_symbol(idx, q, out)
            if idx.followers:
                touched_followers.update(idx.followers)
        self._after_quotes(quoted, out)
        for b in touched_followers.values():
            self._follow_benchmark(b, out)
        if touched_aggregates:
            self._evaluate_baskets(touched_aggregates.values(), now, out)
        out.alerts.extend(self._outages.notices(now))
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
            if symbol in self._book.index:
                self._enter_nodata(symbol, reasons[symbol], now, out)
        out.alerts.extend(self._outages.notices(now))
        return out.result()

    def on_news(self, items: Sequence[NewsItem], now: datetime) -> Evaluation:
        """Match headlines against news rules; each story is alerted once per watch."""
        if not self._book.news:
            return Evaluation()
        states, alerts = match_news(self._book.news.values(), self._states, items, now, self.config)
        self._states.update(states)
        return Evaluation(tuple(states.values()), tuple(alerts))

    def _after_quotes(self, quoted: set[str], out: _Out) -> None:
        """Called once the batch's quotes are evaluated: with the index nothing is left to do
        (the naive baseline evaluates every other symbol here)."""

    # -- NoData

    def _enter_nodata(self, symbol: str, reason: str, now: datetime, out: _Out) -> None:
        idx = self._book.index[symbol]
        if not self._outages.down(symbol, reason, now, (b.channel for b in idx.bindings.values())):
            return
        idx.reset_levels()
        idx.last_prev = idx.last_open = None
        history = self._book.history.get(symbol)
        if history is not None:
            history.clear()
        for b in idx.bindings.values():
            st = self._states.get(b.key) or RuleState(b.watch.id, symbol)
            new_state = replace(st, nodata_since=now, nodata_reason=reason)
            self._states[b.key] = out.states[b.key] = new_state

    def _leave_nodata(self, symbol: str, now: datetime, out: _Out) -> None:
        idx = self._book.index[symbol]
        idx.reset_levels()
        for b in idx.bindings.values():
            st = self._states.get(b.key)
            if st is not None and st.nodata_since is not None:
                new_state = replace(st, nodata_since=None, nodata_reason=None)
                self._states[b.key] = out.states[b.key] = new_state
        channels = [b.channel for b in idx.bindings.values()]
        out.alerts.extend(self._outages.up(symbol, now, channels))

    # -- price rules

    def _evaluate_symbol(self, idx: SymbolIndex, q: Quote, out: _Out) -> None:
        price, prev = q.price, q.previous_close
        assert price is not None
        assert prev is not None
        seen = (price, prev, q.open, q.session)
        if seen == idx.last_seen and not idx.unsettled and not idx.others:
            return  # nothing moved and nothing waits on time: no rule can change
        idx.last_seen = seen
        if idx.last_prev is not None and not same_value(idx.last_prev, prev):
            idx.reset_levels("close-")  # a new trading day: the old metric says nothing
        idx.last_prev = prev
        open_ = todays_open(q)
        if open_ is None or (idx.last_open is not None and not same_value(idx.last_open, open_)):
            idx.reset_levels("open-")
        idx.last_open = open_
        change = pct(price, prev)
        change_open = pct(price, open_) if open_ is not None else None
        history = self._book.history.get(q.symbol)
        if history is not None and idx.max_window is not None:
            remember_price(history, q, idx.max_window)

        metrics: dict[str, float] = {}
        for family in idx.ladders:
            m = family_metric(family, price, change, change_open)
            if m is not None:
                metrics[family] = m
        done: set[Key] = set()
        for b in list(idx.active.values()):
            if b.family in metrics:
                done.add(b.key)
                self._advance(b, ladder_reading(b, metrics[b.family], q, change, open_), out)
        for family, ladder in idx.ladders.items():
            m1 = metrics.get(family)
            if m1 is None:
                continue
            candidates = ladder.candidates(m1)
            ladder.last = m1
            for b in candidates:
                if b.key not in done:
                    self._advance(b, ladder_reading(b, m1, q, change, open_), out)
        for b in idx.others.values():
            reading = self._other_reading(b, q, change, open_)
            if reading is not None:
                self._advance(b, reading, out)

    def _evaluate_baskets(self, bindings: Iterable[Binding], now: datetime, out: _Out) -> None:
        day, day_start = trading_day(now)
        for b in bindings:
            members = self._book.members(b.symbol, b.channel)
            if members:
                r = basket_reading(b.rule, members, self._quotes, day, day_start, self.config)
                if r is not None:
                    self._advance(b, r, out)

    def _other_reading(
        self, b: Binding, q: Quote, change: float, open_: float | None
    ) -> Reading | None:
        rule = b.rule
        if isinstance(rule, ChangeRule) and rule.benchmark is not None:
            return self._relative_reading(rule, q)
        if isinstance(rule, ChangeRule) and rule.window is not None:
            history = self._book.history.get(q.symbol)
            return window_reading(rule, history, q, self.config) if history else None
        if isinstance(rule, GapRule):
            return gap_reading(rule, q, open_)
        if isinstance(rule, VolumeRule):
            return volume_reading(rule, q, self._profiles.get(q.symbol), change)
        return None

    # -- relative moves

    def _keep_benchmark(self, q: Quote, now: datetime) -> None:
        last = self._quotes.get(q.symbol)
        if last is not None and q.time < last.time:
            return
        cfg = self.config
        if quote_problem(q, now=now, stale_after=cfg.stale_after) is None:
            self._quotes[q.symbol] = q

    def _relative_reading(self, rule: ChangeRule, q: Quote) -> Reading | None:
        assert rule.benchmark is not None
        cfg = self.config
        moved = benchmark_change(rule.benchmark, self._quotes, self._outages.symbols, q.time, cfg)
        return relative_reading(rule, q, moved, cfg)

    def _follow_benchmark(self, b: Binding, out: _Out) -> None:
        """The benchmark of a "vs" rule moved: judge the rule again on its symbol's last quote."""
        q = self._quotes.get(b.symbol)
        if q is None or b.symbol in self._outages or q.session is _CLOSED or q.halted:
            return
        assert isinstance(b.rule, ChangeRule)
        reading = self._relative_reading(b.rule, q)
        if reading is not None:
            self._advance(b, reading, out)

    def _relative_figure(self, b: Binding, r: Reading) -> tuple[str, float, float] | None:
        """(benchmark, its change, the symbol's change minus it) for an alert, when known."""
        if b.family == AGGREGATE:
            return None
        q = self._quotes.get(b.symbol)
        if q is None or q.price is None or not q.previous_close:
            return None
        cfg = self.config
        rule = b.rule
        if isinstance(rule, ChangeRule) and rule.benchmark is not None:
            benchmark: str | None = rule.benchmark
        else:
            # The same for every alert of the symbol: worked out once per exchange it quotes.
            of = (b.symbol, q.exchange)
            if of in self._benchmark_of:
                benchmark = self._benchmark_of[of]
            else:
                benchmark = self._benchmark_of[of] = benchmark_for(b.symbol, None, q.exchange, cfg)
        if benchmark is None:
            return None
        moved = benchmark_change(benchmark, self._quotes, self._outages.symbols, r.at, cfg)
        if moved is None:
            return None
        return benchmark, moved, round(pct(q.price, q.previous_close) - moved, 9)

    # -- the lifecycle

    def _advance(self, b: Binding, r: Reading, out: _Out) -> None:
        key = b.key
        st = self._states.get(key)
        if st is None:
            # Most rules a storm fires had no state yet: begin() builds only the new one.
            new, event = begin(b.watch.id, b.symbol, r, b.policy)
            if new is not None:
                self._states[key] = out.states[key] = new
        elif st.nodata_since is not None:
            return  # never a crossing, never a recovery on NoData
        else:
            new, event = advance(st, r, b.policy)
            if new is not st:
                self._states[key] = out.states[key] = new
        if b.family not in _NOT_INDEXED:
            idx = self._book.index[b.symbol]
            if new is None or (new.status is _ARMED and not r.holds):  # None: it did not hold
                idx.active.pop(key, None)
                idx.unsettled.pop(key, None)
            else:
                idx.active[key] = b
                if new.status is _FIRING and b.policy.repeat_interval is None:
                    idx.unsettled.pop(key, None)
                else:
                    idx.unsettled[key] = b
        if event is not None:
            assert new is not None  # an event always comes with a new state
            relative = self._relative_figure(b, r)
            out.alerts.append(
                price_alert(b, new, r, event, self.config.critical_multiple, relative)
            )
