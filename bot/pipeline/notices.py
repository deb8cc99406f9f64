"""Notices outside the alert queue: summaries when a mute ends, and the premarket digest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, timedelta

from alerts.baskets import all_baskets, is_basket_target
from alerts.digest import compose_digest, digest_key
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

    # -- digest ---------------------------------------------------------------------------

    async def send_digest(self, channel: str, day: date) -> bool:
        """Post the channel's premarket digest for ``day`` once; False if already sent or failed.

        The day is recorded only after the platform accepted the digest: a failure is retried
        by the next run, and a crash in between at worst repeats it under the same
        idempotency key.
        """
        if self.store.channel_settings(channel).get("digest_sent") == day.isoformat():
            return False
        platform = platform_for(self.platforms, channel)
        if platform is None:
            return False
        targets = {w.target for w in self.store.list_watches(channel)} - {"news"}
        symbols = sorted(t for t in targets if not is_basket_target(t))
        now = self.clock.now()
        message = compose_digest(
            channel,
            symbols,
            self.market.latest,
            day=day,
            now=now,
            context=self.market.context(),
            headlines=self.market.recent_news(symbols, 3),
        )
        try:
            await platform.send(message, idempotency_key=short_key(digest_key(channel, day)))
        except Exception:
            log.exception("could not send the digest to %s", channel)
            return False
        self.store.update_channel_settings(channel, {"digest_sent": day.isoformat()}, now)
        return True

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
