"""Ingest: quotes and news -> engine -> mute and grouping decisions (pure) -> one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from alerts.baskets import all_baskets
from alerts.engine import Engine, Evaluation, RuleState
from alerts.grouping import GroupingConfig, decide_groups
from alerts.models import Alert, AlertKind, GroupDecision, Mute, NewsItem, OpenGroup, Quote, Watch
from alerts.mute import is_muted
from alerts.ports import Clock
from bot.pipeline.market_view import MarketState
from bot.pipeline.stats import PipelineStats
from bot.store import SqlStore


def muted_keys(
    alerts: Sequence[Alert],
    mutes: Mapping[str, Sequence[Mute]],
    baskets: Mapping[str, Mapping[str, Sequence[str]]],
    now: datetime,
) -> frozenset[str]:
    """The alerts a mute in force covers: stored and tracked, never sent."""
    return frozenset(
        alert.key
        for alert in alerts
        if is_muted(alert, mutes.get(alert.channel, ()), now, baskets.get(alert.channel))
    )


def plan_groups(
    open_groups: Mapping[str, OpenGroup],
    alerts: Sequence[Alert],
    muted: frozenset[str],
    now: datetime,
    config: GroupingConfig,
) -> list[GroupDecision]:
    """Which message each unmuted alert goes into; a pure step before the write."""
    return decide_groups(open_groups, [a for a in alerts if a.key not in muted], now, config)


def once_per_channel(evaluation: Evaluation) -> Evaluation:
    """Two news watches of one channel matching the same story make one alert, not two."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for alert in evaluation.alerts:
        if alert.kind is AlertKind.NEWS:
            story = (alert.channel, alert.url or alert.headline or alert.key)
            if story in seen:
                continue
            seen.add(story)
        kept.append(alert)
    return Evaluation(states=evaluation.states, alerts=tuple(kept))


class Ingest:
    """Feeds the engine and writes each evaluation with its decisions in one transaction.

    Reads (known keys, mutes, baskets, open groups) happen before the write, decisions are
    made by pure functions of the core, and the store receives plain data: it never calls
    back into the pipeline inside its transaction. Only one ingest runs per database (the
    leader), so the groups read before the write are still the open ones when it commits.
    """

    def __init__(
        self,
        store: SqlStore,
        engine: Engine,
        market: MarketState,
        clock: Clock,
        grouping: GroupingConfig,
        stats: PipelineStats,
    ) -> None:
        self.store = store
        self.engine = engine
        self.market = market
        self.clock = clock
        self.grouping = grouping
        self.stats = stats
        self._loaded: dict[int, Watch] = {}
        # Called after each commit that queued outbox rows: delivery wakes at once.
        self.on_queued: list[Callable[[], None]] = []

    # -- state ----------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the engine from the store: watches, baskets, and every rule's saved state."""
        watches = self.store.list_watches()
        states = [RuleState.from_record(w, s, data) for w, s, data in self.store.load_states()]
        self.engine.load(watches, states, self.store.all_baskets())
        self._loaded = {watch.id: watch for watch in watches}
        for channel in self.store.channels():
            self._apply_channel_settings(channel)
        self.market.set_moves(self.engine.latest_changes())

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
        if changed:  # outages may have been joined or forgotten
            self.market.set_moves(self.engine.latest_changes())
        return changed

    def _apply_channel_settings(self, channel: str) -> None:
        self.engine.set_baskets(channel, self.store.list_baskets(channel))
        resolved = self.store.channel_settings(channel).resolved
        if resolved is not None:
            self.engine.set_resolved_notices(channel, resolved)

    def symbols(self) -> frozenset[str]:
        """Every symbol the watches need, plus the market-context futures.

        The futures only give alerts their context: with no watch anywhere there is nothing to
        give context to, so nothing at all is polled (and an offline bot stays quiet).
        """
        if not self.engine.watches():
            return frozenset()
        return self.engine.symbols() | frozenset(self.market.context_symbols)

    # -- ingest ---------------------------------------------------------------------------

    def quotes(
        self, quotes: Sequence[Quote], unavailable: Mapping[str, str] | None = None
    ) -> list[Alert]:
        """Evaluate a batch of trusted quotes (and symbols the gate found unusable)."""
        now = self.clock.now()
        for quote in quotes:
            self.market.remember(quote)
        evaluations = [self.engine.on_quotes(quotes, now)]
        if unavailable:
            self.market.mark_unavailable(unavailable, now)
            evaluations.append(self.engine.mark_unavailable(unavailable, now))
        # The engine's verdict handed down as data: delivery reads moves from the market view.
        touched = {quote.symbol for quote in quotes}.union(unavailable or ())
        self.market.set_moves(self.engine.latest_changes(touched), touched)
        return self.record(evaluations, now)

    def news(self, items: Iterable[NewsItem]) -> list[Alert]:
        fresh = self.market.add_news(items)
        if not fresh:
            return []
        now = self.clock.now()
        return self.record([once_per_channel(self.engine.on_news(fresh, now))], now)

    def record(self, evaluations: Sequence[Evaluation], now: datetime) -> list[Alert]:
        """Decide mutes and groups for the new alerts, then write it all in one transaction."""
        states = [state for evaluation in evaluations for state in evaluation.states]
        alerts = [alert for evaluation in evaluations for alert in evaluation.alerts]
        if not states and not alerts:
            return []
        self.stats.evaluations += 1
        known = self.store.known_alert_keys([a.key for a in alerts])
        new: list[Alert] = []
        for alert in alerts:
            if alert.key not in known:
                known.add(alert.key)
                new.append(alert)
        channels = sorted({alert.channel for alert in new})
        # One read for every channel of the evaluation (a storm reaches many channels), and
        # none at all when nothing new crossed.
        mutes: dict[str, list[Mute]] = {}
        stored_baskets: dict[str, dict[str, tuple[str, ...]]] = {}
        open_groups: dict[str, OpenGroup] = {}
        if channels:
            all_mutes, stored_baskets, open_groups = self.store.decision_inputs(channels)
            for mute in all_mutes:
                mutes.setdefault(mute.channel, []).append(mute)
        baskets = {channel: all_baskets(stored_baskets.get(channel, {})) for channel in channels}
        muted = muted_keys(new, mutes, baskets, now)
        decisions = plan_groups(open_groups, new, muted, now, self.grouping)
        fresh = self.store.record_evaluation(
            [(s.watch_id, s.symbol, s.to_record()) for s in states],
            new,
            now=now,
            muted_keys=muted,
            decisions=decisions,
        )
        self.stats.alerts_stored += len(fresh)
        self.stats.duplicates_refused += len(alerts) - len(fresh)
        if decisions:
            for wake in self.on_queued:
                wake()
        return fresh
