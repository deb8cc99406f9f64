"""Delivery: outbox rows -> rendered messages -> platforms -> confirmed in the store."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from alerts.compose import compose_message
from alerts.models import AlertMessage
from alerts.ports import ChatPlatform, Clock, DeliveryError, ImageUploader, MessageRef
from bot.news.explain import Explainer
from bot.pipeline.market_view import MarketState
from bot.pipeline.platforms import platform_for
from bot.pipeline.stats import PipelineStats
from bot.store import Delivery, SqlStore

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(minutes=5)


class DeliveryWorker:
    """Sends or edits due outbox rows and records what the platforms accepted."""

    def __init__(
        self,
        store: SqlStore,
        market: MarketState,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
        stats: PipelineStats,
        *,
        baskets: Callable[[str], Mapping[str, Sequence[str]]],
        latest_changes: Callable[[], Mapping[str, float]],
        rng: random.Random | None = None,
        charts: bool = False,
        timezone: str = "America/New_York",
    ) -> None:
        self.store = store
        self.market = market
        self.platforms = platforms
        self.clock = clock
        self.stats = stats
        self._baskets = baskets
        self._latest_changes = latest_changes
        self._rng = rng or random.Random()
        self.charts = charts
        self.timezone = timezone
        self.explainer = Explainer()

    async def deliver_due(self) -> int:
        """Send or edit every outbox row that is due; returns how many the platforms accepted."""
        now = self.clock.now()
        accepted = 0
        for delivery in self.store.due_deliveries(now):
            platform = platform_for(self.platforms, delivery.channel)
            if platform is None:
                self.store.mark_failed(
                    delivery, f"no platform handles {delivery.channel}", retry_at=None, now=now
                )
                self.stats.dead_letters += 1
                log.error(
                    "no platform for channel %s; outbox row %s kept as dead",
                    delivery.channel,
                    delivery.outbox_id,
                )
                continue
            message = self.render(delivery)
            try:
                if delivery.message_id is None:
                    ref = await platform.send(message, idempotency_key=delivery.idempotency_key)
                    self.stats.messages_sent += 1
                else:
                    ref = await platform.edit(
                        MessageRef(channel=delivery.channel, message_id=delivery.message_id),
                        message,
                    )
                    self.stats.messages_edited += 1
            except DeliveryError as exc:
                self._failed(delivery, str(exc), exc.retryable, exc.retry_after, now)
                continue
            except Exception as exc:  # an SDK bug or a network error we did not map
                log.exception("delivery to %s failed", delivery.channel)
                self._failed(delivery, repr(exc), True, None, now)
                continue
            self.store.mark_delivered(delivery, ref.message_id, self.clock.now())
            self.stats.by_platform[platform.name] = self.stats.by_platform.get(platform.name, 0) + 1
            accepted += 1
            if delivery.message_id is None:
                await self._send_chart(platform, message)
        return accepted

    def _failed(
        self,
        delivery: Delivery,
        error: str,
        retryable: bool,
        retry_after: float | None,
        now: datetime,
    ) -> None:
        self.stats.delivery_failures += 1
        if not retryable:
            self.stats.dead_letters += 1
            log.error(
                "outbox row %s to %s refused: %s", delivery.outbox_id, delivery.channel, error
            )
            self.store.mark_failed(delivery, error, retry_at=None, now=now)
            return
        backoff = min(MAX_RETRY_DELAY.total_seconds(), 2.0 ** (delivery.attempts + 1))
        delay = max(retry_after or 0.0, backoff * (0.5 + self._rng.random() / 2))
        log.warning("delivery to %s failed (%s); retrying in %.1fs", delivery.channel, error, delay)
        self.store.mark_failed(delivery, error, retry_at=now + timedelta(seconds=delay), now=now)

    async def _send_chart(self, platform: ChatPlatform, message: AlertMessage) -> None:
        """A chart of the names' moves under a new alert message, where the platform can.

        Best effort: the alert itself is already delivered and recorded, so a failed chart is
        logged and dropped rather than retried (a retry could only duplicate the image).
        """
        if not self.charts or not isinstance(platform, ImageUploader):
            return
        moves = {a.symbol: self.market.path(a.symbol) for a in message.alerts}
        if not any(len(points) >= 2 for points in moves.values()):
            return
        from bot.charts import render_move_chart

        try:
            image = await asyncio.to_thread(
                render_move_chart, moves, title=message.title, timezone=self.timezone
            )
            if image is not None:
                await platform.upload_image(
                    message.channel, image, filename="moves.png", title=message.title
                )
                self.stats.charts_sent += 1
        except Exception:
            log.exception("chart for %s not sent", message.channel)

    def render(self, delivery: Delivery) -> AlertMessage:
        now = self.clock.now()
        context = self.market.context()
        baskets = self._baskets(delivery.channel)
        # Price groups carry the headlines that explain the move, ranked by relevance.
        attribution = self.explainer.explain(
            delivery.alerts,
            self.market.news(),
            baskets=baskets,
            context=context,
            watched={w.target for w in self.store.list_watches(delivery.channel)},
            now=now,
        )
        return compose_message(
            delivery.channel,
            delivery.alerts,
            context=context,
            headlines=self.market.headlines_for({a.symbol for a in delivery.alerts}, now),
            baskets=baskets,
            now=now,
            # The whole basket's latest moves, so a follow-up counts every name that is down,
            # not only those in its own group.
            moves=self._latest_changes(),
            attribution=attribution,
        )
