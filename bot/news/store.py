"""Stored headlines: one row per story however many feeds carried it (guid, link, title)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Engine, Index, Integer, String, Text, and_, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from alerts.models import NewsItem
from bot.store.schema import Base

_NON_WORD = re.compile(r"[^\w]+")
# "Nvidia falls 13% - Reuters": the same story from another aggregator differs only in this.
_SOURCE_SUFFIX = re.compile(r"\s+[-|–—]\s+[\w .&']{2,40}$")
# Equal titles further apart than this are different stories ("Stocks open higher").
TITLE_DUPLICATE_WINDOW = timedelta(days=2)


class NewsRow(Base):
    __tablename__ = "news_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    url: Mapped[str | None] = mapped_column(Text)
    url_hash: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    title_norm: Mapped[str] = mapped_column(String(40))  # hash of the normalised title
    source: Mapped[str | None] = mapped_column(String(200))
    published: Mapped[datetime]
    first_seen: Mapped[datetime]
    symbols: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"symbols": [...]}

    __table_args__ = (
        Index("ix_news_items_published", "published"),
        Index("ix_news_items_url_hash", "url_hash"),
        Index("ix_news_items_title_norm", "title_norm"),
    )


def normalised_title(title: str) -> str:
    text = _SOURCE_SUFFIX.sub("", title.strip())
    return _NON_WORD.sub(" ", text.lower()).strip()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def story_key(*, guid: str | None, url: str | None, title: str) -> str:
    """Stable across polls: the feed's guid, else its link, else its normalised title."""
    basis = f"g:{guid}" if guid else f"u:{url}" if url else f"t:{normalised_title(title)}"
    return "n:" + _digest(basis)[:24]


class NewsStore:
    """Headlines in the bot's database, on the store's own SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def add(self, items: Sequence[NewsItem], *, now: datetime) -> list[NewsItem]:
        """Store the stories not seen before (by key, link or title); returns only those.

        A duplicate that names more symbols adds them to the stored story, so a second feed
        can complete the tagging without the story counting as new.
        """
        fresh: list[NewsItem] = []
        with self._tx() as session:
            for item in items:
                url_hash = _digest(item.url) if item.url else None
                title_norm = _digest(normalised_title(item.title))
                same_title = and_(
                    NewsRow.title_norm == title_norm,
                    NewsRow.published >= item.published - TITLE_DUPLICATE_WINDOW,
                    NewsRow.published <= item.published + TITLE_DUPLICATE_WINDOW,
                )
                clauses = [NewsRow.key == item.key, same_title]
                if url_hash is not None:
                    clauses.append(NewsRow.url_hash == url_hash)
                existing = session.scalars(select(NewsRow).where(or_(*clauses)).limit(1)).first()
                if existing is not None:
                    known = list(existing.symbols.get("symbols", []))
                    more = [s for s in item.symbols if s not in known]
                    if more:
                        existing.symbols = {"symbols": known + more}
                    continue
                session.add(
                    NewsRow(
                        key=item.key,
                        url=item.url,
                        url_hash=url_hash,
                        title=item.title,
                        title_norm=title_norm,
                        source=item.source,
                        published=item.published,
                        first_seen=now,
                        symbols={"symbols": list(item.symbols)},
                    )
                )
                session.flush()  # the next item of this batch must see this one
                fresh.append(item)
        return fresh

    def recent(
        self, since: datetime, *, symbols: Collection[str] = (), limit: int = 500
    ) -> list[NewsItem]:
        """Stories published since ``since``, newest first; only those naming ``symbols``."""
        with self._tx() as session:
            rows = session.scalars(
                select(NewsRow)
                .where(NewsRow.published >= since)
                .order_by(NewsRow.published.desc(), NewsRow.id.desc())
                .limit(limit if not symbols else limit * 20)
            ).all()
        items = [_item(row) for row in rows]
        if symbols:
            wanted = set(symbols)
            items = [i for i in items if wanted & set(i.symbols)]
        return items[:limit]

    def count(self) -> int:
        with self._tx() as session:
            return len(session.scalars(select(NewsRow.id)).all())


def _item(row: NewsRow) -> NewsItem:
    return NewsItem(
        key=row.key,
        title=row.title,
        published=row.published,
        url=row.url,
        source=row.source,
        symbols=tuple(row.symbols.get("symbols", [])),
    )
