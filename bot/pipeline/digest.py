"""The premarket digest: built from the store and the market view, posted when due, charted.

One builder serves ``/digest`` (now) and the daily post, so both show the same thing. Whether a
digest is due is decided on the injected clock by ``alerts.digest.DigestSchedule`` (local time
in the channel's zone, across DST) and the NYSE calendar (holidays, early closes). A due digest
becomes an outbox row of its channel's lane, with the day marked in the same transaction, so
delivery posts it exactly once across restarts and retries a failed send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from alerts.attribution import attribute
from alerts.baskets import all_baskets
from alerts.commands import CommandError
from alerts.digest import (
    DIGEST_INDEX_SYMBOLS,
    DIGEST_WINDOW,
    MAX_DIGEST_HEADLINES,
    DigestSchedule,
    compose_digest,
    digest_moves,
    digest_symbols,
)
from alerts.models import AlertMessage, NewsItem
from alerts.ports import ChatPlatform, Clock
from bot.pipeline.market_view import MarketState
from bot.pipeline.platforms import platform_for
from bot.pipeline.stats import PipelineStats
from bot.store import SqlStore

log = logging.getLogger(__name__)

CALENDAR_SYMBOL = "SPY"  # any US equity: the NYSE calendar decides what a trading day is
NEW_YORK = ZoneInfo("America/New_York")
REGULAR_CLOSE = (16, 0)
# A bare /digest posts a charted message to the whole channel, so a channel gets one on
# request per this long. The digest is a premarket summary against the previous close: ten
# minutes hold several polls' worth of change, and one person repeating the command can post
# at most six an hour instead of one a second.
ON_REQUEST_EVERY = timedelta(minutes=10)


class DigestTooSoon(CommandError):
    """A digest asked for within ``ON_REQUEST_EVERY`` of the channel's last one: the line the
    user reads (a ``CommandError``, so the command layer answers with it and nothing else)."""

    def __init__(self, posted: datetime, zone: ZoneInfo) -> None:
        shown, free = posted.astimezone(zone), (posted + ON_REQUEST_EVERY).astimezone(zone)
        minutes = int(ON_REQUEST_EVERY.total_seconds() // 60)
        super().__init__(
            f"A digest was posted here at {shown:%H:%M %Z}; ask again from {free:%H:%M %Z} "
            f"(one on request every {minutes} minutes per channel)."
        )


@lru_cache(maxsize=4096)
def _session(day: date) -> tuple[datetime, datetime] | None:
    from bot.market.sessions import regular_session_bounds

    return regular_session_bounds(CALENDAR_SYMBOL, day)


def is_trading_day(day: date) -> bool:
    """NYSE trades on ``day`` (exchange_calendars: weekends, holidays, 2025-01-09 closed)."""
    return _session(day) is not None


def early_close_note(day: date) -> str | None:
    """``Early close 13:00 ET`` on a shortened NYSE session (the day before July 4th...)."""
    bounds = _session(day)
    if bounds is None:
        return None
    close = bounds[1].astimezone(NEW_YORK)
    if (close.hour, close.minute) >= REGULAR_CLOSE:
        return None
    return f"Early close {close:%H:%M} ET"


def previous_close_time(day: date) -> datetime:
    """When the regular session before ``day`` closed: news since then explains the premarket."""
    for back in range(1, 15):
        bounds = _session(day - timedelta(days=back))
        if bounds is not None:
            return bounds[1]
    return datetime.combine(day - timedelta(days=3), datetime.min.time(), tzinfo=NEW_YORK)


class Digests:
    """Builds and posts channel digests; ``run_due`` is the scheduled job."""

    def __init__(
        self,
        store: SqlStore,
        market: MarketState,
        platforms: Sequence[ChatPlatform],
        clock: Clock,
        stats: PipelineStats,
        *,
        timezone: str = "America/New_York",
        charts: bool = True,
        name_terms: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.store = store
        self.market = market
        self.platforms = platforms
        self.clock = clock
        self.stats = stats
        self.timezone = timezone
        self.charts = charts
        # How headlines write the watched companies (from the news source): never a theme.
        self.name_terms = name_terms
        # When each channel's last digest on request was queued (commands run on threads).
        self._asked: dict[str, datetime] = {}
        self._asked_lock = threading.Lock()

    # -- what -----------------------------------------------------------------------------

    def build(self, channel: str, day: date | None = None) -> AlertMessage:
        """The channel's digest as of now: index futures and the VIX, watched symbols and
        basket members by premarket move, baskets summarised, headlines since the last close."""
        now = self.clock.now()
        if day is None:
            day = self._schedule_or_default(channel).local_day(now)
        targets = [w.target for w in self.store.list_watches(channel)]
        symbols, baskets = digest_symbols(targets, all_baskets(self.store.list_baskets(channel)))
        headlines, theme = self._headlines(symbols, day, now)
        note = early_close_note(day)
        return compose_digest(
            channel,
            symbols,
            self.market.latest,
            day=day,
            now=now,
            headlines=headlines,
            baskets=baskets,
            theme=theme,
            notes=(note,) if note else (),
        )

    def _headlines(
        self, symbols: Sequence[str], day: date, now: datetime
    ) -> tuple[tuple[NewsItem, ...], str | None]:
        """The news helper's attribution, as for a broad move: stories about the digest's
        names first, then their theme, then market-wide ones, since the previous close."""
        latest = self.market.latest
        moves = {
            s: change
            for s in (*symbols, *DIGEST_INDEX_SYMBOLS)
            if (q := latest.get(s)) is not None and (change := q.change_pct()) is not None
        }
        found = attribute(
            moves,
            self.market.news(),
            since=previous_close_time(day),
            move_start=now,
            now=now,
            broad=True,
            exclude_terms=self.name_terms(),
            limit=MAX_DIGEST_HEADLINES,
        )
        return tuple(c.item for c in found.catalysts), found.theme

    def chart(self, message: AlertMessage) -> bytes | None:
        """The PNG of the digest's moves (blocking: run it off the event loop)."""
        from bot.digest_chart import render_digest_chart

        return render_digest_chart(digest_moves(message), title=message.title)

    # -- when -----------------------------------------------------------------------------

    def schedule(self, channel: str) -> DigestSchedule | None:
        return DigestSchedule.from_settings(self.store.channel_settings(channel), self.timezone)

    def _schedule_or_default(self, channel: str) -> DigestSchedule:
        schedule = self.schedule(channel)
        return schedule or DigestSchedule(datetime.min.time(), self.timezone)

    def due(self) -> list[tuple[str, date]]:
        """(channel, day) of every digest that should go out now."""
        now = self.clock.now()
        out = []
        for channel in self.store.channels():
            settings = self.store.channel_settings(channel)
            schedule = DigestSchedule.from_settings(settings, self.timezone)
            if schedule is None:
                continue
            day = schedule.due_day(
                now, is_trading_day=is_trading_day, sent_day=settings.digest_sent
            )
            if day is not None:
                out.append((channel, day))
        return out

    def queue_due(self) -> int:
        """Queue every due digest in its channel's outbox lane; returns how many."""
        return sum(self.queue(channel, day) for channel, day in self.due())

    # -- sending --------------------------------------------------------------------------

    def queue(self, channel: str, day: date) -> bool:
        """Queue the channel's digest for ``day`` once; False if already queued.

        The digest is composed now and posted by delivery like any alert (claim, reconcile,
        retry, broken destinations). The day's marker is stored in the same transaction as
        the outbox row: a crash before leaves neither (due again), after leaves both (the
        outbox delivers it exactly once). A digest still unsent when its window ends expires.
        """
        if platform_for(self.platforms, channel) is None:
            return False
        if self.store.channel_settings(channel).digest_sent == day:
            return False
        now = self.clock.now()
        window_end = self._schedule_or_default(channel).scheduled(day) + DIGEST_WINDOW
        return self.store.queue_digest(
            self.build(channel, day),
            day=day,
            now=now,
            # Its scheduled window; one asked for outside it (``send_digest``) gets as long.
            expires_at=window_end if now < window_end else now + DIGEST_WINDOW,
        )

    def queue_now(self, channel: str) -> bool:
        """Queue the channel's digest as of now (``/digest``): posted by delivery as the daily
        one is, chart included, but the day is not marked, so the scheduled one still goes out.
        False if no platform serves the channel (a channel new to the store gets its row).

        At most one per channel every ``ON_REQUEST_EVERY`` (``DigestTooSoon`` otherwise).
        """
        if platform_for(self.platforms, channel) is None:
            return False
        with self._asked_lock:  # two users asking at once: one digest, one refusal
            now = self.clock.now()
            last = self._asked.get(channel)
            if last is not None and now < last + ON_REQUEST_EVERY:
                raise DigestTooSoon(last, ZoneInfo(self.timezone))
            queued = self.store.queue_digest(
                self.build(channel), day=None, now=now, expires_at=now + DIGEST_WINDOW
            )
            if queued:
                self._asked[channel] = now
            return queued
