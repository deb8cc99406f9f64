"""`marketbot backtest` against the fake Yahoo: the engine's firings over history, cached."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from typer.testing import CliRunner

from alerts.models import AlertKind
from bot.backtest import BacktestError, Request, plan_requests, run_backtest
from bot.cli import app
from bot.fakes.yahoo_server import FakeYahoo
from bot.replay import run_replay
from bot.settings import Settings
from tests.test_cli import marketbot

NY = ZoneInfo("America/New_York")
DAY = date(2025, 1, 27)  # the DeepSeek Monday
PREVIOUS_CLOSE = 142.62
NOW = datetime(2025, 1, 28, 12, 0, tzinfo=UTC)  # the next day: 1-minute bars still served


def _move(minute: int) -> float:
    """% vs the previous close, minute by minute from 04:00 ET: down through -10% by 05:00,
    back up past the re-arm band by 07:00, down again and deeper after the open."""
    if minute <= 60:
        return -2.0 - 9.5 * minute / 60
    if minute <= 180:
        return -11.5 + 7.0 * (minute - 60) / 120
    return -4.5 - 7.5 * min(minute - 180, 180) / 180


def _bars() -> list[tuple[datetime, float, float]]:
    start = datetime(2025, 1, 27, 4, 0, tzinfo=NY)
    return [
        (start + timedelta(minutes=m), round(PREVIOUS_CLOSE * (1 + _move(m) / 100), 2), 1000.0)
        for m in range(6 * 60)  # 04:00 to 09:59 ET: premarket and the first half hour
    ]


def _program(fake: FakeYahoo) -> None:
    fake.set_closes("NVDA", [(date(2025, 1, 23), 147.22), (date(2025, 1, 24), PREVIOUS_CLOSE)])
    fake.set_intraday("NVDA", _bars(), interval="1m")


def _settings(fake: FakeYahoo, cache: Path) -> Settings:
    return Settings.model_validate({"yahoo": {"base_url": fake.base_url}, "cache_dir": str(cache)})


def _console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None)


def _scenario(path: Path) -> Path:
    """The same ticks as a replay scenario (format 1), to compare firings with."""
    ticks = [[when.isoformat(), price, volume] for when, price, volume in _bars()]
    cumulative = 0.0
    for tick in ticks:
        cumulative += tick[2]  # type: ignore[operator]
        tick[2] = cumulative
    doc = {
        "format": 1,
        "name": "nvda-backtest-check",
        "description": "NVDA 1-minute bars of the backtest test",
        "start": ticks[0][0],
        "end": (_bars()[-1][0] + timedelta(minutes=1)).isoformat(),
        "reference": {
            "NVDA": {"previous_close": PREVIOUS_CLOSE, "currency": "USD", "exchange": "NMS"}
        },
        "ticks": {"NVDA": ticks},
        "default_watches": ["/watch NVDA drop 10%"],
        "context_symbols": [],
    }
    path.write_text(json.dumps(doc))
    return path


async def test_backtest_fires_where_a_replay_of_the_same_ticks_fires(
    fake_yahoo: FakeYahoo, tmp_path: Path
) -> None:
    _program(fake_yahoo)
    out, err = _console(), _console()
    chart = tmp_path / "nvda.png"
    result = run_backtest(
        _settings(fake_yahoo, tmp_path / "cache"),
        "nvda",
        "drop 10%",
        DAY,
        DAY,
        chart=chart,
        now=NOW,
        out=out,
        err=err,
    )
    replay = await run_replay(
        Settings.model_validate({"alerts": {"context_symbols": []}}),
        str(_scenario(tmp_path / "nvda.json")),
        console=_console(),
    )
    seen: dict[str, tuple[datetime, AlertKind, float | None]] = {}
    for _, message in replay.messages:
        for alert in message.alerts:
            if alert.kind in (AlertKind.FIRING, AlertKind.ESCALATED):
                seen.setdefault(alert.key, (alert.at, alert.kind, alert.price))
    replayed = sorted(seen.values(), key=lambda item: item[0])
    backtested = [(f.at, f.kind, f.price) for f in result.firings]
    assert backtested == replayed
    kinds = [kind for _, kind, _ in backtested]
    assert kinds.count(AlertKind.FIRING) == 2, backtested  # fired, re-armed, fired again
    assert result.intervals == {"1m": len(_bars())}
    # Each firing printed with its time in the display zone, move and price.
    printed = out.file.getvalue()  # type: ignore[attr-defined]
    first = result.firings[0]
    assert f"{first.at.astimezone(NY):%Y-%m-%d %H:%M}" in printed
    assert f"{first.price:,.2f}" in printed
    assert "−10." in printed or "−11." in printed
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_a_second_run_is_served_from_the_cache_without_a_request(
    fake_yahoo: FakeYahoo, tmp_path: Path
) -> None:
    _program(fake_yahoo)
    cache = tmp_path / "cache"
    first = run_backtest(
        _settings(fake_yahoo, cache),
        "NVDA",
        "drop 10%",
        DAY,
        DAY,
        now=NOW,
        out=_console(),
        err=_console(),
    )
    # The daily closes and one 1-minute block were asked of yfinance (which may answer a
    # range wholly in the past from its own in-process memo, so the fake's log can't tell).
    assert first.requests == 2
    # A second fake that knows nothing: every answer must come from the disk cache.
    with FakeYahoo() as empty:
        again = run_backtest(
            _settings(empty, cache),
            "NVDA",
            "drop 10%",
            DAY,
            DAY,
            now=NOW,
            out=_console(),
            err=_console(),
        )
        assert empty.paths == []
    assert again.requests == 0
    assert again.firings == first.firings


def test_requests_use_the_finest_bars_yahoo_keeps_and_fit_its_limits() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    start = now - timedelta(days=800)
    requests = plan_requests(start, now, now)
    by_interval: dict[str, list[Request]] = {}
    for request in requests:
        by_interval.setdefault(request.interval, []).append(request)
    assert set(by_interval) == {"1m", "5m", "1h", "1d"}
    limits = {"1m": 8, "5m": 60, "1h": 730}
    for interval, days in limits.items():
        assert all(r.end - r.start <= timedelta(days=days) for r in by_interval[interval])
    assert min(r.start for r in by_interval["1m"]) >= now - timedelta(days=30)
    assert min(r.start for r in by_interval["5m"]) >= now - timedelta(days=60)
    assert min(r.start for r in by_interval["1h"]) >= now - timedelta(days=730)
    # Contiguous, no overlap, no gap: every instant is asked for once.
    ordered = sorted(requests, key=lambda r: r.start)
    assert ordered[0].start == start
    assert ordered[-1].end == now
    assert all(a.end == b.start for a, b in itertools.pairwise(ordered))


@pytest.mark.parametrize(
    ("target", "rule", "message"),
    [
        ("NVDA", "drop ten", "did not understand"),
        ("basket:ai", "drop 5%", "one symbol"),
        ("NVDA", "news deepseek", "cannot be backtested"),
    ],
)
def test_bad_input_is_one_clear_line(
    fake_yahoo: FakeYahoo, tmp_path: Path, target: str, rule: str, message: str
) -> None:
    with pytest.raises(BacktestError, match=message):
        run_backtest(
            _settings(fake_yahoo, tmp_path),
            target,
            rule,
            DAY,
            DAY,
            now=NOW,
            out=_console(),
            err=_console(),
        )
    assert fake_yahoo.paths == []


def test_the_cli_runs_a_backtest(
    fake_yahoo: FakeYahoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _program(fake_yahoo)
    monkeypatch.setenv("MARKETBOT_YAHOO__BASE_URL", fake_yahoo.base_url)
    monkeypatch.setenv("MARKETBOT_CACHE_DIR", str(tmp_path / "cache"))
    fake_yahoo.set_intraday("NVDA", _bars(), interval="1h")  # what Yahoo keeps of that day now
    # Yahoo keeps 1-minute bars for 30 days only: an old day is backtested on coarser bars.
    result = CliRunner().invoke(
        app, ["backtest", "NVDA", "drop", "10%", "--start", "2025-01-27", "--end", "2025-01-27"]
    )
    assert result.exit_code == 0, result.output
    assert "NVDA" in result.output
    bad = CliRunner().invoke(app, ["backtest", "NVDA", "drop", "10%", "--start", "27/01/2025"])
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output


@pytest.mark.parametrize(
    ("symbol", "now", "today", "zone"),
    [
        # 22:30 in New York, already the 28th in UTC: the trading day is still the 27th.
        ("NVDA", datetime(2025, 1, 28, 3, 30, tzinfo=UTC), DAY, "America/New_York"),
        # 01:00 on the 27th in Tokyo, the 26th in New York and in UTC.
        ("7203.T", datetime(2025, 1, 26, 16, 0, tzinfo=UTC), DAY, "Asia/Tokyo"),
    ],
)
def test_without_end_the_last_day_is_today_on_the_symbols_exchange(
    fake_yahoo: FakeYahoo, tmp_path: Path, symbol: str, now: datetime, today: date, zone: str
) -> None:
    # --start and --end are days of the exchange the symbol trades on (``day_range``), so
    # "today" is too: not the machine's date, nor the display zone's.
    _program(fake_yahoo)  # NVDA's bars only: 7203.T is refused, naming the days it tried
    err = _console()
    try:
        run_backtest(
            _settings(fake_yahoo, tmp_path / "cache"),
            symbol,
            "drop 10%",
            today,
            None,
            now=now,
            out=_console(),
            err=err,
        )
    except BacktestError as exc:
        said = str(exc)
    else:
        said = err.file.getvalue()  # type: ignore[attr-defined]
    assert f"on {today} ({zone})" in said


def test_the_cli_counts_today_on_the_exchange_not_on_the_machine(
    fake_yahoo: FakeYahoo, tmp_path: Path
) -> None:
    # A machine whose date differs from New York's right now: 12 h behind UTC before 07:00
    # in New York, 14 h ahead after.
    def new_york_today() -> date:
        return datetime.now(NY).date()

    today = new_york_today()
    machine = "Etc/GMT+12" if datetime.now(NY).hour < 7 else "Etc/GMT-14"
    result = marketbot(
        "backtest",
        "NVDA",
        "drop",
        "10%",
        "--start",
        str(today),
        cwd=tmp_path,
        env={
            "TZ": machine,
            "MARKETBOT_YAHOO__BASE_URL": fake_yahoo.base_url,
            "MARKETBOT_CACHE_DIR": str(tmp_path / "cache"),
        },
    )
    if new_york_today() != today:
        pytest.skip("New York's midnight passed during the test")
    assert result.returncode == 2, result.stderr
    # The fake has no bars for today: the refusal names the days it looked at.
    assert f"no price history for NVDA on {today} (America/New_York)" in result.stderr


def test_yfinance_prints_nothing_of_its_own_in_a_backtest(
    fake_yahoo: FakeYahoo, tmp_path: Path
) -> None:
    # A symbol the fake has no history for: one refusal, not yfinance's "possibly delisted"
    # lines printed by logging's last-resort handler before it.
    result = marketbot(
        "backtest",
        "NVDA",
        "drop",
        "10%",
        "--start",
        "2025-01-27",
        "--end",
        "2025-01-27",
        cwd=tmp_path,
        env={
            "MARKETBOT_YAHOO__BASE_URL": fake_yahoo.base_url,
            "MARKETBOT_CACHE_DIR": str(tmp_path / "cache"),
        },
    )
    assert result.returncode == 2, result.stderr
    assert "no price history for NVDA" in result.stderr
    assert "delisted" not in result.stderr + result.stdout
