"""The engine's naive baseline: every rule of every quoted symbol on every batch.

What the per-symbol index is measured against (``bench_engine.py``) and checked against
(``tests/test_engine_properties.py``: same alerts and states on random price paths). It is
the real ``Engine`` (the same readings, lifecycle and alerts, so the two can only differ by
what the index skips) with the index taken out: every quote is evaluated, unchanged or not,
and a quote runs every rule bound to its symbol through its reading and the lifecycle, as a
straightforward loop would. It neither consults the index nor pays for keeping it (which
rules are active, the ladders' last metric), so the benchmark's ratio is what the index
saves, not what it costs a loop that does not use it.
"""

from __future__ import annotations

from alerts.engine.core import Engine, _Out
from alerts.engine.index import OTHER, Binding, SymbolIndex
from alerts.engine.keys import price_alert
from alerts.engine.readings import (
    family_metric,
    ladder_reading,
    pct,
    remember_price,
    todays_open,
)
from alerts.lifecycle import Reading, advance, begin
from alerts.models import MarketSession, Quote


class NaiveEngine(Engine):
    index_shortcuts = False  # every quote, unchanged or not

    def _evaluate_symbol(self, idx: SymbolIndex, q: Quote, out: _Out) -> None:
        price, prev = q.price, q.previous_close
        assert price is not None
        assert prev is not None
        open_ = todays_open(q)
        change = pct(price, prev)
        change_open = pct(price, open_) if open_ is not None else None
        history = self._book.history.get(q.symbol)
        if history is not None and idx.max_window is not None:
            remember_price(history, q, idx.max_window)
        # The quote's metric for each rule family, once per quote rather than once per rule.
        metrics = {f: family_metric(f, price, change, change_open) for f in idx.ladders}
        for b in idx.bindings.values():
            if b.family == OTHER:
                reading = self._other_reading(b, q, change, open_)
            else:
                m = metrics[b.family]
                reading = ladder_reading(b, m, q, change, open_) if m is not None else None
            if reading is not None:
                self._advance(b, reading, out)

    def _advance(self, b: Binding, r: Reading, out: _Out) -> None:
        # The engine's lifecycle step without its index bookkeeping.
        key = b.key
        st = self._states.get(key)
        if st is None:
            new, event = begin(b.watch.id, b.symbol, r, b.policy)
        elif st.nodata_since is not None:
            return  # never a crossing, never a recovery on NoData
        else:
            new, event = advance(st, r, b.policy)
        if new is not None and new is not st:
            self._states[key] = out.states[key] = new
        if event is not None:
            assert new is not None  # an event always comes with a new state
            relative = self._relative_figure(b, r)
            out.alerts.append(
                price_alert(b, new, r, event, self.config.critical_multiple, relative)
            )

    def _after_quotes(self, quoted: set[str], out: _Out) -> None:
        # Every symbol with a usable last quote, quoted in this batch or not.
        for symbol, idx in self._book.index.items():
            q = self._quotes.get(symbol)
            if (
                symbol not in quoted
                and q is not None
                and symbol not in self._outages
                and q.session is not MarketSession.CLOSED
                and not q.halted
            ):
                self._evaluate_symbol(idx, q, out)
