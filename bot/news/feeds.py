"""Which feeds to read: Yahoo's per-symbol headlines (batched), general market feeds, extras."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

YAHOO_HEADLINES = "https://feeds.finance.yahoo.com/rss/2.0/headline"
# Yahoo's general market headlines; the index symbols below bring market-wide stories too.
GENERAL_FEEDS = ("https://finance.yahoo.com/news/rssindex",)
# Market-wide headlines come with the broad indices and their futures.
MARKET_SYMBOLS = ("^GSPC", "^IXIC", "^DJI", "NQ=F", "ES=F", "YM=F")


@dataclass(frozen=True, slots=True)
class Feed:
    """One URL to poll. ``symbols`` are the tickers a Yahoo headline feed was asked about."""

    url: str
    name: str
    symbols: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How logs name the feed: host and path (a query may be a long symbol list)."""
        parts = urlsplit(self.url)
        return f"{parts.netloc}{parts.path}"

    @property
    def is_yahoo(self) -> bool:
        return is_yahoo_url(self.url)


def is_yahoo_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "yahoo.com" or host.endswith(".yahoo.com")


def yahoo_headline_feeds(symbols: Iterable[str], batch_size: int) -> list[Feed]:
    """As few Yahoo headline requests as the feed allows: ``batch_size`` symbols per URL.

    Symbols are sorted so the same watch list always yields the same URLs, which keeps each
    URL's ETag and backoff meaningful from one cycle to the next.
    """
    ordered = sorted(set(symbols))
    feeds = []
    for i in range(0, len(ordered), batch_size):
        chunk = tuple(ordered[i : i + batch_size])
        joined = ",".join(quote(s, safe="^=.-") for s in chunk)
        url = f"{YAHOO_HEADLINES}?s={joined}&region=US&lang=en-US"
        feeds.append(Feed(url=url, name="Yahoo Finance", symbols=chunk))
    return feeds


def general_feeds(extra: Sequence[str], *, defaults: bool) -> list[Feed]:
    urls = [*(GENERAL_FEEDS if defaults else ()), *extra]
    return [Feed(url=url, name=feed_name(url)) for url in dict.fromkeys(urls)]


def feed_name(url: str) -> str:
    host = (urlsplit(url).hostname or url).lower().removeprefix("www.")
    return "Yahoo Finance" if is_yahoo_url(url) else host


def feeds_for(
    symbols: Iterable[str],
    *,
    extra: Sequence[str] = (),
    defaults: bool = True,
    yahoo_headlines: bool = True,
    batch_size: int = 60,
) -> list[Feed]:
    """Every feed of one cycle: Yahoo headlines for the symbols (and the market) plus the rest."""
    feeds: list[Feed] = []
    if yahoo_headlines:
        wanted = set(symbols) | (set(MARKET_SYMBOLS) if defaults else set())
        feeds.extend(yahoo_headline_feeds(wanted, batch_size))
    feeds.extend(general_feeds(extra, defaults=defaults))
    return feeds
