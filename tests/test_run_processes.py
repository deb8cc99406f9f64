"""Several `marketbot run` processes on one database, as an operator starts them (subprocesses).

SQLite: the second run is refused with one line (exit 2), and may start once the first died.
PostgreSQL: the second run waits as a standby; `kill -9` of the leader hands over within 10 s
and nothing is polled into an alert or posted twice, the day's digest included (each process
posts to its own console).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.fakes.yahoo_server import FakeYahoo
from bot.pipeline.digest import is_trading_day
from bot.store import SqlStore

ROOT = Path(__file__).resolve().parents[1]
TAKEOVER_BUDGET = 10.0
DIGEST_TITLE = "Premarket digest"


def _digest_due_now(store: SqlStore, channel: str, now: datetime) -> str | None:
    """Set ``channel``'s daily digest to a minute ago, in a zone where today is a trading day
    (digests go out on NYSE trading days only), so the leader posts it as it starts. Returns
    the zone, or None when no zone has a trading day now (a weekend): no digest then."""
    for hours in range(-12, 15):
        zone = f"Etc/GMT{-hours:+d}" if hours else "UTC"  # Etc/GMT+5 is UTC-5
        local = now.astimezone(ZoneInfo(zone))
        if local.hour == 0 and local.minute < 5:
            continue  # a minute ago was yesterday
        if is_trading_day(local.date()):
            break
    else:
        return None
    at = (local - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    store.update_channel_settings(channel, lambda s: replace(s, digest=at, digest_zone=zone), now)
    return zone


PANEL_TITLE = re.compile(r"#\d+( updated)? console:default")


class RunProcess:
    """A `marketbot run` subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        self._pumps = [
            threading.Thread(target=_pump, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for pump in self._pumps:
            pump.start()

    def wait_for(self, predicate: Callable[[], bool], within: float, what: str) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic()
            if self.proc.poll() is not None and not predicate():
                time.sleep(0.2)  # let the pumps drain the last lines
                if predicate():
                    return time.monotonic()
                raise AssertionError(f"exited ({self.proc.returncode}) before {what}: {self.log}")
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {within} s: {self.log}")

    def said(self, text: str, *, stream: str = "out") -> bool:
        lines = self.out if stream == "out" else self.err
        return any(text in line for _, line in list(lines))

    def panels(self) -> list[str]:
        """Each console message this process printed, as its text."""
        panels: list[str] = []
        for _, line in list(self.out):
            if PANEL_TITLE.search(line):
                panels.append(line)
            elif panels and not line.startswith("╰"):
                panels[-1] += "\n" + line
        return panels

    @property
    def log(self) -> str:
        out = "".join(line for _, line in self.out)[-2000:]
        err = "".join(line for _, line in self.err)[-3000:]
        return f"\n--- stdout\n{out}\n--- stderr\n{err}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pump in self._pumps:
            pump.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _pump(stream: object, lines: list[tuple[float, str]]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append((time.monotonic(), line))


def run_env(database_url: str, yahoo: FakeYahoo, cache: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    return {
        **base,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "100",
        "XDG_CACHE_HOME": str(cache),  # yfinance's time-zone cache stays in the test
        "MARKETBOT_DATABASE_URL": database_url,
        "MARKETBOT_YAHOO__BASE_URL": yahoo.base_url,
        "MARKETBOT_YAHOO__STREAM_ENABLED": "false",
        "MARKETBOT_YAHOO__POLL_INTERVAL_SECONDS": "1",  # > quote time granularity (1 s)
        "MARKETBOT_ALERTS__GROUP_WAIT_SECONDS": "0",
        "MARKETBOT_ALERTS__GROUP_INTERVAL_SECONDS": "0",
        "MARKETBOT_ALERTS__CONTEXT_SYMBOLS": "[]",
        "MARKETBOT_ALERTS__CHARTS": "false",
    }


class Ticker:
    """Re-quotes the fake Yahoo every 0.2 s, so the prices a test sets stay fresh (never stale)."""

    def __init__(self, yahoo: FakeYahoo) -> None:
        self.yahoo = yahoo
        self.prices: dict[str, tuple[float, float]] = {}  # symbol -> (price, previous close)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def set(self, symbol: str, price: float, previous_close: float = 100.0) -> None:
        self.prices[symbol] = (price, previous_close)
        self._quote(symbol)

    def _quote(self, symbol: str) -> None:
        price, previous_close = self.prices[symbol]
        self.yahoo.set_quote(symbol, price=price, previous_close=previous_close)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for symbol in list(self.prices):
                self._quote(symbol)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def took_over(standby: RunProcess, died: float, how: str) -> None:
    """Wait for the standby to run as the leader; print and check the times since ``died``."""
    running = standby.wait_for(
        lambda: standby.said("marketbot is running"), TAKEOVER_BUDGET + 5, "takeover"
    )
    won = next(at for at, line in list(standby.err) if "leader: lock won" in line)
    led = next(at for at, line in list(standby.err) if "this process leads" in line)
    print(
        f"takeover after {how}: lock won {won - died:.2f} s, leading {led - died:.2f} s,"
        f" running {running - died:.2f} s (budget {TAKEOVER_BUDGET:.0f} s)"
    )
    assert running - died <= TAKEOVER_BUDGET, standby.log


@pytest.fixture
def ticker(fake_yahoo: FakeYahoo) -> Iterator[Ticker]:
    with Ticker(fake_yahoo) as running:
        yield running


def test_a_second_run_on_one_sqlite_file_is_refused_until_the_first_dies(
    tmp_path: Path, fake_yahoo: FakeYahoo, processes: list[RunProcess]
) -> None:
    env = run_env(f"sqlite:///{tmp_path / 'bot.db'}", fake_yahoo, tmp_path / "cache")
    first = RunProcess(env, tmp_path)
    processes.append(first)
    first.wait_for(lambda: first.said("marketbot is running"), 60, "start")

    second = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1, second.stderr
    assert f"pid {first.proc.pid}" in second.stderr
    assert "one run per database file" in second.stderr

    first.proc.kill()  # the kernel drops the lock with the process, however it ends
    first.proc.wait()
    again = RunProcess(env, tmp_path)
    processes.append(again)
    again.wait_for(lambda: again.said("marketbot is running"), 60, "start after the crash")


@pytest.mark.postgres
def test_kill_9_of_the_leader_hands_over_to_the_standby_and_nothing_happens_twice(
    tmp_path: Path,
    fake_yahoo: FakeYahoo,
    ticker: Ticker,
    postgres_store: SqlStore,
    processes: list[RunProcess],
) -> None:
    # Coins trade around the clock: the run has an open market whatever the wall clock says.
    now = datetime.now(UTC)
    for symbol in ("BTC-USD", "ETH-USD"):
        postgres_store.add_watch("console:default", symbol, "drop 10%", now=now)
    for symbol in ("BTC-USD", "ETH-USD"):
        fake_yahoo.set_closes(symbol, [(now.date() - timedelta(days=1), 100.0)])
    ticker.set("BTC-USD", 85.0)  # -15%: fires at once
    ticker.set("ETH-USD", 99.0)
    digest_zone = _digest_due_now(postgres_store, "console:default", now)
    if digest_zone is None:
        print("no zone has a trading day now: the digest half is not exercised")
    digests = 1 if digest_zone is not None else 0
    env = run_env(postgres_store.url, fake_yahoo, tmp_path / "cache")

    def alerts(process: RunProcess) -> list[str]:
        return [p for p in process.panels() if DIGEST_TITLE not in p]

    def digest_panels(process: RunProcess) -> list[str]:
        return [p for p in process.panels() if DIGEST_TITLE in p]

    leader = RunProcess(env, tmp_path)
    processes.append(leader)
    leader.wait_for(lambda: len(alerts(leader)) == 1, 60, "the BTC-USD alert")
    leader.wait_for(lambda: len(digest_panels(leader)) == digests, 60, f"{digests} digest")
    standby = RunProcess(env, tmp_path)
    processes.append(standby)
    standby.wait_for(lambda: standby.said("standby", stream="err"), 60, "standby")

    leader.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    leader.proc.wait()
    took_over(standby, killed, "kill -9")

    # A new crossing after the takeover reaches the channel from the new leader.
    ticker.set("ETH-USD", 80.0)
    standby.wait_for(lambda: len(standby.panels()) >= 1, 20, "the ETH-USD alert")
    polls = fake_yahoo.counts["quote"]
    standby.wait_for(lambda: fake_yahoo.counts["quote"] >= polls + 5, 20, "five more polls")
    # The new leader checked the digests as it started (the digest job runs at once): the
    # day's digest is marked queued, with the row the old leader sent, so it is not again.
    assert postgres_store.channel_settings("console:default").digest_sent == (
        now.astimezone(ZoneInfo(digest_zone)).date() if digest_zone is not None else None
    )
    assert digest_panels(standby) == [], standby.log
    assert len(digest_panels(leader)) == digests, leader.log

    leader_panels, standby_panels = alerts(leader), alerts(standby)
    assert len(leader_panels) == 1, leader.log
    assert "BTC-USD" in leader_panels[0]
    # BTC-USD's firing state was reloaded, not re-fired:
    assert len(standby_panels) == 1, standby.log
    assert "ETH-USD" in standby_panels[0]
    assert "BTC-USD" not in standby_panels[0]
    assert postgres_store.outbox_counts() == {"sent": 2 + digests}
