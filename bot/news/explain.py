"""The bot side of attribution: which headlines, since when, for one price group's message."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from alerts.attribution import MARKET_SYMBOLS, Attribution, attribute, is_broad_move
from alerts.baskets import BASKET_PREFIX
from alerts.compose import PRICE_KINDS, latest_per_crossing
from alerts.models import Alert, ContextLine, NewsItem
from bot.news.window import since_previous_close

# A watched name moving at least this much counts toward the day's theme.
THEME_MOVE_PCT = 2.0


class Explainer:
    """Feeds the pure ``alerts.attribution`` with the calendar's previous close and the names.

    ``since`` is the exchange calendar's previous regular close (weekend news counts);
    ``name_terms`` how headlines write the watched companies, which never make a theme.
    """

    def __init__(
        self,
        *,
        since: Callable[[datetime], datetime] = since_previous_close,
        name_terms: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.since = since
        self.name_terms = name_terms

    def explain(
        self,
        alerts: Sequence[Alert],
        news: Sequence[NewsItem],
        *,
        baskets: Mapping[str, Sequence[str]],
        context: Sequence[ContextLine],
        watched: Collection[str],
        now: datetime,
        latest_moves: Mapping[str, float] | None = None,
    ) -> Attribution | None:
        """None for groups without a price move (notices, news alerts).

        ``latest_moves`` (symbol -> change %, every evaluated symbol) lets the theme count the
        channel's other names that are moving too, not only this group's.
        """
        price = [a for a in latest_per_crossing(alerts) if a.kind in PRICE_KINDS]
        if not price:
            return None
        moves = {a.symbol: a.change_pct or 0.0 for a in price}
        members = {m for names in baskets.values() for m in names}
        names = {t for t in watched if t != "news" and not t.startswith(BASKET_PREFIX)}
        in_basket = sum(1 for s in moves if s in members)
        broad = is_broad_move(
            moves,
            watched=names | members,
            basket=any(s.startswith(BASKET_PREFIX) for s in moves) or in_basket >= 3,
            futures_moves={c.symbol: c.change_pct for c in context if c.symbol in MARKET_SYMBOLS},
        )
        start = min(a.at for a in price)
        followed = names | members
        others = {
            s: v
            for s, v in (latest_moves or {}).items()
            if s in followed and abs(v) >= THEME_MOVE_PCT
        }
        return attribute(
            moves,
            news,
            since=self.since(start),
            move_start=start,
            now=now,
            broad=broad,
            exclude_terms=self.name_terms(),
            theme_moves=others,
        )
