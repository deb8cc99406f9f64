"""The pipeline across restarts and platform failures: nothing lost, nothing sent twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from alerts.engine import Engine
from alerts.grouping import GroupingConfig
from alerts.models import AlertMessage, MarketSession, Quote
from alerts.ports import DeliveryError, ManualClock, MessageRef
from bot.pipeline import Pipeline
from bot.store import SqlStore

PREV_CLOSE = 142.62


class RecordingPlatform:
    """A ChatPlatform at our own port: records what it accepted, can be told to fail."""

    name = "console"

    def __init__(self, failures: list[DeliveryError | None] | None = None) -> None:
        self.failures = list(failures or [])
        self.posts: list[tuple[str, AlertMessage]] = []
        self.edits: list[tuple[str, AlertMessage]] = []

    def handles(self, channel: str) -> bool:
        return channel.startswith("console:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        self.posts.append((idempotency_key, message))
        return MessageRef(message.channel, f"m{len(self.posts)}")

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        self.edits.append((ref.message_id, message))
        return ref


def _quote(clock: ManualClock, symbol: str, change_pct: float) -> Quote:
    return Quote(
        symbol,
        round(PREV_CLOSE * (1 + change_pct / 100), 2),
        clock.now(),
        MarketSession.PRE,
        previous_close=PREV_CLOSE,
    )


def _pipeline(url: str, clock: ManualClock, platform: RecordingPlatform) -> Pipeline:
    store = SqlStore(url)
    store.upgrade()
    pipeline = Pipeline(
        store,
        Engine(),
        [platform],
        clock,
        grouping=GroupingConfig(group_wait=timedelta(seconds=2)),
        context_symbols=(),
    )
    pipeline.load()
    return pipeline


async def test_restart_never_resends_and_keeps_the_firing_state(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    platform = RecordingPlatform()
    first = _pipeline(url, clock, platform)
    first.store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    first.sync_watches()
    assert first.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    assert await first.deliver_due() == 1
    first.store.close()

    clock.advance(timedelta(minutes=1))
    second = _pipeline(url, clock, platform)
    # Still below -10% after the restart: the same crossing, so no new alert.
    assert second.ingest_quotes([_quote(clock, "NVDA", -12)]) == []
    clock.advance(timedelta(seconds=5))
    assert await second.deliver_due() == 0
    assert len(platform.posts) == 1
    second.store.close()


async def test_a_crash_before_delivery_delivers_after_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    platform = RecordingPlatform()
    first = _pipeline(url, clock, platform)
    first.store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    first.sync_watches()
    first.ingest_quotes([_quote(clock, "NVDA", -11)])
    first.store.close()  # the process dies before the delivery job runs

    second = _pipeline(url, clock, platform)
    clock.advance(timedelta(seconds=2))
    assert await second.deliver_due() == 1
    assert await second.deliver_due() == 0
    assert [m.alerts[0].symbol for _, m in platform.posts] == ["NVDA"]
    second.store.close()


async def test_platform_errors_retry_with_the_same_idempotency_key(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = RecordingPlatform(
        [
            DeliveryError("HTTP 500", retryable=True),
            DeliveryError("429 rate limited", retryable=True, retry_after=30),
        ]
    )
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    assert await pipeline.deliver_due() == 0  # 500
    clock.advance(timedelta(seconds=10))
    assert await pipeline.deliver_due() == 0  # 429, asks for 30 s
    clock.advance(timedelta(seconds=29))
    assert await pipeline.deliver_due() == 0  # still waiting out Retry-After
    clock.advance(timedelta(seconds=2))
    assert await pipeline.deliver_due() == 1
    assert len(platform.posts) == 1
    assert pipeline.stats.delivery_failures == 2
    assert sqlite_store.outbox_counts() == {"sent": 1}


async def test_a_refused_message_is_kept_dead_and_the_bot_goes_on(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = RecordingPlatform([DeliveryError("channel_not_found", retryable=False)])
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    for symbol in ("NVDA", "AMD"):
        sqlite_store.add_watch("console:default", symbol, "drop 10%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    clock.advance(timedelta(minutes=5))
    pipeline.ingest_quotes([_quote(clock, "AMD", -11)])
    clock.advance(timedelta(seconds=2))
    assert await pipeline.deliver_due() == 1
    assert sqlite_store.outbox_counts() == {"dead": 1, "sent": 1}


async def test_names_crossing_within_the_group_interval_edit_one_message(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = RecordingPlatform()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    for symbol in ("NVDA", "AVGO", "AMD"):
        sqlite_store.add_watch("console:default", symbol, "drop 10%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11), _quote(clock, "AVGO", -10.5)])
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    clock.advance(timedelta(seconds=30))
    pipeline.ingest_quotes([_quote(clock, "AMD", -10.2)])
    await pipeline.deliver_due()
    assert len(platform.posts) == 1
    [(message_id, edited)] = platform.edits
    assert message_id == "m1"
    assert {a.symbol for a in edited.alerts} == {"NVDA", "AVGO", "AMD"}


async def test_muted_alerts_are_summarised_when_the_mute_ends(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    from alerts.models import Mute

    platform = RecordingPlatform([DeliveryError("HTTP 503", retryable=True)])
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    sqlite_store.add_mute(
        Mute(
            "console:default",
            "NVDA",
            until=clock.now() + timedelta(hours=1),
            created_at=clock.now(),
        )
    )
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    assert await pipeline.deliver_due() == 0
    assert await pipeline.end_expired_mutes() == 0  # not over yet
    clock.advance(timedelta(hours=1))
    assert await pipeline.end_expired_mutes() == 0  # the platform failed: the outbox retries
    assert sqlite_store.all_mutes() == []  # queued with the mute's end, in one transaction
    clock.advance(timedelta(seconds=2))  # the retry's backoff
    assert await pipeline.end_expired_mutes() == 1
    [(_, summary)] = platform.posts
    assert "NVDA" in {a.symbol for a in summary.alerts}
    clock.advance(timedelta(minutes=10))
    assert await pipeline.end_expired_mutes() == 0
    assert len(platform.posts) == 1


async def test_a_channel_that_asked_hears_the_recovery(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = RecordingPlatform()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=())
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    sqlite_store.update_channel_settings(
        "console:default", lambda s: replace(s, resolved=True), clock.now()
    )
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    clock.advance(timedelta(minutes=5))
    pipeline.ingest_quotes([_quote(clock, "NVDA", -9)])  # inside the hysteresis band: no news
    clock.advance(timedelta(minutes=5))
    pipeline.ingest_quotes([_quote(clock, "NVDA", -7)])  # past -8%: recovered
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    kinds = [a.kind.value for _, message in platform.posts for a in message.alerts]
    assert kinds == ["firing", "resolved"]


class ChartingPlatform(RecordingPlatform):
    """A platform that also takes images, as Slack's and Discord's adapters do."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, bytes, str]] = []

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> None:
        self.images.append((channel, image, title))


