"""Binding watches into the per-symbol index: which rule applies to which symbol, sorted so a
quote only costs the rules it may cross. Baskets expand into their members here."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from alerts.baskets import BASKET_PREFIX, basket_name, is_basket_target, resolve_basket
from alerts.engine.index import ABOVE, AGGREGATE, BELOW, NEWS, OTHER, Binding, Ladder, SymbolIndex
from alerts.models import Watch
from alerts.rules import (
    BreadthRule,
    ChangeRule,
    LevelRule,
    NewsRule,
    Rule,
    RuleSyntaxError,
    parse_rule,
    rule_target_problem,
)

Key = tuple[int, str]


class WatchBook:
    """Every watch, its bindings, and the index by symbol that evaluation walks."""

    def __init__(self) -> None:
        self.watches: dict[int, Watch] = {}
        self.bound: dict[int, list[Binding]] = {}
        self.index: dict[str, SymbolIndex] = {}
        self.aggregates: dict[Key, Binding] = {}  # basket averages and breadth
        self.news: dict[Key, Binding] = {}
        self.baskets: dict[str, dict[str, tuple[str, ...]]] = {}  # channel -> its own baskets
        self.history: dict[str, deque[tuple[datetime, float]]] = {}  # rolling-window prices
        self.rejected: dict[int, str] = {}  # watch id -> why its rule cannot be used
        self._parsed: dict[str, Rule] = {}

    def set_channel_baskets(self, channel: str, baskets: Mapping[str, Sequence[str]]) -> None:
        self.baskets[channel] = {n.lower(): tuple(m) for n, m in baskets.items()}

    def members(self, basket_symbol: str, channel: str) -> tuple[str, ...]:
        name = basket_symbol[len(BASKET_PREFIX) :]
        return tuple(resolve_basket(name, self.baskets.get(channel)))

    def find(self, key: Key) -> Binding | None:
        for b in self.bound.get(key[0], ()):
            if b.key == key:
                return b
        return None

    def bindings_on(self, symbol: str) -> Iterator[Binding]:
        idx = self.index.get(symbol)
        return iter(idx.bindings.values()) if idx is not None else iter(())

    def bind(self, watch: Watch) -> list[Binding] | None:
        """Bind a watch; its bindings, or None when its rule cannot be used (``rejected``)."""
        try:
            rule = self._parse(watch.rule_text)
            problem = rule_target_problem(rule, watch.target)
        except RuleSyntaxError as exc:
            problem = str(exc)
        if problem is not None:
            self.rejected[watch.id] = problem
            return None
        self.watches[watch.id] = watch
        bound: list[Binding] = []
        target = watch.target
        if isinstance(rule, NewsRule):
            b = Binding(watch, rule, target, NEWS, 0.0)
            self.news[b.key] = b
            bound.append(b)
        elif is_basket_target(target):
            name = basket_name(target)
            members = resolve_basket(name, self.baskets.get(watch.channel))
            if isinstance(rule, BreadthRule) or (
                isinstance(rule, ChangeRule) and rule.window is None and rule.benchmark is None
            ):
                b = Binding(watch, rule, BASKET_PREFIX + name, AGGREGATE, 0.0)
                self.aggregates[b.key] = b
                bound.append(b)
                for m in members:
                    self._symbol_index(m).aggregates[b.key] = b
            if not isinstance(rule, BreadthRule):
                bound.extend(self._bind_symbol(watch, rule, m) for m in members)
        else:
            bound.append(self._bind_symbol(watch, rule, target))
        self.bound[watch.id] = bound
        return bound

    def unbind(self, watch_id: int) -> list[Binding]:
        """Remove a watch from the index; returns its bindings."""
        self.watches.pop(watch_id, None)
        self.rejected.pop(watch_id, None)
        gone = self.bound.pop(watch_id, [])
        for b in gone:
            if b.family == NEWS:
                self.news.pop(b.key, None)
            elif b.family == AGGREGATE:
                self.aggregates.pop(b.key, None)
                for member_idx in self.index.values():
                    member_idx.aggregates.pop(b.key, None)
            elif (idx := self.index.get(b.symbol)) is not None:
                _drop(idx, b)
                benchmark = b.rule.benchmark if isinstance(b.rule, ChangeRule) else None
                followed = self.index.get(benchmark) if benchmark is not None else None
                if followed is not None:
                    followed.followers.pop(b.key, None)
        return gone

    def _parse(self, text: str) -> Rule:
        rule = self._parsed.get(text)
        if rule is None:
            rule = self._parsed[text] = parse_rule(text)
        return rule

    def _symbol_index(self, symbol: str) -> SymbolIndex:
        idx = self.index.get(symbol)
        if idx is None:
            idx = self.index[symbol] = SymbolIndex()
        return idx

    def _bind_symbol(self, watch: Watch, rule: Rule, symbol: str) -> Binding:
        idx = self._symbol_index(symbol)
        family, level = OTHER, 0.0
        relative = isinstance(rule, ChangeRule) and rule.benchmark is not None
        if isinstance(rule, ChangeRule) and rule.window is None and not relative:
            family, level = f"{rule.basis.value}-{rule.direction.value}", rule.pct
        elif isinstance(rule, LevelRule):
            family = ABOVE if rule.above else BELOW
            level = rule.price if rule.above else -rule.price
        b = Binding(watch, rule, symbol, family, level)
        idx.bindings[b.key] = b
        if family == OTHER:
            idx.others[b.key] = b
            if isinstance(rule, ChangeRule) and rule.benchmark is not None:
                # The benchmark's own moves change the relative move too.
                self._symbol_index(rule.benchmark).followers[b.key] = b
            window = rule.window if isinstance(rule, ChangeRule) else None
            if window is not None:
                if idx.max_window is None or window > idx.max_window:
                    idx.max_window = window
                self.history.setdefault(symbol, deque())
        else:
            ladder = idx.ladders.get(family)
            if ladder is None:
                ladder = idx.ladders[family] = Ladder()
            ladder.add(b)
            # It may already be past its level: look on the next quote.
            idx.active[b.key] = idx.unsettled[b.key] = b
        return b


def _drop(idx: SymbolIndex, b: Binding) -> None:
    idx.bindings.pop(b.key, None)
    idx.active.pop(b.key, None)
    idx.unsettled.pop(b.key, None)
    if idx.others.pop(b.key, None) is not None:
        idx.max_window = _longest_window(idx)
    ladder = idx.ladders.get(b.family)
    if ladder is not None:
        ladder.remove(b)


def _longest_window(idx: SymbolIndex) -> timedelta | None:
    windows = [
        o.rule.window
        for o in idx.others.values()
        if isinstance(o.rule, ChangeRule) and o.rule.window is not None
    ]
    return max(windows, default=None)
