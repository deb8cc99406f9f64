"""Fetch feed bodies over HTTP: conditional requests, timeouts, a size cap, per-feed backoff."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import aiohttp

from alerts.ports import Clock
from bot.market.yahoo_poll import Backoff
from bot.market.yahoo_session import rewrite_url
from bot.news.feeds import Feed

log = logging.getLogger(__name__)

USER_AGENT = "marketbot feed reader (aiohttp)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9"


class FetchStatus(StrEnum):
    BODY = "body"  # a new body to parse
    NOT_MODIFIED = "not-modified"  # 304: nothing new since the last ETag / Last-Modified
    FAILED = "failed"  # network, status, size or timeout: the feed backs off
    BACKING_OFF = "backing-off"  # not asked at all this cycle


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    feed: Feed
    status: FetchStatus
    body: bytes = b""
    content_type: str = ""
    error: str | None = None


@dataclass
class _FeedState:
    etag: str | None = None
    last_modified: str | None = None
    backoff: Backoff | None = None
    failing: bool = False


@dataclass
class FetchStats:
    requests: int = 0
    not_modified: int = 0
    failures: int = 0
    bodies: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


class FeedFetcher:
    """An aiohttp client of its own; feedparser only ever sees the bytes it returns.

    Yahoo URLs go through the ``MARKETBOT_YAHOO__BASE_URL`` rewrite like prices, so a mirror
    or the loopback fake answers them; other feeds are fetched as given.

    ``interval`` is the caller's time between ``fetch_all`` cycles (the news poll). A feed
    whose backoff ends between two cycles is asked at the next cycle after it, so that is the
    time the failure log gives. An outage is logged once per endpoint (the feed's label: host
    and path), not per URL: Yahoo's headline URL changes with the watch list, the outage not.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        yahoo_base_url: str | None = None,
        timeout: float = 10.0,
        max_bytes: int = 2_000_000,
        rng: random.Random | None = None,
        interval: float | None = None,
    ) -> None:
        self.clock = clock
        self.yahoo_base_url = yahoo_base_url
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        self.max_bytes = max_bytes
        self.stats = FetchStats()
        self._rng = rng or random.Random()
        self.interval = interval
        self._state: dict[str, _FeedState] = {}
        self._down: set[str] = set()  # labels of endpoints in an outage (logged at its start)
        self._current: dict[str, Feed] = {}  # url -> feed of the latest cycle
        self._cycle_at: datetime | None = None
        self._session: aiohttp.ClientSession | None = None
        self.closed = False

    def target_url(self, feed: Feed) -> str:
        if self.yahoo_base_url and feed.is_yahoo:
            return rewrite_url(feed.url, self.yahoo_base_url)
        return feed.url

    def _client(self) -> aiohttp.ClientSession:
        if self.closed:
            raise aiohttp.ClientConnectionError("feed fetcher closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
                # Feeds are small; a handful at once keeps one slow host from holding the rest.
                connector=aiohttp.TCPConnector(limit=8),
            )
        return self._session

    async def fetch_all(
        self, feeds: Sequence[Feed], *, at: datetime | None = None
    ) -> list[FetchOutcome]:
        """One cycle: every feed not backing off, at once. ``at``: when the cycle began.

        The feeds given are the cycle's whole list: a URL no longer in it (a watch list that
        changed) is forgotten, its outage carried by the endpoint it belonged to.
        """
        self._cycle_at = at or self.clock.now()
        self._current = {feed.url: feed for feed in feeds}
        for url in [url for url in self._state if url not in self._current]:
            del self._state[url]
        labels = {feed.label for feed in feeds}
        self._down &= labels  # an endpoint no longer read has no outage to report the end of
        return list(await asyncio.gather(*(self.fetch(feed) for feed in feeds)))

    async def fetch(self, feed: Feed) -> FetchOutcome:
        state = self._state.setdefault(feed.url, _FeedState())
        # Judged at the cycle's start, the time the failure log's "next try" was counted from.
        at = self._cycle_at or self.clock.now()
        until = state.backoff.until if state.backoff is not None else None
        if until is not None and until > at:
            return FetchOutcome(feed, FetchStatus.BACKING_OFF)
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        self.stats.requests += 1
        try:
            async with self._client().get(
                self.target_url(feed), headers=headers, allow_redirects=True, max_redirects=3
            ) as response:
                if response.status == 304:
                    self.stats.not_modified += 1
                    self._succeeded(feed, state)
                    return FetchOutcome(feed, FetchStatus.NOT_MODIFIED)
                if response.status >= 400:
                    return self._failed(feed, state, "status", f"HTTP {response.status}")
                declared = response.content_length
                if declared is not None and declared > self.max_bytes:
                    return self._failed(feed, state, "too_big", f"{declared} bytes declared")
                body = await self._read_capped(response)
                if body is None:
                    return self._failed(feed, state, "too_big", f"over {self.max_bytes} bytes")
                etag = response.headers.get("ETag")
                modified = response.headers.get("Last-Modified")
                content_type = response.headers.get("Content-Type", "")
        except TimeoutError:
            return self._failed(feed, state, "timeout", "timed out")
        except aiohttp.ClientError as exc:
            return self._failed(feed, state, "unreachable", type(exc).__name__)
        state.etag, state.last_modified = etag, modified
        self.stats.bodies += 1
        # Not yet a success: the body must still parse (``mark_usable`` / ``mark_unusable``).
        return FetchOutcome(feed, FetchStatus.BODY, body=body, content_type=content_type)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes | None:
        """The body, or None as soon as it passes the cap (a chunked giant is not buffered)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _succeeded(self, feed: Feed, state: _FeedState) -> None:
        if state.backoff is not None:
            state.backoff.succeeded()
        state.failing = False
        if feed.label in self._down and not self._failing(feed.label):
            self._down.discard(feed.label)
            log.info("news feed %s is answering again", feed.label)

    def _failing(self, label: str) -> bool:
        """Whether a feed of this endpoint, in the latest cycle's list, is still failing."""
        return any(
            state.failing
            for url, state in self._state.items()
            if url in self._current and self._current[url].label == label
        )

    def _failed(self, feed: Feed, state: _FeedState, kind: str, detail: str) -> FetchOutcome:
        self.stats.failures += 1
        self.stats.by_error[kind] = self.stats.by_error.get(kind, 0) + 1
        if state.backoff is None:
            state.backoff = Backoff(self.clock, base=30.0, cap=3600.0, rng=self._rng)
        state.backoff.failed()
        state.failing = True
        if feed.label not in self._down and not self.closed:
            self._down.add(feed.label)
            retry = self.next_try(state.backoff.until or self.clock.now())
            wait = (retry - self.clock.now()).total_seconds()
            log.warning(
                "news feed %s failed (%s); skipping it, next try at %s UTC (in %.0f s)",
                feed.label,
                detail,
                f"{retry.astimezone(UTC):%H:%M:%S}",
                wait,
            )
        return FetchOutcome(feed, FetchStatus.FAILED, error=detail)

    def next_try(self, free_at: datetime) -> datetime:
        """When a feed whose backoff ends at ``free_at`` is asked: the first cycle from then.

        Cycles come every ``interval`` from the current one's start; without an interval
        (a one-off fetch) the backoff's end is all there is to say.
        """
        start = self._cycle_at
        if self.interval is None or start is None:
            return free_at
        cycles = max(1, math.ceil((free_at - start).total_seconds() / self.interval))
        return start + timedelta(seconds=cycles * self.interval)

    def mark_usable(self, feed: Feed) -> None:
        self._succeeded(feed, self._state.setdefault(feed.url, _FeedState()))

    def mark_unusable(self, feed: Feed, why: str) -> None:
        """The body came but is not a feed (HTML, garbage): back off as for a failure."""
        state = self._state.setdefault(feed.url, _FeedState())
        # Forget the validators: the next body must be fetched whole and judged again.
        state.etag = state.last_modified = None
        self._failed(feed, state, "unusable", why)

    async def close(self) -> None:
        self.closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
