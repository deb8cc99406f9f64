"""`marketbot run` as a subprocess with live news: the fake Yahoo serves quotes and headlines.

A headline published on the fake feed appears in the next price alert for its symbol, a
`news` watch fires once for it, and a restart on the same database re-fires nothing.
BTC-USD trades around the clock, so the run has an open market whatever the wall clock says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.fakes.news_feeds import Story
from bot.fakes.yahoo_server import FakeYahoo

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTC-USD"
OTHER = "ETH-USD"  # also watched: the Yahoo feed is then asked about two symbols at once
HEADLINE = "Bitcoin slides as ETF outflows mount"
DEADLINE = 40.0  # seconds of wall time for one expected line (start-up included)


class Run:
    """One `marketbot run` process: console channel on stdin/stdout, fakes for the rest."""

    def __init__(self, tmp_path: Path, yahoo: FakeYahoo, name: str) -> None:
        self.out = tmp_path / f"{name}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "COLUMNS": "160",
                "MARKETBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
                "MARKETBOT_YAHOO__BASE_URL": yahoo.base_url,
                "MARKETBOT_YAHOO__STREAM_ENABLED": "false",
                "MARKETBOT_YAHOO__POLL_INTERVAL_SECONDS": "1.5",  # quotes carry whole seconds
                "MARKETBOT_ALERTS__CONTEXT_SYMBOLS": "[]",
                "MARKETBOT_ALERTS__GROUP_WAIT_SECONDS": "0",
                # Each alert its own message: the price alert must carry the headline itself.
                "MARKETBOT_ALERTS__GROUP_INTERVAL_SECONDS": "0",
                "MARKETBOT_ALERTS__CHARTS": "false",
                "MARKETBOT_NEWS_POLL_INTERVAL_SECONDS": "1",  # the flat spelling
                "MARKETBOT_NEWS__DEFAULT_FEEDS": "false",
            }
        )
        self.env = env
        self._file = self.out.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"],
            stdin=subprocess.PIPE,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
            env=env,
        )

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, needle: str, count: int = 1) -> str:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            text = self.text()
            if text.count(needle) >= count:
                return text
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not seen {count}x; output:\n{self.text()}")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the bot stops cleanly
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._file.closed:
            self._file.close()


@pytest.fixture
def yahoo(fake_yahoo: FakeYahoo) -> FakeYahoo:
    fake_yahoo.live_times = True
    fake_yahoo.set_quote(
        OTHER,
        price=3_000.0,
        previous_close=3_000.0,
        name="Ethereum USD",
        quote_type="CRYPTOCURRENCY",
        exchange="CCC",
    )
    fake_yahoo.set_quote(
        SYMBOL,
        price=100_000.0,
        previous_close=100_000.0,
        name="Bitcoin USD",
        quote_type="CRYPTOCURRENCY",
        exchange="CCC",
    )
    return fake_yahoo


@pytest.fixture
def runs(tmp_path: Path, yahoo: FakeYahoo) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def test_live_headline_reaches_the_next_price_alert_and_a_restart_refires_nothing(
    tmp_path: Path, yahoo: FakeYahoo, runs: list[Run]
) -> None:
    first = Run(tmp_path, yahoo, "first")
    runs.append(first)
    first.type("/watch news outflows")
    first.type(f"/watch {SYMBOL} drop 5%")
    first.type(f"/watch {OTHER} drop 5%")
    first.wait_for("Watching", 3)

    # The feed names no ticker for the story: "Bitcoin" is matched from Yahoo's quote name.
    yahoo.publish(
        Story(
            HEADLINE,
            datetime.now(UTC) - timedelta(minutes=1),
            link="https://news.example/btc-outflows",
            symbols=(SYMBOL,),
            tagged=False,
        )
    )
    first.wait_for(f"News: {HEADLINE}")

    yahoo.set_quote(
        SYMBOL,
        price=92_000.0,
        previous_close=100_000.0,
        name="Bitcoin USD",
        quote_type="CRYPTOCURRENCY",
        exchange="CCC",
    )
    text = first.wait_for("−8.0%")
    alert = text[text.index("−8.0%") :]
    assert HEADLINE in alert  # the price alert carries the headline that explains it
    assert "min before" in alert or "at the start" in alert
    assert text.count(f"News: {HEADLINE}") == 1  # the news watch fired once
    first.stop()

    yahoo.reset_counts()
    second = Run(tmp_path, yahoo, "second")
    runs.append(second)
    # Let the restarted bot poll quotes and read the feed a few times.
    end = time.monotonic() + DEADLINE
    while (yahoo.counts["news"] < 3 or yahoo.counts["quote"] < 3) and time.monotonic() < end:
        time.sleep(0.1)
    assert yahoo.counts["news"] >= 3
    assert yahoo.counts["quote"] >= 3
    second.type("/news BTC-USD")
    restarted = second.wait_for(HEADLINE)  # stored headlines survive the restart
    assert "News:" not in restarted  # ... and nothing is alerted again
    assert "−8.0%" not in restarted
    second.stop()
    # `marketbot cmd` (another process) answers /news from the same stored headlines.
    cmd = subprocess.run(
        [sys.executable, "-m", "bot.cli", "cmd", "/news"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=first.env,
        timeout=60,
        check=False,
    )
    assert HEADLINE in cmd.stdout
