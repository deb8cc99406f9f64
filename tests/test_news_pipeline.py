"""News through the pipeline: each story once per channel, stored news on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.engine import Engine
from alerts.models import AlertKind, NewsItem
from alerts.ports import ManualClock
from bot.news.store import NewsStore
from bot.pipeline import Pipeline
from bot.store import SqlStore

NOW = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
STORY = NewsItem(
    key="n:deepseek",
    title="Nvidia sinks as DeepSeek rattles AI stocks",
    published=NOW - timedelta(minutes=5),
    url="https://news.example/deepseek",
    symbols=("NVDA",),
)


def test_two_news_watches_of_a_channel_alert_a_story_once(sqlite_store: SqlStore) -> None:
    pipeline = Pipeline(sqlite_store, Engine(), [], ManualClock(NOW))
    for keyword in ("deepseek", "nvidia"):
        sqlite_store.add_watch("console:default", "news", f"news {keyword}", now=NOW)
    sqlite_store.add_watch("slack:C1", "news", "news deepseek", now=NOW)
    pipeline.sync_watches()
    alerts = pipeline.ingest_news([STORY])
    assert sorted(a.channel for a in alerts) == ["console:default", "slack:C1"]
    assert {a.kind for a in alerts} == {AlertKind.NEWS}
    assert pipeline.ingest_news([STORY]) == []  # seen: never again


def test_preloaded_news_explains_but_never_alerts(sqlite_store: SqlStore) -> None:
    pipeline = Pipeline(sqlite_store, Engine(), [], ManualClock(NOW))
    sqlite_store.add_watch("console:default", "news", "news deepseek", now=NOW)
    pipeline.sync_watches()
    pipeline.preload_news([STORY])  # what a restart loads from the database
    assert pipeline.ingest_news([STORY]) == []
    assert pipeline.recent_news(["NVDA"], 5) == [STORY]


@pytest.mark.parametrize("backend", ["sqlite_store", "postgres_store"])
def test_news_store_deduplicates_on_every_database(
    backend: str, request: pytest.FixtureRequest
) -> None:
    store: SqlStore = request.getfixturevalue(backend)
    news = NewsStore(store.engine)
    copy = NewsItem(key="n:other", title=STORY.title, published=STORY.published, symbols=("AMD",))
    assert news.add([STORY, copy], now=NOW) == [STORY]  # same title in one batch: one story
    [stored] = news.recent(NOW - timedelta(hours=1))
    assert stored.symbols == ("NVDA", "AMD")  # the copy's symbol completes the tagging
    assert news.recent(NOW - timedelta(hours=1), symbols=["AMD"]) == [stored]
    assert news.recent(NOW, symbols=["NVDA"]) == []  # published before `since`
