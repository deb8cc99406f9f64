"""`marketbot run` end to end on the embedded default, against the loopback fake Yahoo.

Each test reads as a console transcript (bot.console.ConsoleSession): it types commands,
moves the injected clock, and asserts what was replied and posted; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.models import AlertMessage, MarketSession, Quote
from alerts.ports import ManualClock, MessageRef
from bot.console import CONSOLE_CHANNEL, ConsolePlatform, ConsoleSession, Line
from bot.fakes.yahoo_server import FakeYahoo
from bot.pipeline import Pipeline
from bot.runner import build_engine, console_runtime
from bot.settings import Settings
from bot.store import SqlStore
from tests.conftest import premarket_quote, run_settings

# Monday 2025-01-27 04:05 ET: premarket.
PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)


class WatchedConsole(ConsolePlatform):
    """The real console platform, which also signals each message it shows (tests that run
    the bot without a transcript: health, logs)."""

    def __init__(self) -> None:
        import io

        from rich.console import Console

        from bot.render.console_text import render_console

        super().__init__(render_console, Console(file=io.StringIO(), width=100))
        self.replies: list[str] = []
        self.arrived = asyncio.Event()

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        ref = await super().send(message, idempotency_key=idempotency_key)
        self.arrived.set()
        return ref

    def reply(self, text: str, *, ok: bool = True) -> None:
        self.replies.append(text)


def _settings(tmp_path: Path, fake: FakeYahoo) -> Settings:
    base = run_settings(tmp_path, fake)
    return base.model_copy(
        update={"alerts": base.alerts.model_copy(update={"context_symbols": ["NQ=F"]})}
    )


async def test_watch_typed_at_the_console_fires_on_a_premarket_drop(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    fake_yahoo.set_quote(
        "NQ=F", price=20950.0, previous_close=21891.25, at=PREMARKET, exchange="CME"
    )
    runtime, bot = console_runtime(_settings(tmp_path, fake_yahoo), clock)
    async with bot.running(runtime):
        assert bot.transcript.replies()[0].startswith("marketbot is running.")
        reply = await bot.type("/watch nvda")

    assert "Watching *NVDA*" in reply
    [message] = bot.transcript.messages()
    [alert] = message.alerts
    assert alert.symbol == "NVDA"
    assert alert.change_pct == pytest.approx(-13.0, abs=0.05)
    assert alert.session is not None
    assert alert.session.value == "pre"
    assert [line.symbol for line in message.context] == ["NQ=F"]
    assert [line.kind for line in bot.transcript.lines] == ["reply", "typed", "reply", "posted"]
    chat = str(bot.transcript)  # reads as the console showed it: typed, replied, posted
    assert "\n> /watch nvda\n" in chat
    _, post = chat.split("\n[#1 09:05:00]\n")
    assert "NVDA" in post

    # Restart on the same database, same crossing, several polls later: nothing is sent again.
    runtime, again = console_runtime(_settings(tmp_path, fake_yahoo), clock)
    async with again.running(runtime):
        await again.advance(seconds=1)  # 20 poll intervals of 0.05 s
        polls = runtime.source.counters["poll_cycles"]
    assert polls >= 5
    assert again.transcript.posts() == []


async def test_with_no_data_source_it_keeps_running_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'run.db'}",
            "yahoo": {
                "base_url": f"http://127.0.0.1:{dead_port}",
                "stream_enabled": False,
                "poll_interval_seconds": 0.05,
                "timeout_seconds": 1,
            },
            "alerts": {"context_symbols": ["NQ=F"]},
        }
    )
    caplog.set_level("WARNING", logger="bot.market.live")
    runtime, bot = console_runtime(settings, ManualClock(PREMARKET))
    async with bot.running(runtime):
        await bot.type("/watch NVDA")
        await bot.advance(minutes=10)  # each backoff runs out on the clock
        assert "market" in runtime.running()
        polls = runtime.source.counters["poll_cycles"]
    assert polls >= 3
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    # The channel hears once that its data is degraded, not once per failed poll.
    [notice] = bot.transcript.messages()
    assert [a.kind.value for a in notice.alerts] == ["degraded"]
    assert "NVDA" in notice.title


async def test_prometheus_metrics_are_served_from_the_pipeline_counters(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    import urllib.request

    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    settings = _settings(tmp_path, fake_yahoo).model_copy(
        update={"metrics_port": 0, "metrics_addr": "127.0.0.1"}
    )
    runtime, bot = console_runtime(settings, clock)
    async with bot.running(runtime):
        await bot.type("/watch NVDA")
        assert len(bot.transcript.posts()) == 1  # the alert went out before /metrics is read
        assert runtime.metrics is not None
        url = f"http://127.0.0.1:{runtime.metrics.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    text = body.decode()
    assert "marketbot_messages_sent_total 1.0" in text
    assert 'marketbot_outbox_rows{status="sent"} 1.0' in text
    assert "marketbot_market_events_total" in text


# -- scheduled work, on the clock: each test moves time and reads the transcript ---------------


def _live_paced(tmp_path: Path, fake: FakeYahoo) -> Settings:
    """Yahoo polled every 15 s as in production: each poll is real HTTP to the fake, so long
    simulated spans stay a few dozen polls."""
    base = run_settings(tmp_path, fake)
    return base.model_copy(
        update={"yahoo": base.yahoo.model_copy(update={"poll_interval_seconds": 15.0})}
    )


async def test_a_watch_added_by_another_process_is_picked_up_at_the_next_watch_sync(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    settings = _live_paced(tmp_path, fake_yahoo)
    runtime, bot = console_runtime(settings, clock)
    async with bot.running(runtime):
        other = SqlStore(settings.database_url)  # `marketbot cmd`, another process
        other.add_watch(CONSOLE_CHANNEL, "NVDA", "drop 10%", now=clock.now())
        other.close()
        await bot.advance(seconds=29)
        assert bot.transcript.posts() == []  # not before the sync (every 30 s)
        posted = await bot.advance(seconds=2)
    [line] = posted
    assert line.kind == "posted"
    assert line.message is not None
    assert [alert.symbol for alert in line.message.alerts] == ["NVDA"]
    assert line.at == PREMARKET + timedelta(seconds=30)


async def test_a_mute_holds_the_alert_and_its_end_posts_what_was_missed(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    runtime, bot = console_runtime(_live_paced(tmp_path, fake_yahoo), clock)
    async with bot.running(runtime):
        assert "NVDA" in await bot.type("/mute NVDA 10m")
        await bot.type("/watch NVDA drop 10%")
        assert bot.transcript.posts() == []  # it fired, muted
        assert await bot.advance(minutes=9) == []
        posted = await bot.advance(minutes=2)
    [summary] = posted
    assert summary.message is not None
    assert summary.message.extra["kind"] == "mute_summary"
    assert summary.message.title.startswith("While NVDA was muted: 1 alert")
    # The mute check runs every 30 s: the summary comes within one check of the mute's end.
    assert (
        PREMARKET + timedelta(minutes=10)
        <= summary.at
        <= PREMARKET + timedelta(minutes=10, seconds=30)
    )


async def test_the_digest_is_posted_at_its_local_time_once(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)  # 04:05 in New York
    for symbol, price, close in (
        ("ES=F", 6020.0, 6100.0),
        ("NQ=F", 20950.0, 21891.25),
        ("YM=F", 44200.0, 44400.0),
        ("^VIX", 17.9, 14.8),
    ):
        premarket_quote(fake_yahoo, symbol, previous_close=close, price=price, at=PREMARKET)
    runtime, bot = console_runtime(_live_paced(tmp_path, fake_yahoo), clock)
    async with bot.running(runtime):
        reply = await bot.type("/digest on 04:15 America/New_York")
        assert await bot.advance(minutes=9) == []
        posted = await bot.advance(minutes=2)
        again = await bot.advance(minutes=10)  # 30 more digest checks
    assert "04:15" in reply
    [digest] = posted
    assert digest.message is not None
    assert digest.message.title == "Premarket digest Mon 2025-01-27"
    assert PREMARKET + timedelta(minutes=10) <= digest.at <= PREMARKET + timedelta(minutes=11)
    assert again == []  # once a day, however often it is checked


async def test_a_digest_asked_for_is_posted_now_and_the_scheduled_one_still_goes_out(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)  # 04:05 in New York
    premarket_quote(fake_yahoo, "ES=F", previous_close=6100.0, price=6020.0, at=PREMARKET)
    runtime, bot = console_runtime(_live_paced(tmp_path, fake_yahoo), clock)
    async with bot.running(runtime):
        await bot.type("/digest on 04:15 America/New_York")
        reply = await bot.type("/digest")
        now = bot.transcript.posts()
        later = await bot.advance(minutes=11)
    # One line back; the digest itself is a message of the channel, as the daily one is.
    assert reply == "Posting today's premarket digest here."
    [asked] = now
    assert asked.message is not None
    assert asked.message.title == "Premarket digest Mon 2025-01-27"
    [scheduled] = later  # the one asked for did not mark the day as done
    assert scheduled.message is not None
    assert scheduled.message.title == "Premarket digest Mon 2025-01-27"
    assert scheduled.at >= PREMARKET + timedelta(minutes=10)


async def test_a_digest_asked_for_again_within_ten_minutes_is_refused_in_one_line(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    # Each bare /digest posts a charted message to the whole channel: a user repeating it
    # must not flood the channel. One per channel every 10 minutes, on the bot's clock.
    clock = ManualClock(PREMARKET)  # 04:05 in New York
    premarket_quote(fake_yahoo, "ES=F", previous_close=6100.0, price=6020.0, at=PREMARKET)
    runtime, bot = console_runtime(_live_paced(tmp_path, fake_yahoo), clock)
    async with bot.running(runtime):
        await bot.type("/watch ES=F")  # the channel's row: a digest needs a lane to be posted
        first = await bot.type("/digest")
        refused = [await bot.type("/digest") for _ in range(5)]
        await bot.advance(minutes=9)
        still = await bot.type("/digest")
        digests_meanwhile = _digests(bot.transcript.posts())
        await bot.advance(minutes=1)
        again = await bot.type("/digest")
        digests = _digests(bot.transcript.posts())
    assert first == "Posting today's premarket digest here."
    assert again == first
    line = (
        "A digest was posted here at 04:05 EST; ask again from 04:15 EST "
        "(one on request every 10 minutes per channel)."
    )
    assert refused == [line] * 5
    assert still == line
    assert digests_meanwhile == [PREMARKET]
    assert digests == [PREMARKET, PREMARKET + timedelta(minutes=10)]


def _digests(posts: list[Line]) -> list[datetime]:
    """When each digest of the transcript was posted (other notices left out)."""
    return [p.at for p in posts if p.message and p.message.title.startswith("Premarket digest")]


async def test_a_row_committed_without_a_wake_is_delivered_by_the_safety_net(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    """Another process's ingest commits an outbox row; nothing wakes this delivery, so it is
    sent at the next safety-net look (every 5 s), on the clock."""
    clock = ManualClock(PREMARKET)
    settings = _live_paced(tmp_path, fake_yahoo)
    runtime, bot = console_runtime(settings, clock)
    async with bot.running(runtime):
        other = SqlStore(settings.database_url)
        other.add_watch(CONSOLE_CHANNEL, "AMD", "drop 10%", now=clock.now())
        elsewhere = Pipeline(other, build_engine(settings), [], clock, context_symbols=[])
        elsewhere.load()
        quote = Quote(
            "AMD", 100.0, clock.now(), MarketSession.PRE, previous_close=120.0, source="poll"
        )
        assert elsewhere.ingest_quotes([quote])  # stored, with its outbox row
        other.close()
        assert bot.transcript.posts() == []
        posted = await bot.advance(seconds=settings.delivery.poll_seconds + 1)
    [line] = posted
    assert line.message is not None
    assert [alert.symbol for alert in line.message.alerts] == ["AMD"]
    assert line.at <= PREMARKET + timedelta(seconds=settings.delivery.poll_seconds)


class _Silent:
    """A bot whose console reader never answers (it died)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def settle(self) -> None:
        return None

    async def advance(self, delta: timedelta) -> None:
        return None


async def test_a_command_nobody_answers_fails_the_session_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.console

    monkeypatch.setattr(bot.console, "REPLY_WITHIN", 0.1)
    session = ConsoleSession(ManualClock(PREMARKET))
    async with session.running(_Silent()):
        with pytest.raises(AssertionError, match=r"no reply to '/help' within 0\.1 s"):
            await session.type("/help")
    assert [str(line) for line in session.transcript.new()] == ["> /help"]
    assert session.transcript.new() == []  # read once
