"""The live news source: each cycle fetches every feed, parses, tags and stores new stories."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.models import NewsItem
from alerts.ports import Clock
from bot.news.feeds import Feed, feeds_for
from bot.news.fetch import FeedFetcher, FetchStatus
from bot.news.parse import parse_feed
from bot.news.store import NewsStore, story_key
from bot.news.tagging import SymbolTagger, short_name
from bot.settings import NewsSettings

log = logging.getLogger(__name__)

# Names Yahoo did not give are asked for again after this long, not every cycle.
NAME_RETRY = timedelta(hours=6)

NameLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]


@dataclass
class CycleReport:
    """What one cycle did, for logs, metrics and the benchmark."""

    feeds: int = 0
    requests: int = 0
    not_modified: int = 0
    failed: int = 0
    parsed: int = 0
    new: list[NewsItem] = field(default_factory=list)


class NewsSource:
    """Feeds for the watched symbols, read on the scheduler; bad feeds are skipped, never fatal.

    ``names`` looks up company names for symbols (Yahoo's v7 quote ``longName`` via the
    poller) so stories that write "Nvidia" rather than "$NVDA" are tagged too.
    """

    def __init__(
        self,
        settings: NewsSettings,
        *,
        clock: Clock,
        fetcher: FeedFetcher,
        store: NewsStore,
        names: NameLookup | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.fetcher = fetcher
        self.store = store
        self.tagger = SymbolTagger()
        self._lookup = names
        self._asked: dict[str, datetime] = {}
        self._warned: set[tuple[str, str]] = set()
        self.cycles = 0

    def feeds(self, symbols: Collection[str]) -> list[Feed]:
        s = self.settings
        return feeds_for(
            symbols,
            extra=s.feeds,
            defaults=s.default_feeds,
            yahoo_headlines=s.yahoo_headlines,
            batch_size=s.yahoo_batch_size,
        )

    def name_terms(self) -> list[str]:
        """How headlines write the watched companies, so a name is never taken for a theme."""
        terms = []
        for name in self.tagger.names().values():
            short = short_name(name)
            terms.append(short)
            terms.extend(short.split())
        return terms

    async def _learn_names(self, symbols: Collection[str]) -> None:
        if self._lookup is None:
            return
        now = self.clock.now()
        known = self.tagger.known()
        missing = sorted(
            s
            for s in symbols
            if s not in known and (s not in self._asked or now - self._asked[s] > NAME_RETRY)
        )
        if not missing:
            return
        for s in missing:
            self._asked[s] = now
        try:
            self.tagger.set_names(await self._lookup(missing))
        except Exception as exc:  # names only improve tagging: never stop the cycle for them
            log.warning("company names for news tagging unavailable: %s", exc)

    async def cycle(self, symbols: Collection[str]) -> CycleReport:
        """Fetch every feed once; store and return the stories not seen before."""
        self.cycles += 1
        started = self.clock.now()  # the scheduled time, before names are looked up
        report = CycleReport()
        await self._learn_names(symbols)
        feeds = self.feeds(symbols)
        report.feeds = len(feeds)
        before = self.fetcher.stats.requests
        outcomes = await self.fetcher.fetch_all(feeds, at=started)
        report.requests = self.fetcher.stats.requests - before
        now = self.clock.now()
        items: list[NewsItem] = []
        for outcome in outcomes:
            if outcome.status is FetchStatus.NOT_MODIFIED:
                report.not_modified += 1
                continue
            if outcome.status is FetchStatus.FAILED:
                report.failed += 1
            if outcome.status is not FetchStatus.BODY:
                continue
            feed = outcome.feed
            parsed = await asyncio.to_thread(
                parse_feed,
                outcome.body,
                source=feed.name,
                content_type=outcome.content_type,
                now=now,
                use_feed_title=not feed.is_yahoo,
            )
            if parsed.problem is not None:
                report.failed += 1
                self.fetcher.mark_unusable(feed, parsed.problem)
                continue
            self.fetcher.mark_usable(feed)
            for reason, count in parsed.skipped.items():
                self._warn_once(feed, reason, count)
            report.parsed += len(parsed.entries)
            for entry in parsed.entries:
                tags = self.tagger.tag(entry.title, watched=symbols, tickers=entry.tickers)
                if not tags and len(feed.symbols) == 1:
                    tags = feed.symbols  # a one-symbol Yahoo feed speaks of that symbol
                items.append(
                    NewsItem(
                        key=story_key(guid=entry.guid, url=entry.link, title=entry.title),
                        title=entry.title,
                        published=entry.published,
                        url=entry.link,
                        source=entry.source,
                        symbols=tags,
                    )
                )
        if items:
            report.new = await asyncio.to_thread(self.store.add, items, now=now)
        return report

    def _warn_once(self, feed: Feed, reason: str, count: int) -> None:
        key = (feed.url, reason)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("news feed %s: skipped %d item(s): %s", feed.label, count, reason)

    async def close(self) -> None:
        await self.fetcher.close()


def build_news_source(
    settings: NewsSettings,
    *,
    clock: Clock,
    store: NewsStore,
    yahoo_base_url: str | None,
    names: NameLookup | None = None,
) -> NewsSource:
    fetcher = FeedFetcher(
        clock=clock,
        yahoo_base_url=yahoo_base_url,
        timeout=settings.timeout_seconds,
        max_bytes=settings.max_bytes,
        interval=settings.poll_interval_seconds,
    )
    return NewsSource(settings, clock=clock, fetcher=fetcher, store=store, names=names)
