"""The alert pipeline: quotes and news in, decisions stored with their outbox, messages out."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from alerts.baskets import all_baskets, is_basket_target
from alerts.compose import compose_message
from alerts.context import context_lines
from alerts.digest import compose_digest, digest_key
from alerts.engine import Engine, Evaluation, RuleState
from alerts.grouping import GroupingConfig, decide_groups
from alerts.models import (
    Alert,
    AlertMessage,
    GroupDecision,
    Mute,
    NewsItem,
    OpenGroup,
    Quote,
    Watch,
)
from alerts.mute import is_muted, summarize_missed
from alerts.ports import ChatPlatform, Clock, DeliveryError, ImageUploader, MessageRef
from bot.store import Delivery, SqlStore

log = logging.getLogger(__name__)


def short_key(text: str) -> str:
    """A stable idempotency key that fits Discord's 25-character nonce."""
    return "mb-" + hashlib.sha256(text.encode()).hexdigest()[:20]


NEWS_KEPT = 500
HISTORY_POINTS = 2000  # per symbol: a whole premarket of 10-second ticks
HEADLINE_WINDOW = timedelta(hours=18)
MAX_RETRY_DELAY = timedelta(minutes=5)


@dataclass
class PipelineStats:
    evaluations: int = 0
    alerts_stored: int = 0
    duplicates_refused: int = 0
    messages_sent: int = 0
    messages_edited: int = 0
    delivery_failures: int = 0
    dead_letters: int = 0
    charts_sent: int = 0
    by_platform: dict[str, int] = field(default_factory=dict)


