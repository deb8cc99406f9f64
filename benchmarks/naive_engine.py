"""The engine's naive baseline: every rule of every quoted symbol on every batch.

What the per-symbol index is measured against (``bench_engine.py``) and checked against
(``tests/test_engine_properties.py``: same alerts and states on random price paths). It is
the real ``Engine`` with the index's shortcuts switched off, so the two can only differ by
what the index skips.
"""

from __future__ import annotations

from alerts.engine.core import Engine, _Out
from alerts.models import MarketSession


class NaiveEngine(Engine):
    index_shortcuts = False  # every quote, every symbol, every rule of every ladder...

    def _after_quotes(self, quoted: set[str], out: _Out) -> None:
        # ...and every symbol with a usable last quote, quoted in this batch or not.
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
