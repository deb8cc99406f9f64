"""Notices outside the alert queue: summaries when a mute ends (the digest: ``digest``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from alerts.baskets import all_baskets
from alerts.models import Alert, Mute
from alerts.mute import is_muted, summarize_missed
from alerts.ports import ChatPlatform, Clock
from bot.pipeline.market_view import MarketState
from bot.pipeline.platforms import platform_for, short_key
from bot.store import SqlStore

log = logging.getLogger(__name__)


class Notices:
    """Sends a message, then records that it was sent: a failure is tried again next run."""

    def __init__(
        self,
        store: SqlStore,
        market: MarketState,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
    ) -> None:
        self.store = store
        self.market = market
        self.platforms = platforms
        self.clock = clock

    # -- mutes ----------------------------------------------------------------------------

    def _within_mute(self, mute: Mute) -> Callable[[Alert], bool]:
        baskets = all_baskets(self.store.list_baskets(mute.channel))
        last_instant = mute.until - timedelta(microseconds=1)
        return lambda alert: is_muted(alert, [mute], last_instant, baskets)

    async def end_expired_mutes(self) -> int:
        """Send one summary per ended mute of what the channel missed, then forget the mute.

        The mute and its alerts are released only after the platform accepted the summary, so
        a failed send is tried again on the next run instead of being lost.
        """
        now = self.clock.now()
        sent = 0
        for mute in self.store.all_mutes():
            if mute.until > now:
                continue
            missed = self.store.muted_alerts(mute.channel, self._within_mute(mute))
            platform = platform_for(self.platforms, mute.channel)
            if missed and platform is not None:
                message = summarize_missed(mute.channel, missed, mute, now)
                key = short_key(f"mute:{mute.channel}:{mute.scope}:{mute.until.isoformat()}")
                try:
                    await platform.send(message, idempotency_key=key)
                except Exception:
                    log.exception("could not send the mute summary to %s", mute.channel)
                    continue
                sent += 1
            self.store.mark_summarized([alert.key for alert in missed])
            self.store.remove_mutes(mute.channel, mute.scope)
        return sent
