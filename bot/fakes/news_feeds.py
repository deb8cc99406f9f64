"""Feed documents for the fakes: RSS 2.0 and Atom bodies built from stories a test programs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass(frozen=True, slots=True)
class Story:
    """A headline as a feed would publish it; ``symbols`` become <category> ticker tags."""

    title: str
    published: datetime
    link: str | None = None
    guid: str | None = None
    symbols: tuple[str, ...] = ()
    source: str | None = None
    summary: str = ""
    tagged: bool = True  # False: the feed names no tickers; only the title can tell


def rss_document(stories: Sequence[Story], *, title: str = "Headlines") -> bytes:
    items = []
    for s in stories:
        parts = [f"<title>{escape(s.title)}</title>"]
        if s.link:
            parts.append(f"<link>{escape(s.link)}</link>")
        if s.guid:
            parts.append(f'<guid isPermaLink="false">{escape(s.guid)}</guid>')
        parts.append(f"<pubDate>{format_datetime(s.published, usegmt=True)}</pubDate>")
        if s.summary:
            parts.append(f"<description>{escape(s.summary)}</description>")
        if s.source:
            parts.append(f'<source url="https://example.invalid/">{escape(s.source)}</source>')
        if s.tagged:
            parts.extend(f"<category>{escape(sym)}</category>" for sym in s.symbols)
        items.append("<item>" + "".join(parts) + "</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.invalid/</link>"
        f"<description>{escape(title)}</description>" + "".join(items) + "</channel></rss>"
    ).encode()


def atom_document(stories: Sequence[Story], *, title: str = "Headlines") -> bytes:
    entries = []
    for s in stories:
        parts = [f"<title>{escape(s.title)}</title>"]
        if s.link:
            parts.append(f'<link href="{escape(s.link)}"/>')
        parts.append(f"<id>{escape(s.guid or s.link or s.title)}</id>")
        parts.append(f"<updated>{s.published.isoformat()}</updated>")
        parts.append(f"<published>{s.published.isoformat()}</published>")
        if s.tagged:
            parts.extend(f'<category term="{escape(sym)}"/>' for sym in s.symbols)
        entries.append("<entry>" + "".join(parts) + "</entry>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:fake</id>"
        "<updated>2025-01-01T00:00:00Z</updated>" + "".join(entries) + "</feed>"
    ).encode()
