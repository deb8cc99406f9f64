"""The daily premarket digest: composition, once per trading day, scheduled across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime

from alerts.digest import compose_digest
from alerts.engine import Engine
from alerts.models import AlertKind, AlertMessage, MarketSession, Quote
from alerts.ports import DeliveryError, ManualClock, MessageRef
from bot.pipeline import Pipeline
from bot.runner import digest_job, sync_digest_jobs
from bot.scheduler import JobScheduler, cron_trigger, next_fire_time
from bot.store import SqlStore

MONDAY = date(2025, 1, 27)


def _quote(symbol: str, price: float, previous_close: float) -> Quote:
    return Quote(
        symbol,
        price,
        datetime(2025, 1, 27, 12, 55, tzinfo=UTC),
        MarketSession.PRE,
        previous_close=previous_close,
    )


def test_digest_lists_biggest_movers_first_and_names_missing_quotes() -> None:
    latest = {
        "MSFT": _quote("MSFT", 414.3, 444.06),
        "NVDA": _quote("NVDA", 124.07, 142.62),
        "AAPL": _quote("AAPL", 225.0, 222.78),
    }
    message = compose_digest(
        "slack:C1",
        ["MSFT", "NVDA", "AAPL", "ASML.AS"],
        latest,
        day=MONDAY,
        now=datetime(2025, 1, 27, 13, 0, tzinfo=UTC),
    )
    assert [a.symbol for a in message.alerts] == ["NVDA", "MSFT", "AAPL"]
    assert all(a.kind is AlertKind.DIGEST for a in message.alerts)
    assert "NVDA -13.0%" in message.title
    assert message.footer == "No quote yet: ASML.AS"


class Recorder:
    name = "console"

    def __init__(self, fail_first: bool = False) -> None:
        self.fail_first = fail_first
        self.sent: list[tuple[str, AlertMessage]] = []

    def handles(self, channel: str) -> bool:
        return True

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        if self.fail_first:
            self.fail_first = False
            raise DeliveryError("HTTP 502", retryable=True)
        self.sent.append((idempotency_key, message))
        return MessageRef(message.channel, str(len(self.sent)))

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        return ref


async def test_digest_job_sends_once_per_trading_day_and_retries_a_failure(
    sqlite_store: SqlStore,
) -> None:
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))  # 08:00 ET, Monday
    platform = Recorder(fail_first=True)
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    sqlite_store.add_watch("console:default", "basket:ai", "drop 5%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote("NVDA", 124.07, 142.62)])

    job = digest_job(pipeline, "console:default", "America/New_York")
    await job()  # the platform fails: nothing recorded
    assert platform.sent == []
    await job()
    await job()  # already sent today
    [(key, message)] = platform.sent
    assert len(key) <= 25
    assert [a.symbol for a in message.alerts] == ["NVDA"]

    clock.set(datetime(2025, 2, 1, 13, 0, tzinfo=UTC))
    await job()  # Saturday 2025-02-01: no premarket, no digest
    assert len(platform.sent) == 1


def test_closed_days_are_skipped_by_the_calendar() -> None:
    from bot.market.sessions import regular_session_bounds

    assert regular_session_bounds("SPY", date(2025, 1, 9)) is None  # national day of mourning
    assert regular_session_bounds("SPY", date(2025, 4, 18)) is None  # Good Friday
    assert regular_session_bounds("SPY", MONDAY) is not None


def test_the_daily_trigger_keeps_local_time_across_dst() -> None:
    trigger = cron_trigger(8, 0, timezone="America/New_York")
    thursday = next_fire_time(trigger, datetime(2025, 3, 6, 0, 0, tzinfo=UTC))
    after_friday = next_fire_time(trigger, datetime(2025, 3, 7, 14, 0, tzinfo=UTC))
    assert thursday is not None
    assert after_friday is not None
    assert thursday.astimezone(UTC) == datetime(2025, 3, 6, 13, 0, tzinfo=UTC)  # 08:00 EST
    # The weekend is skipped, and DST began on Sunday 2025-03-09: 08:00 EDT is 12:00 UTC.
    assert after_friday.astimezone(UTC) == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


async def test_digest_jobs_follow_channel_settings_with_stable_ids(
    sqlite_store: SqlStore,
) -> None:
    clock = ManualClock(datetime(2025, 1, 27, 13, 0, tzinfo=UTC))
    pipeline = Pipeline(sqlite_store, Engine(), [], clock, context_symbols=())
    scheduler = JobScheduler(timezone="America/New_York")
    scheduler.start()
    sqlite_store.update_channel_settings("slack:C1", {"digest": "08:00"}, clock.now())
    sqlite_store.update_channel_settings("slack:C2", {"digest": "07:30"}, clock.now())
    sync_digest_jobs(scheduler, pipeline, "America/New_York")
    assert scheduler.job_ids() == ["digest:slack:C1", "digest:slack:C2"]
    sqlite_store.update_channel_settings("slack:C2", {"digest": None}, clock.now())
    sync_digest_jobs(scheduler, pipeline, "America/New_York")
    assert scheduler.job_ids() == ["digest:slack:C1"]
    sync_digest_jobs(scheduler, pipeline, "America/New_York")  # a restart rebuilds the same
    assert scheduler.job_ids() == ["digest:slack:C1"]
    scheduler.shutdown()