async def test_a_new_alert_message_gets_one_chart_of_the_move(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = ChartingPlatform()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=(), charts=True)
    for symbol in ("NVDA", "AVGO"):
        sqlite_store.add_watch("console:default", symbol, "drop 10%", now=clock.now())
    pipeline.sync_watches()
    for change in (-6, -8, -11):
        clock.advance(timedelta(minutes=1))
        pipeline.ingest_quotes([_quote(clock, "NVDA", change)])
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    pipeline.ingest_quotes([_quote(clock, "AVGO", -12)])  # joins the group: an edit, no chart
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    assert len(platform.posts) == 1
    assert len(platform.edits) == 1
    [(channel, image, title)] = platform.images
    assert channel == "console:default"
    assert image.startswith(b"\x89PNG")
    assert "NVDA" in title
    assert pipeline.stats.charts_sent == 1


async def test_charts_are_off_unless_asked_and_never_for_a_single_point(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    platform = ChartingPlatform()
    pipeline = Pipeline(sqlite_store, Engine(), [platform], clock, context_symbols=(), charts=True)
    sqlite_store.add_watch("console:default", "NVDA", "drop 10%", now=clock.now())
    pipeline.sync_watches()
    pipeline.ingest_quotes([_quote(clock, "NVDA", -11)])
    clock.advance(timedelta(seconds=2))
    await pipeline.deliver_due()
    assert len(platform.posts) == 1
    assert platform.images == []  # one point is no line
