"""`marketbot run` end to end on the embedded default, against the loopback fake Yahoo."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.models import AlertMessage
from alerts.ports import ManualClock, MessageRef
from bot.console import ConsolePlatform
from bot.fakes.yahoo_server import FakeYahoo
from bot.runner import Runtime
from bot.settings import Settings
from tests.conftest import premarket_quote, run_settings

# Monday 2025-01-27 04:05 ET: premarket.
PREMARKET = datetime(2025, 1, 27, 9, 5, tzinfo=UTC)


class WatchedConsole(ConsolePlatform):
    """The real console platform, which also signals each message it shows."""

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


async def _run_once(settings: Settings, clock: ManualClock, lines: list[str]) -> WatchedConsole:
    console = WatchedConsole()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for line in lines:
        queue.put_nowait(line + "\n")
    runtime = Runtime(settings, clock=clock, platforms=[console], commands_in=queue.get)
    await runtime.start()
    try:
        # Until a message arrived, or several polls went by (then run delivery once more so a
        # pending message could not be missed), bounded in time.
        for _ in range(250):
            if console.arrived.is_set() or runtime.source.counters["poll_cycles"] >= 5:
                break
            await asyncio.sleep(0.02)
        await runtime.pipeline.deliver_due()
    finally:
        await runtime.stop()
    return console


async def test_watch_typed_at_the_console_fires_on_a_premarket_drop(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    clock = ManualClock(PREMARKET)
    premarket_quote(fake_yahoo, "NVDA", previous_close=142.62, price=124.07, at=PREMARKET)
    fake_yahoo.set_quote(
        "NQ=F", price=20950.0, previous_close=21891.25, at=PREMARKET, exchange="CME"
    )
    console = await _run_once(_settings(tmp_path, fake_yahoo), clock, ["/watch nvda"])

    assert any("Watching *NVDA*" in reply for reply in console.replies)
    [(_, message)] = console.sent
    [alert] = message.alerts
    assert alert.symbol == "NVDA"
    assert alert.change_pct == pytest.approx(-13.0, abs=0.05)
    assert alert.session is not None
    assert alert.session.value == "pre"
    assert [line.symbol for line in message.context] == ["NQ=F"]

    # Restart on the same database, same crossing: nothing is sent again.
    again = await _run_once(_settings(tmp_path, fake_yahoo), clock, [])
    assert again.sent == []


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
    clock = ManualClock(PREMARKET)
    console = WatchedConsole()
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait("/watch NVDA\n")
    runtime = Runtime(settings, clock=clock, platforms=[console], commands_in=queue.get)
    caplog.set_level("WARNING", logger="bot.market.live")
    await runtime.start()
    try:
        for _ in range(300):
            if runtime.source.counters["poll_cycles"] >= 3:
                break
            clock.advance(timedelta(minutes=10))  # lets each backoff run out at once
            await asyncio.sleep(0.02)
        assert "market" in runtime.running()
    finally:
        await runtime.stop()
    assert runtime.source.counters["poll_cycles"] >= 3
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    # The channel hears once that its data is degraded, not once per failed poll.
    [(_, notice)] = console.sent
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
    console = WatchedConsole()
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait("/watch NVDA\n")
    runtime = Runtime(settings, clock=clock, platforms=[console], commands_in=queue.get)
    await runtime.start()
    try:
        await asyncio.wait_for(console.arrived.wait(), timeout=5)
        assert runtime.metrics is not None
        url = f"http://127.0.0.1:{runtime.metrics.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    finally:
        await runtime.stop()
    text = body.decode()
    assert "marketbot_messages_sent_total 1.0" in text
    assert 'marketbot_outbox_rows{status="sent"} 1.0' in text
    assert "marketbot_market_events_total" in text
