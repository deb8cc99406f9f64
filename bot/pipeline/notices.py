"""Notices besides alerts: summaries when a mute ends (the digest: ``digest``), queued in the
outbox and posted by delivery like any alert."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from alerts.baskets import all_baskets
from alerts.models import Alert, Mute
from alerts.mute import is_muted, summarize_missed
from alerts.ports import ChatPlatform, Clock
from bot.pipeline.market_view import MarketState
from bot.pipeline.platforms import platform_for
from bot.store import SqlStore

log = logging.getLogger(__name__)


class Notices:
    """Queues mute summaries in the outbox (delivery posts them)."""

    def __init__(
        self,
        store: SqlStore,
        market: MarketState,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
        *,
        timezone: str = "America/New_York",
    ) -> None:
        self.store = store
        self.market = market
        self.platforms = platforms
        self.clock = clock
        # The display zone, as for the channel's alerts: a summary is composed (its footer's
        # times written) when the mute ends, not when delivery renders it.
        self.timezone = timezone

    # -- mutes ----------------------------------------------------------------------------

    def _within_mute(self, mute: Mute) -> Callable[[Alert], bool]:
        baskets = all_baskets(self.store.list_baskets(mute.channel))
        last_instant = mute.until - timedelta(microseconds=1)
        return lambda alert: is_muted(alert, [mute], last_instant, baskets)

    def queue_expired_mutes(self) -> int:
        """Queue one summary per ended mute of what the channel missed, then forget the mute.

        The summary row, the alerts marked summarised and the mute's removal commit together:
        delivery then posts the summary exactly once, with the outbox's retries.
        """
        now = self.clock.now()
        queued = 0
        for mute in self.store.all_mutes():
            if mute.until > now:
                continue
            missed = self.store.muted_alerts(mute.channel, self._within_mute(mute))
            has_platform = platform_for(self.platforms, mute.channel) is not None
            message = (
                summarize_missed(mute.channel, missed, mute, now, ZoneInfo(self.timezone))
                if missed and has_platform
                else None
            )
            queued += self.store.queue_summary(mute, message, [alert.key for alert in missed], now)
        return queued