class Pipeline:
    """Owns the engine and moves its decisions through the store to the platforms.

    Every evaluation is written in one transaction (states, alerts, group, outbox), and a
    message is marked sent only after its platform accepted it: a crash between the two can
    at worst repeat a send, which the idempotency key lets the platform drop.
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
    ) -> None:
        self.store = store
        self.engine = engine
        self.platforms = list(platforms)
        self.clock = clock
        self.grouping = grouping or GroupingConfig()
        self.context_symbols = tuple(context_symbols)
        self.stats = PipelineStats()
        self._latest: dict[str, Quote] = {}
        self._news: deque[NewsItem] = deque(maxlen=NEWS_KEPT)
        self._news_keys: set[str] = set()
        self._loaded: dict[int, Watch] = {}
        self._rng = rng or random.Random()
        self.charts = charts
        self.timezone = timezone
        # Today's path of each symbol, as (time, % vs previous close), for chart images.
        self._history: dict[str, deque[tuple[datetime, float]]] = {}

    # -- state ----------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the engine from the store: watches, baskets, and every rule's saved state."""
        watches = self.store.list_watches()
        states = [RuleState.from_record(w, s, data) for w, s, data in self.store.load_states()]
        self.engine.load(watches, states, self.store.all_baskets())
        self._loaded = {watch.id: watch for watch in watches}
        for channel in self.store.channels():
            self._apply_channel_settings(channel)

    def sync_watches(self, channel: str | None = None) -> bool:
        """Bring the engine in line with the store after commands (here or in another process)."""
        current = {watch.id: watch for watch in self.store.list_watches(channel)}
        loaded = {
            wid: w for wid, w in self._loaded.items() if channel is None or w.channel == channel
        }
        changed = False
        for watch_id in loaded.keys() - current.keys():
            self.engine.remove_watch(watch_id)
            del self._loaded[watch_id]
            changed = True
        for watch_id in current.keys() - loaded.keys():
            self.engine.upsert_watch(current[watch_id])
            self._loaded[watch_id] = current[watch_id]
            changed = True
        channels = [channel] if channel is not None else self.store.channels()
        for name in channels:
            self._apply_channel_settings(name)
        return changed

    def _apply_channel_settings(self, channel: str) -> None:
        self.engine.set_baskets(channel, self.store.list_baskets(channel))
        resolved = self.store.channel_settings(channel).get("resolved")
        if isinstance(resolved, bool):
            self.engine.set_resolved_notices(channel, resolved)

    def symbols(self) -> frozenset[str]:
        """Every symbol the watches need, plus the market-context futures."""
        return self.engine.symbols() | frozenset(self.context_symbols)

    # -- market view (for /price, /digest, /news) -----------------------------------------

    def latest_quote(self, symbol: str) -> Quote | None:
        return self._latest.get(symbol)

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]:
        wanted = set(symbols)
        items = [item for item in reversed(self._news) if not wanted or wanted & set(item.symbols)]
        return items[:limit]

    # -- ingest ---------------------------------------------------------------------------

    def ingest_quotes(
        self, quotes: Sequence[Quote], unavailable: Mapping[str, str] | None = None
    ) -> list[Alert]:
        """Evaluate a batch of trusted quotes (and symbols the gate found unusable)."""
        now = self.clock.now()
        for quote in quotes:
            self._remember(quote)
        evaluations = [self.engine.on_quotes(quotes, now)]
        if unavailable:
            evaluations.append(self.engine.mark_unavailable(unavailable, now))
        return self._record(evaluations, now)

    def _remember(self, quote: Quote) -> None:
        previous = self._latest.get(quote.symbol)
        self._latest[quote.symbol] = quote
        change = quote.change_pct()
        if change is None:
            return
        path = self._history.get(quote.symbol)
        if path is None or previous is None or previous.previous_close != quote.previous_close:
            path = self._history[quote.symbol] = deque(maxlen=HISTORY_POINTS)  # a new day
        if not path or quote.time > path[-1][0]:
            path.append((quote.time, change))

    def ingest_news(self, items: Iterable[NewsItem]) -> list[Alert]:
        fresh = [item for item in items if item.key not in self._news_keys]
        if not fresh:
            return []
        for item in fresh:
            self._news.append(item)
            self._news_keys.add(item.key)
        if len(self._news_keys) > 4 * NEWS_KEPT:
            self._news_keys = {item.key for item in self._news}
        now = self.clock.now()
        return self._record([self.engine.on_news(fresh, now)], now)

    def _record(self, evaluations: Sequence[Evaluation], now: datetime) -> list[Alert]:
        states = [state for evaluation in evaluations for state in evaluation.states]
        alerts = [alert for evaluation in evaluations for alert in evaluation.alerts]
        if not states and not alerts:
            return []
        self.stats.evaluations += 1
        mutes_by_channel: dict[str, list[Mute]] = {}

        def muted(alert: Alert) -> bool:
            if alert.channel not in mutes_by_channel:
                mutes_by_channel[alert.channel] = self.store.active_mutes(alert.channel, now)
            baskets = self._baskets(alert.channel)
            return is_muted(alert, mutes_by_channel[alert.channel], now, baskets)

        def plan(open_groups: Mapping[str, OpenGroup], new: Sequence[Alert]) -> list[GroupDecision]:
            return decide_groups(open_groups, new, now, self.grouping)

        fresh = self.store.record_evaluation(
            [(s.watch_id, s.symbol, s.to_record()) for s in states],
            alerts,
            now=now,
            plan_groups=plan,
            is_muted=muted,
        )
        self.stats.alerts_stored += len(fresh)
        self.stats.duplicates_refused += len(alerts) - len(fresh)
        return fresh

    def _baskets(self, channel: str) -> dict[str, tuple[str, ...]]:
        return all_baskets(self.store.list_baskets(channel))

    # -- delivery -------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send or edit every outbox row that is due; returns how many the platforms accepted."""
        now = self.clock.now()
        accepted = 0
        for delivery in self.store.due_deliveries(now):
            platform = self._platform_for(delivery.channel)
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
            message = self._message_for(delivery)
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
        moves = {a.symbol: list(self._history.get(a.symbol, ())) for a in message.alerts}
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

    def _platform_for(self, channel: str) -> ChatPlatform | None:
        return next((p for p in self.platforms if p.handles(channel)), None)

    def _message_for(self, delivery: Delivery) -> AlertMessage:
        symbols = {alert.symbol for alert in delivery.alerts}
        now = self.clock.now()
        headlines = [
            item
            for item in reversed(self._news)
            if symbols & set(item.symbols) and now - item.published <= HEADLINE_WINDOW
        ][:3]
        return compose_message(
            delivery.channel,
            delivery.alerts,
            context=context_lines(self.context_symbols, self._latest),
            headlines=headlines,
            baskets=self._baskets(delivery.channel),
            now=now,
            # The whole basket's latest moves, so a follow-up counts every name that is down,
            # not only those in its own group.
            moves=self.engine.latest_changes(),
        )

    # -- digest ---------------------------------------------------------------------------

    async def send_digest(self, channel: str, day: date) -> bool:
        """Post the channel's premarket digest for ``day`` once; False if already sent or failed.

        The day is recorded only after the platform accepted the digest: a failure is retried
        by the next run, and a crash in between at worst repeats it under the same
        idempotency key.
        """
        if self.store.channel_settings(channel).get("digest_sent") == day.isoformat():
            return False
        platform = self._platform_for(channel)
        if platform is None:
            return False
        targets = {w.target for w in self.store.list_watches(channel)} - {"news"}
        symbols = sorted(t for t in targets if not is_basket_target(t))
        now = self.clock.now()
        message = compose_digest(
            channel,
            symbols,
            self._latest,
            day=day,
            now=now,
            context=context_lines(self.context_symbols, self._latest),
            headlines=self.recent_news(symbols, 3),
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
        baskets = self._baskets(mute.channel)
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
            platform = self._platform_for(mute.channel)
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
