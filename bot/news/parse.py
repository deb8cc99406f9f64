"""Turn a feed body into clean entries with feedparser; refuse what is not a feed or is hostile."""

from __future__ import annotations

import calendar
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser

# Titles are shown in chat; anything that could ping or run is refused, not "cleaned".
_MENTION = re.compile(r"@(everyone|here|channel)\b|<[@#!][^>]*>|<!(channel|here|everyone)", re.I)
_MARKUP = re.compile(r"<\s*/?\s*(script|iframe|object|embed|style|img|a|svg)\b", re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
MAX_TITLE = 300
# A story "published" further ahead than this is a broken clock, not news from the future.
FUTURE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable story of a feed, before tagging and deduplication."""

    title: str
    published: datetime
    link: str | None
    guid: str | None
    source: str
    tickers: tuple[str, ...] = ()  # the feed's own category / related-ticker tags
    summary: str = ""


@dataclass
class ParsedFeed:
    entries: list[Entry] = field(default_factory=list)
    problem: str | None = None  # the whole body is unusable (HTML, not XML, no entries)
    skipped: dict[str, int] = field(default_factory=dict)  # entry-level refusals by reason


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


def _published(raw: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        # dict.get: FeedParserDict's own get() maps one key to the other with a warning.
        parsed = dict.get(raw, key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, TypeError):
                return None
    return None


def _refusal(raw_title: str) -> str | None:
    if _MARKUP.search(raw_title):
        return "markup in title"
    if _MENTION.search(raw_title):
        return "mention in title"
    return None


def parse_feed(
    body: bytes,
    *,
    source: str,
    content_type: str = "",
    now: datetime,
    use_feed_title: bool = True,
) -> ParsedFeed:
    """Entries with a title and a believable publish time; the rest are counted as skipped.

    An item's own <source> names its publisher; else the feed's title (``use_feed_title``,
    off for Yahoo whose feed titles are "Yahoo! Finance: NVDA News"), else ``source``.
    """
    out = ParsedFeed()
    if (
        "html" in content_type.lower()
        and b"<rss" not in body[:2048]
        and b"<feed" not in body[:2048]
    ):
        out.problem = "HTML page, not a feed"
        return out
    parsed = feedparser.parse(body, sanitize_html=True, resolve_relative_uris=False)
    version = parsed.get("version") or ""
    if not parsed.entries:
        if parsed.get("bozo"):
            out.problem = f"not a feed ({type(parsed.get('bozo_exception')).__name__})"
        elif not version:
            out.problem = "not a feed (no RSS or Atom root)"
        return out
    feed_title = _text(parsed.feed.get("title")) if parsed.get("feed") and use_feed_title else ""
    for raw in parsed.entries:
        raw_title = raw.get("title_detail", {}).get("value") or raw.get("title") or ""
        reason = _refusal(str(raw_title)) or _refusal(str(raw.get("title") or ""))
        title = _text(raw.get("title"))[:MAX_TITLE]
        published = _published(raw)
        if reason is None and not title:
            reason = "no title"
        if reason is None and published is None:
            reason = "no valid date"
        if reason is None and published is not None and published > now + FUTURE_SLACK:
            reason = "dated in the future"
        if reason is not None:
            out.skipped[reason] = out.skipped.get(reason, 0) + 1
            continue
        assert published is not None
        link = raw.get("link")
        guid = raw.get("id")
        # An aggregator names the original publisher per item (RSS <source>); else the feed.
        item_source = _text((raw.get("source") or {}).get("title"))
        out.entries.append(
            Entry(
                title=title,
                published=published,
                link=link if isinstance(link, str) and link.startswith("http") else None,
                guid=guid if isinstance(guid, str) and guid else None,
                source=item_source or feed_title or source,
                tickers=_tickers(raw.get("tags") or ()),
                summary=_text(raw.get("summary"))[:1000],
            )
        )
    return out


_TICKER = re.compile(r"^[A-Z0-9^][A-Z0-9.=\-^]{0,11}$")


def _tickers(tags: Sequence[Any]) -> tuple[str, ...]:
    """Category tags that look like tickers (Yahoo and many finance feeds tag stories so)."""
    found = []
    for tag in tags:
        for value in str(tag.get("term") or "").split(","):
            term = value.strip()
            if _TICKER.match(term):
                found.append(term)
    return tuple(dict.fromkeys(found))
