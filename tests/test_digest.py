"""The daily premarket digest: content, trading days, local time across DST, once per day.

Time is the injected ManualClock throughout: the two-year calendars step it, nothing sleeps.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.commands import CommandContext, CommandRouter
from alerts.digest import (
    DIGEST_WINDOW,
    DigestSchedule,
    DigestSettingError,
    compose_digest,
    parse_zone,
)
from alerts.engine import Engine
from alerts.models import AlertKind, AlertMessage, MarketSession, NewsItem, Quote
from alerts.ports import DeliveryError, ManualClock, MessageRef
from bot.digest_chart import render_digest_chart
from bot.pipeline import Pipeline
from bot.pipeline.digest import early_close_note, is_trading_day
from bot.store import SqlStore

ET = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = date(2025, 1, 27)
CHANNEL = "slack:C1"
CTX = CommandContext(channel=CHANNEL, user="U1", platform="slack")
CLOSED_WEEKDAYS_2025 = {
    date(2025, 1, 1),
    date(2025, 1, 9),  # national day of mourning (President Carter)
    date(2025, 1, 20),
    date(2025, 2, 17),
    date(2025, 4, 18),  # Good Friday
    date(2025, 5, 26),
    date(2025, 6, 19),
    date(2025, 7, 4),
    date(2025, 9, 1),
    date(2025, 11, 27),
    date(2025, 12, 25),
}


def _quote(symbol: str, price: float, previous_close: float) -> Quote:
    return Quote(
        symbol,
        price,
        datetime(2025, 1, 27, 12, 55, tzinfo=UTC),
        MarketSession.PRE,
        previous_close=previous_close,
    )


def _news(title: str, when: datetime, *symbols: str) -> NewsItem:
    return NewsItem(key=title, title=title, published=when, symbols=symbols)


class Recorder:
    """A platform that records what it accepted; it can fail a number of sends first."""

    name = "recorder"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, AlertMessage]] = []
        self.images: list[tuple[str, bytes, str]] = []

    def handles(self, channel: str) -> bool:
        return True

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        if self.failures:
            self.failures -= 1
            raise DeliveryError("HTTP 502", retryable=True)
        self.sent.append((idempotency_key, message))
        return MessageRef(message.channel, str(len(self.sent)))

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> object:
        self.images.append((channel, image, filename))
        return None


# --- content --------------------------------------------------------------------------------


def test_digest_lists_biggest_movers_first_and_names_missing_quotes() -> None:
    latest = {
        "MSFT": _quote("MSFT", 414.3, 444.06),
        "NVDA": _quote("NVDA", 124.07, 142.62),
        "AAPL": _quote("AAPL", 225.0, 222.78),
        "NQ=F": _quote("NQ=F", 20950.0, 21891.25),
        "ES=F": _quote("ES=F", 5980.0, 6133.5),
        "^VIX": _quote("^VIX", 19.5, 14.85),
    }
    message = compose_digest(
        CHANNEL,
        ["MSFT", "NVDA", "AAPL", "ASML.AS"],
        latest,
        day=MONDAY,
        now=datetime(2025, 1, 27, 13, 0, tzinfo=UTC),
        theme="DeepSeek",
    )
    assert [a.symbol for a in message.alerts] == ["NVDA", "MSFT", "AAPL"]
    assert all(a.kind is AlertKind.DIGEST for a in message.alerts)
    assert message.title == "Premarket digest Mon 2025-01-27 — DeepSeek: biggest move NVDA -13.0%"
    assert message.footer == "No quote yet: ASML.AS"
    # Index futures then the VIX, in that order; YM=F has no quote and is left out.
    assert [c.symbol for c in message.context] == ["ES=F", "NQ=F", "^VIX"]


async def test_headlines_explain_the_moves_with_their_theme_and_no_filler(
    sqlite_store: SqlStore,
) -> None:
    """Headlines come from the attribution ranking (alerts.attribution), as for a broad move."""
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))
    pipeline = Pipeline(sqlite_store, Engine(), [], clock)
    for symbol in ("NVDA", "AVGO"):
        sqlite_store.add_watch(CHANNEL, symbol, "drop 10%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote("NVDA", 124.07, 142.62), _quote("AVGO", 209.6, 240.66)])
    pipeline.ingest_news(
        [
            _news("Last week: DeepSeek paper", datetime(2025, 1, 22, 15, 0, tzinfo=UTC), "NVDA"),
            _news(
                "Nvidia sinks as DeepSeek rattles AI",
                datetime(2025, 1, 26, 23, 0, tzinfo=UTC),
                "NVDA",
            ),
            _news(
                "Broadcom falls on DeepSeek fears", datetime(2025, 1, 27, 9, 0, tzinfo=UTC), "AVGO"
            ),
            _news("5 stocks to watch today", datetime(2025, 1, 27, 12, 0, tzinfo=UTC), "NVDA"),
            _news("Tesla recall widens", datetime(2025, 1, 27, 12, 30, tzinfo=UTC), "TSLA"),
        ]
    )
    message = pipeline.digest(CHANNEL)
    titles = [n.title for n in message.headlines]
    assert set(titles[:2]) == {
        "Nvidia sinks as DeepSeek rattles AI",
        "Broadcom falls on DeepSeek fears",
    }
    assert "5 stocks to watch today" not in titles  # filler
    assert "Tesla recall widens" not in titles  # about another name
    assert "Last week: DeepSeek paper" not in titles  # before the previous close
    assert message.title.startswith("Premarket digest Mon 2025-01-27 — DeepSeek: biggest move")


async def test_a_basket_only_channel_gets_its_members_and_a_basket_summary(
    sqlite_store: SqlStore,
) -> None:
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))
    pipeline = Pipeline(sqlite_store, Engine(), [], clock)
    sqlite_store.save_basket(CHANNEL, "chips", ("NVDA", "AMD", "INTC"), now=clock.now())
    sqlite_store.add_watch(CHANNEL, "basket:chips", "drop 5%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes(
        [
            _quote("NVDA", 124.07, 142.62),
            _quote("AMD", 116.0, 123.82),
            _quote("NQ=F", 20950.0, 21891.25),
            _quote("^VIX", 19.5, 14.85),
        ]
    )
    pipeline.ingest_news(
        [
            _news(
                "Nvidia falls as DeepSeek rattles chipmakers",
                datetime(2025, 1, 27, 8, 45, tzinfo=UTC),
                "NVDA",
            )
        ]
    )
    message = pipeline.digest(CHANNEL)
    assert [a.symbol for a in message.alerts] == ["NVDA", "AMD"]
    average = ((124.07 / 142.62 - 1) + (116.0 / 123.82 - 1)) / 2 * 100
    assert message.footer == (
        f"basket:chips {average:+.1f}% avg, 2 of 2 down (1 without a quote) · No quote yet: INTC"
    )
    assert [c.symbol for c in message.context] == ["NQ=F", "^VIX"]
    assert [n.title for n in message.headlines] == ["Nvidia falls as DeepSeek rattles chipmakers"]
    assert "^VIX" in pipeline.symbols()  # the digest's indices are fetched


async def test_on_demand_digest_shows_what_the_scheduled_one_posts(sqlite_store: SqlStore) -> None:
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))
    platform = Recorder()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, charts=True)
    router = CommandRouter(sqlite_store, clock, market=pipeline)
    router.handle("/watch basket:ai drop 5%", CTX)
    pipeline.sync_watches()
    pipeline.ingest_quotes(
        [
            _quote("NVDA", 124.07, 142.62),
            _quote("ES=F", 5980.0, 6133.5),
            _quote("^VIX", 19.5, 14.85),
        ]
    )
    pipeline.ingest_news(
        [_news("Nvidia sinks on DeepSeek R1", datetime(2025, 1, 27, 8, 45, tzinfo=UTC), "NVDA")]
    )
    reply = router.handle("/digest", CTX).text
    # The digest is queued behind the channel's alert, which waits out its group window.
    clock.advance(timedelta(seconds=5))
    assert await pipeline.send_digest(CHANNEL, MONDAY)
    [(_, posted)] = [(k, m) for k, m in platform.sent if m.title.startswith("Premarket digest")]
    for line in (
        "*Premarket digest Mon 2025-01-27: biggest move NVDA -13.0%*",
        "NVDA: 124.07 (-13.01%, pre)",
        "Market: S&P 500 futures -2.5% 5,980.00 · VIX +31.3% 19.50",
        "• Nvidia sinks on DeepSeek R1",
        "basket:ai -13.0% avg, 1 of 1 down (7 without a quote)",
    ):
        assert line in reply
    assert posted.title in reply
    assert [a.symbol for a in posted.alerts] == ["NVDA"]
    assert posted.footer is not None
    assert posted.footer in reply
    # The post carries the chart of the moves, rendered off the event loop.
    [(channel, image, filename)] = platform.images
    assert (channel, filename) == (CHANNEL, "digest.png")
    assert image.startswith(b"\x89PNG")


def test_the_chart_draws_every_name_and_nothing_without_moves() -> None:
    moves = [(f"S{i:02d}", (i - 25) / 3) for i in range(50)]
    image = render_digest_chart(moves, title="Premarket digest")
    assert image is not None
    assert image.startswith(b"\x89PNG")
    assert render_digest_chart([], title="empty") is None


# --- commands -------------------------------------------------------------------------------


def test_digest_on_uses_the_configured_default_time_and_a_zone(sqlite_store: SqlStore) -> None:
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))
    router = CommandRouter(sqlite_store, clock, digest_time="07:15", timezone="America/New_York")
    reply = router.handle("/digest on", CTX)
    assert (
        reply.text == "Daily premarket digest on at 07:15 America/New_York, NYSE trading days only."
    )
    assert sqlite_store.channel_settings(CHANNEL).digest == time(7, 15)
    assert router.handle("/digest on 7:30 europe/berlin", CTX).ok
    settings = sqlite_store.channel_settings(CHANNEL)
    assert (settings.digest, settings.digest_zone) == (time(7, 30), "Europe/Berlin")
    schedule = DigestSchedule.from_settings(settings, "America/New_York")
    assert schedule == DigestSchedule(time(7, 30), "Europe/Berlin")
    bad = router.handle("/digest on 08:00 Mars/Olympus", CTX)
    assert not bad.ok
    assert "Unknown time zone 'Mars/Olympus'" in bad.text
    assert not router.handle("/digest on 8", CTX).ok
    assert router.handle("/digest off", CTX).ok
    assert DigestSchedule.from_settings(sqlite_store.channel_settings(CHANNEL), "UTC") is None


@pytest.mark.parametrize(
    ("text", "zone"), [("ET", "America/New_York"), ("cet", "Europe/Berlin"), ("UTC", "UTC")]
)
def test_zone_aliases(text: str, zone: str) -> None:
    assert parse_zone(text) == zone


def test_a_bad_zone_is_refused() -> None:
    with pytest.raises(DigestSettingError):
        parse_zone("Nowhere")


# --- the calendar ---------------------------------------------------------------------------


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def test_two_years_of_checks_send_once_per_trading_day_on_time() -> None:
    """Every quarter hour of 2025 and 2026, for a New York and a Berlin schedule."""
    schedules = [
        DigestSchedule(time(8, 0), "America/New_York"),
        DigestSchedule(time(14, 0), "Europe/Berlin"),
    ]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2027, 1, 1, tzinfo=UTC)
    for schedule in schedules:
        zone = ZoneInfo(schedule.zone)
        sent: dict[date, datetime] = {}
        last: date | None = None
        now = start
        while now < end:
            day = schedule.due_day(now, is_trading_day=is_trading_day, sent_day=last)
            if day is not None:
                assert day not in sent, f"second digest on {day}"
                sent[day] = now
                last = day
            now += timedelta(minutes=15)
        weekdays = [d for d in _days(date(2025, 1, 1), date(2026, 12, 31)) if d.weekday() < 5]
        trading = [d for d in weekdays if is_trading_day(d)]
        assert sorted(sent) == trading
        assert len(trading) in range(495, 505)  # about 250 NYSE sessions a year
        for closed in (date(2025, 1, 9), date(2025, 4, 18), date(2025, 1, 1), date(2025, 12, 25)):
            assert closed not in sent
        assert all(d.weekday() < 5 for d in sent)
        assert {d for d in weekdays if d.year == 2025 and d not in sent} >= CLOSED_WEEKDAYS_2025
        # At the configured local time every day, summer and winter alike.
        assert {when.astimezone(zone).time() for when in sent.values()} == {schedule.at}
    # New York's 08:00 is 13:00 UTC in winter and 12:00 UTC in summer.
    ny = schedules[0]
    assert ny.scheduled(date(2025, 3, 7)).astimezone(UTC).hour == 13
    assert ny.scheduled(date(2025, 3, 10)).astimezone(UTC).hour == 12  # after 2025-03-09
    assert ny.scheduled(date(2025, 10, 31)).astimezone(UTC).hour == 12
    assert ny.scheduled(date(2025, 11, 3)).astimezone(UTC).hour == 13  # after 2025-11-02


def test_early_closes_are_trading_days_with_a_note() -> None:
    assert is_trading_day(date(2025, 7, 3))
    assert early_close_note(date(2025, 7, 3)) == "Early close 13:00 ET"
    assert early_close_note(date(2025, 11, 28)) == "Early close 13:00 ET"
    assert early_close_note(MONDAY) is None
    assert not is_trading_day(date(2025, 1, 9))
    assert not is_trading_day(date(2025, 4, 18))


# --- through the pipeline: sends, restarts, retries -----------------------------------------


def _pipeline(store: SqlStore, clock: ManualClock, platform: Recorder) -> Pipeline:
    pipeline = Pipeline(store, Engine(), [platform], clock, charts=False)
    pipeline.load()
    return pipeline


def _at(day: date, hh: int, mm: int, zone: ZoneInfo = ET) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=zone).astimezone(UTC)


async def test_two_years_through_the_pipeline_one_post_per_trading_day(
    sqlite_store: SqlStore,
) -> None:
    """The real job (store, marker, platform) checked around the digest time of every day."""
    clock = ManualClock(_at(date(2025, 1, 1), 0, 0))
    platform = Recorder()
    pipeline = _pipeline(sqlite_store, clock, platform)
    router = CommandRouter(sqlite_store, clock, market=pipeline, digest_time="08:00")
    router.handle("/watch NVDA", CTX)
    assert router.handle("/digest on", CTX).ok
    posts: list[datetime] = []
    for day in _days(date(2025, 1, 1), date(2026, 12, 31)):
        for hh, mm in ((8, 0), (9, 59)):  # on time, then once more inside the window
            when = _at(day, hh, mm)
            if when > clock.now():
                clock.set(when)
            before = len(platform.sent)
            await pipeline.send_due_digests()
            posts += [clock.now()] * (len(platform.sent) - before)
    days = [p.astimezone(ET).date() for p in posts]
    assert len(days) == len(set(days))
    assert days == [d for d in _days(date(2025, 1, 1), date(2026, 12, 31)) if is_trading_day(d)]
    assert {p.astimezone(ET).time() for p in posts} == {time(8, 0)}
    assert date(2025, 1, 9) not in days
    assert date(2025, 4, 18) not in days
    keys = [key for key, _ in platform.sent]
    assert len(set(keys)) == len(keys)  # one idempotency key per channel and day


async def test_a_restart_after_the_post_sends_nothing_and_one_before_it_sends_late(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    store = SqlStore(url)
    store.upgrade()
    clock = ManualClock(_at(MONDAY, 8, 0))
    store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=time(8)), clock.now())
    first = Recorder()
    assert await _pipeline(store, clock, first).send_due_digests() == 1
    store.close()

    clock.advance(timedelta(minutes=5))  # the bot restarts at 08:05 on the same database
    store = SqlStore(url)
    store.upgrade()
    second = Recorder()
    assert await _pipeline(store, clock, second).send_due_digests() == 0
    assert second.sent == []

    # Down over Tuesday's 08:00, back at 08:40: Tuesday's digest goes out once, late.
    clock.set(_at(date(2025, 1, 28), 8, 40))
    third = _pipeline(store, clock, second)
    assert await third.send_due_digests() == 1
    assert await third.send_due_digests() == 0
    store.close()


async def test_a_failed_send_is_retried_until_it_goes_out_then_never_again(
    sqlite_store: SqlStore,
) -> None:
    clock = ManualClock(_at(MONDAY, 8, 0))
    platform = Recorder(failures=2)
    sqlite_store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    sqlite_store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=time(8)), clock.now())
    pipeline = _pipeline(sqlite_store, clock, platform)
    assert await pipeline.send_due_digests() == 0  # HTTP 502
    clock.advance(timedelta(seconds=20))
    assert await pipeline.send_due_digests() == 0  # HTTP 502 again
    clock.advance(timedelta(seconds=20))
    assert await pipeline.send_due_digests() == 1
    clock.advance(timedelta(seconds=20))
    assert await pipeline.send_due_digests() == 0
    [(key, message)] = platform.sent
    assert len(key) <= 25  # fits Discord's nonce
    assert message.title.startswith("Premarket digest Mon 2025-01-27")
    assert pipeline.stats.delivery_failures == 2


async def test_a_digest_that_keeps_failing_stops_at_the_end_of_its_window(
    sqlite_store: SqlStore,
) -> None:
    clock = ManualClock(_at(MONDAY, 8, 0))
    platform = Recorder(failures=10_000)
    sqlite_store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=time(8)), clock.now())
    pipeline = _pipeline(sqlite_store, clock, platform)
    tried_at: list[datetime] = []
    while clock.now() < _at(MONDAY, 8, 0) + DIGEST_WINDOW + timedelta(minutes=30):
        before = platform.failures
        await pipeline.send_due_digests()
        tried_at += [clock.now()] * (before - platform.failures)
        clock.advance(timedelta(minutes=1))
    # Retried with the outbox's backoff (at most 5 minutes apart) all through the window,
    # never after it; the row ends expired, and the day is not queued again.
    assert len(tried_at) >= DIGEST_WINDOW // timedelta(minutes=5)
    assert max(tried_at) < _at(MONDAY, 8, 0) + DIGEST_WINDOW
    assert max(b - a for a, b in itertools.pairwise(tried_at)) <= timedelta(minutes=6)
    assert platform.sent == []
    assert sqlite_store.outbox_counts() == {"expired": 1}


async def test_a_zone_other_than_the_bots_follows_its_own_dst(sqlite_store: SqlStore) -> None:
    """Europe changes clocks on 2025-03-30, three weeks after New York: 14:00 Berlin is
    13:00 UTC before, 12:00 UTC after."""
    clock = ManualClock(_at(date(2025, 3, 28), 0, 0))
    platform = Recorder()
    pipeline = _pipeline(sqlite_store, clock, platform)
    CommandRouter(sqlite_store, clock).handle("/digest on 14:00 Europe/Berlin", CTX)
    posts = []
    for day in (date(2025, 3, 28), date(2025, 3, 31)):
        for minute in range(0, 24 * 60, 10):
            clock.set(max(clock.now(), _at(day, 0, 0) + timedelta(minutes=minute)))
            if await pipeline.send_due_digests():
                posts.append(clock.now())
    assert posts == [
        datetime(2025, 3, 28, 13, 0, tzinfo=UTC),
        datetime(2025, 3, 31, 12, 0, tzinfo=UTC),
    ]


async def test_a_hand_edited_zone_falls_back_to_the_bots_zone_instead_of_failing_every_check(
    sqlite_store: SqlStore,
) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from bot.store.schema import ChannelRow

    clock = ManualClock(_at(MONDAY, 8, 0))
    sqlite_store.add_watch(CHANNEL, "NVDA", "drop 10%", now=clock.now())
    sqlite_store.update_channel_settings(CHANNEL, lambda s: s, clock.now())
    with Session(sqlite_store.engine) as session, session.begin():
        stored = {"digest": "08:00", "digest_zone": "Mars/Olympus"}
        session.execute(update(ChannelRow).where(ChannelRow.id == CHANNEL).values(settings=stored))
    platform = Recorder()
    # Before settings were typed, the zone reached ZoneInfo and the check raised every minute.
    assert await _pipeline(sqlite_store, clock, platform).send_due_digests() == 1
    assert platform.sent[0][1].title.startswith("Premarket digest Mon 2025-01-27")


@pytest.mark.postgres
def test_two_processes_that_both_lead_for_a_moment_queue_the_days_digest_once(
    postgres_store: SqlStore,
) -> None:
    """A deposed leader that has not noticed yet and the new one both find the digest due.
    The marker and the row commit together; the second reads the marker only after the first
    committed (the channel's row is read FOR UPDATE), so it finds the day taken."""
    import threading

    from sqlalchemy import text

    from bot.store.schema import ChannelRow

    now = _at(MONDAY, 8, 0)
    postgres_store.add_watch(CHANNEL, "NVDA", "drop 10%", now=now)
    message = AlertMessage(CHANNEL, "Premarket digest", (), now)
    other = SqlStore(postgres_store.url)  # the other process's store
    try:
        with postgres_store.engine.connect() as first:
            # The first process is inside its queue_digest: the row locked, not committed.
            first.execute(
                text(f"SELECT 1 FROM {ChannelRow.__tablename__} WHERE id = :c FOR UPDATE"),
                {"c": CHANNEL},
            )
            queued: list[bool] = []
            second = threading.Thread(
                target=lambda: queued.append(
                    other.queue_digest(message, day=MONDAY, now=now, expires_at=now)
                )
            )
            second.start()
            second.join(timeout=1.0)
            assert second.is_alive(), "the second queued without waiting for the first"
            # The first commits its marker (and would commit its row with it).
            marked = replace(postgres_store.channel_settings(CHANNEL), digest_sent=MONDAY)
            first.execute(
                text(f"UPDATE {ChannelRow.__tablename__} SET settings = :s WHERE id = :c"),
                {"s": json.dumps(marked.to_stored()), "c": CHANNEL},
            )
            first.commit()
            second.join(timeout=10)
        assert queued == [False]
        assert postgres_store.outbox_counts() == {}
    finally:
        other.close()
