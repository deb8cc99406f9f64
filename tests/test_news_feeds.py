"""Live news feeds against loopback servers: RSS, Atom, duplicates, 304s, slow and hostile feeds."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.models import NewsItem
from alerts.ports import ManualClock
from bot.fakes.news_feeds import Story, atom_document, rss_document
from bot.fakes.news_server import FakeNewsServer, FeedRoute
from bot.fakes.yahoo_server import FakeYahoo
from bot.news.fetch import FeedFetcher
from bot.news.source import NewsSource
from bot.news.store import NewsStore
from bot.settings import NewsSettings
from bot.store import SqlStore

NOW = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # Monday 04:00 ET
WATCHED = ("NVDA", "AVGO", "TSM")
NAMES = {"NVDA": "NVIDIA Corporation", "AVGO": "Broadcom Inc.", "TSM": "Taiwan Semiconductor"}

DEEPSEEK = Story(
    "Nvidia sinks as DeepSeek's cheap AI model rattles chip stocks",
    NOW - timedelta(hours=3),
    link="https://news.example/deepseek-nvidia",
    guid="rss-1",
)
BROADCOM = Story(
    "Broadcom slides with AI peers",
    NOW - timedelta(hours=2),
    link="https://news.example/broadcom",
    guid="rss-2",
)
CASHTAG = Story("$TSM falls in Taipei", NOW - timedelta(hours=1), guid="rss-3")


@pytest.fixture
async def feeds() -> AsyncIterator[FakeNewsServer]:
    async with FakeNewsServer() as server:
        yield server


@pytest.fixture
def news_store(sqlite_store: SqlStore) -> NewsStore:
    return NewsStore(sqlite_store.engine)


async def _names(symbols: object) -> dict[str, str]:
    return NAMES


def _source(
    clock: ManualClock,
    store: NewsStore,
    urls: list[str],
    *,
    timeout: float = 2.0,
    max_bytes: int = 200_000,
    yahoo_base_url: str | None = None,
    yahoo: bool = False,
) -> NewsSource:
    settings = NewsSettings(
        feeds=urls,
        default_feeds=yahoo,
        yahoo_headlines=yahoo,
        timeout_seconds=timeout,
        max_bytes=max_bytes,
    )
    fetcher = FeedFetcher(
        clock=clock, yahoo_base_url=yahoo_base_url, timeout=timeout, max_bytes=max_bytes
    )
    return NewsSource(settings, clock=clock, fetcher=fetcher, store=store, names=_names)


async def test_rss_and_atom_stories_are_stored_once_and_tagged(
    feeds: FakeNewsServer, news_store: NewsStore
) -> None:
    # The same DeepSeek story on both feeds (another guid, same link): one stored story.
    rss = feeds.serve("/markets.rss", FeedRoute(rss_document([DEEPSEEK, CASHTAG])))
    atom_copy = Story(DEEPSEEK.title, DEEPSEEK.published, link=DEEPSEEK.link, guid="atom-9")
    atom = feeds.serve(
        "/tech.atom",
        FeedRoute(atom_document([atom_copy, BROADCOM]), content_type="application/atom+xml"),
    )
    source = _source(ManualClock(NOW), news_store, [rss, atom])
    try:
        report = await source.cycle(WATCHED)
    finally:
        await source.close()
    by_title = {item.title: item for item in report.new}
    assert sorted(by_title) == sorted([DEEPSEEK.title, BROADCOM.title, CASHTAG.title])
    assert by_title[DEEPSEEK.title].symbols == ("NVDA",)  # "Nvidia" is NVIDIA Corporation
    assert by_title[BROADCOM.title].symbols == ("AVGO",)
    assert by_title[CASHTAG.title].symbols == ("TSM",)  # $TSM
    assert by_title[DEEPSEEK.title].published == DEEPSEEK.published
    assert news_store.count() == 3


async def test_an_unchanged_feed_is_asked_conditionally_and_adds_nothing(
    feeds: FakeNewsServer, news_store: NewsStore
) -> None:
    url = feeds.serve(
        "/markets.rss",
        FeedRoute(rss_document([DEEPSEEK]), last_modified="Mon, 27 Jan 2025 08:00:00 GMT"),
    )
    source = _source(ManualClock(NOW), news_store, [url])
    try:
        first = await source.cycle(WATCHED)
        second = await source.cycle(WATCHED)
    finally:
        await source.close()
    assert [i.title for i in first.new] == [DEEPSEEK.title]
    assert second.new == []
    assert second.not_modified == 1
    assert feeds.conditional["/markets.rss"] == 1
    assert feeds.not_modified["/markets.rss"] == 1


async def test_a_feed_without_validators_that_repeats_itself_adds_nothing_twice(
    feeds: FakeNewsServer, news_store: NewsStore
) -> None:
    url = feeds.serve("/plain.rss", FeedRoute(rss_document([DEEPSEEK]), honour_validators=False))
    source = _source(ManualClock(NOW), news_store, [url])
    try:
        assert len((await source.cycle(WATCHED)).new) == 1
        again = await source.cycle(WATCHED)
    finally:
        await source.close()
    assert again.parsed == 1
    assert again.new == []


async def test_a_slow_feed_times_out_backs_off_and_does_not_hold_the_others(
    feeds: FakeNewsServer, news_store: NewsStore
) -> None:
    slow = feeds.serve("/slow.rss", FeedRoute(rss_document([BROADCOM]), delay=1.5))
    fast = feeds.serve("/fast.rss", FeedRoute(rss_document([DEEPSEEK])))
    clock = ManualClock(NOW)
    source = _source(clock, news_store, [slow, fast], timeout=0.3)
    try:
        report = await source.cycle(WATCHED)
        assert [i.title for i in report.new] == [DEEPSEEK.title]
        assert report.failed == 1
        await source.cycle(WATCHED)  # within the backoff: the slow feed is not asked
        assert feeds.counts["/slow.rss"] == 1
        clock.advance(timedelta(hours=2))  # past any backoff
        await source.cycle(WATCHED)
        assert feeds.counts["/slow.rss"] == 2
    finally:
        await source.close()


async def test_broken_and_hostile_feeds_are_logged_once_and_skipped(
    feeds: FakeNewsServer, news_store: NewsStore, caplog: pytest.LogCaptureFixture
) -> None:
    hostile_titles = [
        Story("<script>alert(1)</script> Nvidia to the moon", NOW - timedelta(hours=1)),
        Story("@everyone Nvidia crash!!", NOW - timedelta(hours=1), guid="h2"),
        Story("Nvidia <@123456789> alert", NOW - timedelta(hours=1), guid="h3"),
        Story("<!channel> Broadcom news", NOW - timedelta(hours=1), guid="h4"),
        DEEPSEEK,  # the one honest story of this feed still counts
    ]
    bad_date = re.sub(
        rb"<pubDate>[^<]*<", b"<pubDate>the 32nd of Smarch<", rss_document([BROADCOM])
    )
    urls = [
        feeds.serve("/hostile.rss", FeedRoute(rss_document(hostile_titles))),
        feeds.serve(
            "/page.html",
            FeedRoute(b"<html><body><h1>Hello</h1></body></html>", content_type="text/html"),
        ),
        feeds.serve("/garbage.xml", FeedRoute(b"<rss><channel><item><title>oops")),
        feeds.serve("/huge.rss", FeedRoute(b"<rss>" + b" " * 500_000, chunked=True)),
        feeds.serve("/declared-huge.rss", FeedRoute(b"x" * 300_000)),
        feeds.serve("/bad-dates.rss", FeedRoute(bad_date)),
        feeds.url("/missing.rss"),
    ]
    clock = ManualClock(NOW)
    source = _source(clock, news_store, urls)
    caplog.set_level(logging.WARNING, logger="bot.news")
    try:
        for _ in range(3):
            report = await source.cycle(WATCHED)
            clock.advance(timedelta(hours=2))  # past backoff: every feed is asked again
    finally:
        await source.close()
    stored = news_store.recent(NOW - timedelta(days=1))
    assert [i.title for i in stored] == [DEEPSEEK.title]
    assert report.new == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line per feed and problem, however many cycles it stays broken.
    assert len(warnings) == len(set(warnings))
    needles = ("markup in title", "mention in title", "HTML page", "no valid date", "declared")
    for needle in (*needles, "over 200000 bytes", "HTTP 404", "/garbage.xml"):
        assert sum(needle in w for w in warnings) == 1, (needle, warnings)
    assert sum("mention in title" in w and "3 item" in w for w in warnings) == 1


async def test_yahoo_headlines_for_100_symbols_take_two_requests_through_the_rewrite(
    fake_yahoo: FakeYahoo, news_store: NewsStore
) -> None:
    symbols = [f"S{i:03d}" for i in range(98)] + ["NVDA", "AVGO"]
    fake_yahoo.publish(
        Story(DEEPSEEK.title, DEEPSEEK.published, link=DEEPSEEK.link, symbols=("NVDA",))
    )
    fake_yahoo.publish(Story("Stock futures tumble", NOW - timedelta(hours=4), guid="mkt"))
    fake_yahoo.publish(
        Story("Broadcom slides", NOW - timedelta(hours=2), guid="y2", symbols=("AVGO",))
    )
    source = _source(
        ManualClock(NOW), news_store, [], yahoo=True, yahoo_base_url=fake_yahoo.base_url
    )
    try:
        fake_yahoo.reset_counts()
        report = await source.cycle(symbols)
        second = await source.cycle(symbols)
    finally:
        await source.close()
    # 100 symbols + 6 market symbols in two headline requests, plus the general feed.
    assert fake_yahoo.counts["news"] == 6
    assert report.requests == 3
    assert second.requests == 3
    assert second.not_modified == 3
    assert second.new == []
    by_title = {i.title: i for i in report.new}
    assert by_title[DEEPSEEK.title].symbols == ("NVDA",)
    assert by_title["Broadcom slides"].symbols == ("AVGO",)
    assert by_title["Stock futures tumble"].symbols == ()
    assert all(
        p.startswith("/feeds.finance.yahoo.com/rss/2.0/headline?s=")
        or p.startswith("/finance.yahoo.com/news/rssindex")
        for p in fake_yahoo.paths
    )


async def test_stored_news_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'news.db'}"
    first = SqlStore(url)
    first.upgrade()
    items = [
        DEEPSEEK_ITEM := _item("n:1", DEEPSEEK.title, DEEPSEEK.link),
        _item("n:2", "Broadcom slides with AI peers - Reuters", None),
    ]
    assert NewsStore(first.engine).add(items, now=NOW) == items
    first.close()
    again = SqlStore(url)
    again.upgrade()
    store = NewsStore(again.engine)
    # Same story again: by key, by link under another key, by title from another outlet.
    repeats = [
        DEEPSEEK_ITEM,
        _item("n:3", "other words", DEEPSEEK.link),
        _item("n:4", "Broadcom slides with AI peers - Bloomberg", None),
    ]
    assert store.add(repeats, now=NOW) == []
    assert {i.key for i in store.recent(NOW - timedelta(days=1))} == {"n:1", "n:2"}
    again.close()


def _item(key: str, title: str, url: str | None) -> NewsItem:
    return NewsItem(key=key, title=title, published=NOW, url=url, source="x", symbols=("NVDA",))


def test_news_feeds_setting_adds_or_replaces_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bot.news.feeds import feeds_for
    from bot.settings import SettingsError, load_settings

    for name in list(os.environ):
        if name.startswith("MARKETBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MARKETBOT_NEWS__FEEDS", "https://a.example/rss, https://b.example/atom")
    added = load_settings().news
    urls = [f.url for f in feeds_for(["NVDA"], extra=added.feeds, defaults=added.default_feeds)]
    assert "https://finance.yahoo.com/news/rssindex" in urls
    assert urls[-2:] == ["https://a.example/rss", "https://b.example/atom"]
    assert "%5EGSPC" in urls[0] or "^GSPC" in urls[0]  # market symbols ride along

    monkeypatch.setenv("MARKETBOT_NEWS_DEFAULT_FEEDS", "false")  # the flat spelling
    replaced = load_settings().news
    urls = [
        f.url for f in feeds_for(["NVDA"], extra=replaced.feeds, defaults=replaced.default_feeds)
    ]
    assert urls == [
        "https://feeds.finance.yahoo.com/rss/2.0/headline?s=NVDA&region=US&lang=en-US",
        "https://a.example/rss",
        "https://b.example/atom",
    ]
    monkeypatch.setenv("MARKETBOT_NEWS__FEEDS", "ftp://nope")
    with pytest.raises(SettingsError, match="MARKETBOT_NEWS__FEEDS"):
        load_settings()


def _log_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_yahoo_outage_is_logged_once_though_the_watch_list_changes(
    fake_yahoo: FakeYahoo, news_store: NewsStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A new watch changes the headline URL (its symbol list): the outage is the same one.
    from bot.news.source import build_news_source

    fake_yahoo.fail("/rss/2.0/headline", times=-1)
    clock = ManualClock(NOW)
    settings = NewsSettings(default_feeds=False, poll_interval_seconds=120)
    source = build_news_source(
        settings, clock=clock, store=news_store, yahoo_base_url=fake_yahoo.base_url
    )
    caplog.set_level(logging.INFO, logger="bot.news")
    watched = ["NVDA"]
    try:
        for symbol in ("AVGO", "TSM", None, None):
            assert (await source.cycle(watched)).failed == 1
            clock.advance(timedelta(seconds=120))
            if symbol is not None:
                watched.append(symbol)
        assert fake_yahoo.counts["news"] == 4  # every new URL was asked once at least
        failures = [w for w in _log_lines(caplog, logging.WARNING) if "headline" in w]
        assert len(failures) == 1, failures
        fake_yahoo.faults.clear()
        clock.advance(timedelta(hours=2))  # past any backoff
        assert (await source.cycle(watched)).failed == 0
        await source.cycle(watched)
    finally:
        await source.close()
    recovered = [i for i in _log_lines(caplog, logging.INFO) if "answering again" in i]
    assert len(recovered) == 1, recovered


async def test_the_failure_log_names_the_cycle_that_asks_the_feed_again(
    feeds: FakeNewsServer, news_store: NewsStore, caplog: pytest.LogCaptureFixture
) -> None:
    # The backoff (15-30 s after a first failure) ends between cycles: the feed is asked at
    # the first cycle after it, and that is the time the log line must give.
    from bot.news.source import build_news_source

    down = feeds.serve("/down.rss", FeedRoute(b"oops", status=503))
    clock = ManualClock(NOW)
    settings = NewsSettings(  # a 20 s poll: one or two cycles may pass before the retry
        feeds=[down], default_feeds=False, yahoo_headlines=False, poll_interval_seconds=20
    )
    source = build_news_source(settings, clock=clock, store=news_store, yahoo_base_url=None)
    caplog.set_level(logging.WARNING, logger="bot.news")
    asked_at = []
    try:
        for _ in range(4):
            before = feeds.counts["/down.rss"]
            await source.cycle([])
            if feeds.counts["/down.rss"] > before:
                asked_at.append(clock.now())
            clock.advance(timedelta(seconds=20))
    finally:
        await source.close()
    [line] = _log_lines(caplog, logging.WARNING)
    assert asked_at[0] == NOW
    assert len(asked_at) >= 2, asked_at
    retry = asked_at[1]
    assert f"next try at {retry:%H:%M:%S} UTC" in line, (line, asked_at)
    assert f"in {(retry - NOW).total_seconds():.0f} s" in line, line
