"""The alert pipeline, one module per job, flowing one way.

``ingest`` (quotes, news -> engine -> decisions -> one transaction), ``delivery`` (outbox ->
platforms -> confirmed), ``notices`` (mute summaries), ``digest`` (the premarket digest, built,
scheduled and charted) and ``market_view`` (what /price and /news answer from). ``Pipeline``
composes them for ``run``, ``replay`` and the tests.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta

from alerts.commands import DataOutage
from alerts.digest import DIGEST_INDEX_SYMBOLS
from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import Alert, AlertMessage, NewsItem, Quote
from alerts.ports import ChatPlatform, Clock
from bot.pipeline.delivery import LEASE, SAFETY_POLL_SECONDS, DeliveryWorker
from bot.pipeline.digest import Digests
from bot.pipeline.ingest import Ingest
from bot.pipeline.market_view import MarketState
from bot.pipeline.notices import Notices
from bot.pipeline.platforms import short_key
from bot.pipeline.stats import PipelineStats
from bot.store import SqlStore

__all__ = ["Pipeline", "PipelineStats", "short_key"]


class Pipeline:
    """Ingest, delivery, notices and the market view over one store, clock and platform list.

    Every evaluation is written in one transaction (states, alerts, group, outbox), and a
    message is marked sent only after its platform accepted it.
    """

    def __init__(
        self,
        store: SqlStore,
        engine: Engine,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
        *,
        grouping: GroupingConfig | None = None,
        context_symbols: Sequence[str] = ("NQ=F", "ES=F", "YM=F"),
        rng: random.Random | None = None,
        charts: bool = False,
        timezone: str = "America/New_York",
        lease: timedelta = LEASE,
        poll_interval: float = SAFETY_POLL_SECONDS,
    ) -> None:
        self.store = store
        self.engine = engine
        # One list shared by every part: a platform added at start-up serves all of them.
        self.platforms: list[ChatPlatform] = list(platforms)
        self.clock = clock
        self.grouping = grouping or GroupingConfig()
        self.stats = PipelineStats()
        self.market = MarketState(context_symbols)
        self.ingest = Ingest(store, engine, self.market, clock, self.grouping, self.stats)
        self.delivery = DeliveryWorker(
            store,
            self.market,
            self.platforms,
            clock,
            self.stats,
            rng=rng,
            charts=charts,
            timezone=timezone,
            lease=lease,
            poll_interval=poll_interval,
        )
        self.notices = Notices(store, self.market, self.platforms, clock, timezone=timezone)
        # A committed outbox row wakes delivery at once; the poll is only a safety net.
        self.ingest.on_queued.append(self.delivery.wake)
        self.digests = Digests(
            store,
            self.market,
            self.platforms,
            clock,
            self.stats,
            timezone=timezone,
            charts=charts,
            name_terms=lambda: self.delivery.explainer.name_terms(),
        )

    @property
    def context_symbols(self) -> tuple[str, ...]:
        return self.market.context_symbols

    @property
    def charts(self) -> bool:
        return self.delivery.charts

    @property
    def timezone(self) -> str:
        return self.delivery.timezone

    # -- state ----------------------------------------------------------------------------

    def load(self) -> None:
        self.ingest.load()

    def sync_watches(self, channel: str | None = None) -> bool:
        return self.ingest.sync_watches(channel)

    def symbols(self) -> frozenset[str]:
        """What the watches need, the context futures and, for the digest, the VIX too.

        With no watch and no digest anywhere nothing is needed at all, so an idle bot polls
        nothing (and an offline one stays quiet).
        """
        watched = self.ingest.symbols()
        if not watched and not any(self.digests.schedule(c) for c in self.store.channels()):
            return frozenset()
        return watched | frozenset(DIGEST_INDEX_SYMBOLS)

    # -- market view (the command layer's MarketView port) --------------------------------

    def latest_quote(self, symbol: str) -> Quote | None:
        return self.market.latest_quote(symbol)

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        return self.market.recent_news(symbols, limit)

    def data_outage(self, symbol: str) -> DataOutage | None:
        """Why ``/price`` has no fresh quote (the ``DataStatusView`` port)."""
        return self.market.data_outage(symbol)

    def digest(self, channel: str) -> AlertMessage:
        """``/digest`` now: the same builder as the daily post (the ``DigestView`` port)."""
        return self.digests.build(channel)

    def post_digest(self, channel: str) -> bool:
        """``/digest`` now, posted as a message with its chart (the ``DigestPoster`` port).

        Only while delivery runs: without it (a replay, one-pass tests) the row would wait
        for a pass nobody makes, so False and the command replies with the text instead.
        Called from a command thread; ``wake`` is thread-safe.
        """
        if not self.delivery.live or not self.digests.queue_now(channel):
            return False
        self.delivery.wake()
        return True

    # -- ingest, delivery, notices --------------------------------------------------------

    def ingest_quotes(
        self, quotes: Sequence[Quote], unavailable: Mapping[str, str] | None = None
    ) -> list[Alert]:
        return self.ingest.quotes(quotes, unavailable)

    def ingest_news(self, items: Iterable[NewsItem]) -> list[Alert]:
        return self.ingest.news(items)

    def preload_news(self, items: Iterable[NewsItem]) -> None:
        """Stored headlines after a restart: kept for attribution and /news, never re-alerted."""
        self.market.add_news(sorted(items, key=lambda item: item.published))

    async def deliver_due(self) -> int:
        """One pass over everything due now (replays, tests); ``run_delivery`` for a live bot."""
        return await self.delivery.deliver_due()

    async def run_delivery(self) -> None:
        await self.delivery.run()

    def wake(self) -> None:
        """Rows were committed elsewhere (another process, a NOTIFY): deliver them now."""
        self.delivery.wake()

    async def send_digest(self, channel: str, day: date) -> bool:
        """Queue the channel's digest for ``day``; see ``_notices_out``."""
        queued = self.digests.queue(channel, day)
        return bool(await self._notices_out(queued, "digests_sent")) if queued else False

    async def send_due_digests(self) -> int:
        """Queue the due digests. A live bot's delivery posts them (returns how many were
        queued); otherwise (replays, tests) one delivery pass does (returns how many of the
        day's digests the platforms accepted in it, retries of earlier ones included)."""
        return await self._notices_out(self.digests.queue_due(), "digests_sent")

    async def end_expired_mutes(self) -> int:
        """Queue the summaries of ended mutes; counted as ``send_due_digests`` counts."""
        return await self._notices_out(self.notices.queue_expired_mutes(), "summaries_sent")

    async def _notices_out(self, queued: int, counter: str) -> int:
        if self.delivery.live:
            if queued:
                self.delivery.wake()
            return queued
        before = getattr(self.stats, counter)
        await self.delivery.deliver_due()
        return int(getattr(self.stats, counter)) - int(before)
