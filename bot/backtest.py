"""`marketbot backtest`: the real engine over Yahoo history, cached on disk, firings listed."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote as url_quote
from zoneinfo import ZoneInfo

from rich.console import Console

from alerts.engine import Engine
from alerts.models import Alert, AlertKind, MarketSession, Quote, Watch
from alerts.ports import MarketDataError
from alerts.quality import QualityGate
from alerts.rules import RuleSyntaxError, parse_rule, rule_target_problem
from alerts.symbols import SymbolError, normalize_symbol
from alerts.wording import plural
from bot.market import sessions
from bot.market.yahoo_history import INTERVAL_LENGTH, LOOKBACK, MAX_SPAN, Bar, YahooHistory

if TYPE_CHECKING:
    from rich.progress import TaskID

    from bot.settings import Settings

# The finest bars Yahoo keeps for each age, finest first; a day's margin keeps every request
# inside Yahoo's window even when the clock ticks on between planning and asking.
INTERVALS_BY_AGE = ("1m", "5m", "1h", "1d")
LOOKBACK_MARGIN = timedelta(days=1)
# Requests are cut at fixed calendar blocks (counted from 1970-01-01) so that two backtests
# over overlapping ranges ask for, and cache, the same pieces.
BLOCK = {"1m": 7, "5m": 28, "1h": 182, "1d": 3640}
# Yahoo's data of the last half hour may still change; such a piece is never cached.
SETTLED_AFTER = timedelta(minutes=30)
DAILY_LOOKBACK = timedelta(days=15)  # enough to find the close before the first day
BACKTEST_CHANNEL = "backtest"
FIRING_KINDS = (AlertKind.FIRING, AlertKind.ESCALATED, AlertKind.REPEAT)


class BacktestError(Exception):
    """The backtest cannot run (bad symbol, rule or dates, no history); the message says why."""


@dataclass(frozen=True, slots=True)
class Request:
    """One chart request: bars of ``interval`` that opened in ``[start, end)``."""

    interval: str
    start: datetime
    end: datetime


def plan_requests(start: datetime, end: datetime, now: datetime) -> list[Request]:
    """The requests that cover ``[start, end)`` with the finest bars Yahoo still has.

    The recent part gets 1-minute bars (Yahoo keeps 30 days of them), older parts 5-minute
    (60 days), hourly (730 days) and daily bars; each part is cut into requests no longer than
    Yahoo serves at once (8 days of 1-minute bars), at fixed block boundaries.
    """
    end = min(end, now)
    requests: list[Request] = []
    upper = end
    for interval in INTERVALS_BY_AGE:
        if upper <= start:
            break
        lookback = LOOKBACK[interval]
        lower = start if lookback is None else max(start, now - lookback + LOOKBACK_MARGIN)
        if lower >= upper:
            continue
        requests.extend(_blocks(interval, lower, upper))
        upper = lower
    return sorted(requests, key=lambda r: r.start)


def _blocks(interval: str, lower: datetime, upper: datetime) -> Iterator[Request]:
    size = timedelta(days=BLOCK[interval])
    assert size <= MAX_SPAN[interval]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    cursor = epoch + ((lower - epoch) // size) * size
    while cursor < upper:
        nxt = cursor + size
        yield Request(interval, max(cursor, lower), min(nxt, upper))
        cursor = nxt


class HistoryCache:
    """Bars of settled requests as JSON files: ``ROOT/yahoo/SYMBOL/INTERVAL/START-END.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, symbol: str, request: Request) -> Path:
        name = f"{int(request.start.timestamp())}-{int(request.end.timestamp())}.json"
        return self.root / "yahoo" / url_quote(symbol, safe="") / request.interval / name

    def get(self, symbol: str, request: Request) -> list[Bar] | None:
        path = self._path(symbol, request)
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            return [Bar.from_json(row) for row in rows]
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, OSError):
            return None  # a damaged file is fetched again, not trusted

    def put(self, symbol: str, request: Request, bars: Sequence[Bar]) -> None:
        path = self._path(symbol, request)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps([bar.to_json() for bar in bars]), encoding="utf-8")
        partial.replace(path)  # atomic: an interrupted run leaves no half-written file


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/marketbot`` or ``~/.cache/marketbot``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marketbot"


@dataclass(frozen=True, slots=True)
class Firing:
    """One alert the rule would have sent."""

    at: datetime
    kind: AlertKind
    price: float | None
    change_pct: float | None
    tier: int
    session: MarketSession | None

    @classmethod
    def of(cls, alert: Alert) -> Firing:
        return cls(alert.at, alert.kind, alert.price, alert.change_pct, alert.tier, alert.session)


@dataclass
class BacktestResult:
    symbol: str
    rule_text: str
    firings: list[Firing] = field(default_factory=list)
    path: list[tuple[datetime, float]] = field(default_factory=list)  # (time, price)
    intervals: dict[str, int] = field(default_factory=dict)  # bars evaluated per interval
    requests: int = 0  # chart requests sent to Yahoo (0 when everything came from the cache)
    cached: int = 0  # requests answered from the cache
    currency: str | None = None


Progress = Callable[[str, int, int], None]  # (what, done, total)


def _no_progress(what: str, done: int, total: int) -> None:
    pass


def check_target_and_rule(target: str, rule_words: str) -> tuple[str, str]:
    """The normalized symbol and canonical rule, or BacktestError with the user's mistake."""
    try:
        symbol = normalize_symbol(target)
    except SymbolError as exc:
        raise BacktestError(f"{exc} (a backtest takes one symbol, e.g. NVDA)") from None
    try:
        rule = parse_rule(rule_words)
    except RuleSyntaxError as exc:
        raise BacktestError(str(exc)) from None
    problem = rule_target_problem(rule, symbol)
    if problem is not None:
        raise BacktestError(problem)
    if rule.canonical.startswith(("news", "volume", "breadth")):
        raise BacktestError(
            f"`{rule.canonical}` cannot be backtested from price history: use a price rule "
            "such as `drop 10%`, `move 3% in 15m` or `below 120`"
        )
    return symbol, rule.canonical


def exchange_today(symbol: str, now: datetime) -> date:
    """Today on the symbol's exchange: the default last day, on the calendar of ``day_range``.

    Not the machine's date nor the display zone's: at 22:30 in New York a UTC machine is on
    the next day, and at 10:00 in Tokyo a New York one is still on the day before.
    """
    return now.astimezone(sessions.exchange_zone(symbol)).date()


def describe_days(symbol: str, start: datetime, end: datetime) -> str:
    """``on 2025-01-27 (America/New_York)`` or ``from A to B (...)`` for a ``day_range``."""
    zone = sessions.exchange_zone(symbol)
    first = start.astimezone(zone).date()
    last = end.astimezone(zone).date() - timedelta(days=1)
    days = f"on {first}" if first == last else f"from {first} to {last}"
    return f"{days} ({zone.key})"


def day_range(symbol: str, first: date, last: date) -> tuple[datetime, datetime]:
    """From midnight of ``first`` to midnight after ``last`` in the symbol's exchange zone."""
    if last < first:
        raise BacktestError(f"--end {last} is before --start {first}")
    zone = sessions.exchange_zone(symbol)
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


class Backtester:
    """Fetches (or reads cached) bars, turns them into quotes and runs the engine over them.

    The quotes go through the same data-quality gate and ``Engine`` as a live run or a replay,
    so a backtest fires exactly where a replay of the same ticks would.
    """

    def __init__(
        self,
        engine: Engine,
        history: YahooHistory,
        cache: HistoryCache | None,
        *,
        now: datetime,
        progress: Progress = _no_progress,
    ) -> None:
        self.engine = engine
        self.history = history
        self.cache = cache
        self.now = now
        self.progress = progress

    def run(self, symbol: str, rule_text: str, start: datetime, end: datetime) -> BacktestResult:
        result = BacktestResult(symbol=symbol, rule_text=rule_text)
        requests = plan_requests(start, end, self.now)
        if not requests:
            raise BacktestError("nothing to test: the range lies in the future")
        daily = Request("1d", start - DAILY_LOOKBACK, min(end, self.now))
        total = len(requests) + 1
        closes_bars = self._bars(symbol, daily, result)
        self.progress("history", 1, total)
        bars: list[tuple[str, Bar]] = []
        for done, request in enumerate(requests, start=2):
            bars.extend((request.interval, bar) for bar in self._bars(symbol, request, result))
            self.progress("history", done, total)
        bars.sort(key=lambda item: item[1].start)
        if not bars:
            raise BacktestError(
                f"no price history for {symbol} {describe_days(symbol, start, end)} "
                "(unknown symbol, no trading, "
                "or Yahoo unreachable)"
            )
        closes = _daily_closes(symbol, closes_bars)
        quotes = list(_quotes(symbol, bars, closes))
        if not quotes:
            raise BacktestError(f"no previous close known for {symbol} before that range")
        result.firings = self.evaluate(symbol, rule_text, quotes, start)
        result.path = [(q.time, q.price) for q, _ in quotes if q.price is not None]
        for _, interval in quotes:
            result.intervals[interval] = result.intervals.get(interval, 0) + 1
        return result

    def _bars(self, symbol: str, request: Request, result: BacktestResult) -> list[Bar]:
        cached = self.cache.get(symbol, request) if self.cache is not None else None
        if cached is not None:
            result.cached += 1
            return cached
        result.requests += 1
        bars = self.history.bars_sync(symbol, request.start, request.end, request.interval)
        # Empty answers are not kept: yfinance returns no bars for an outage as for a
        # holiday, and a cached outage would hide that range for good.
        if self.cache is not None and bars and request.end + SETTLED_AFTER <= self.now:
            self.cache.put(symbol, request, bars)
        return bars

    def evaluate(
        self,
        symbol: str,
        rule_text: str,
        quotes: Sequence[tuple[Quote, str]],
        start: datetime,
    ) -> list[Firing]:
        """The engine over ``quotes`` in time order, as the live ingest step drives it."""
        watch = Watch(1, BACKTEST_CHANNEL, symbol, rule_text, created_at=start)
        self.engine.load([watch], [], {})
        gate = QualityGate()
        firings: list[Firing] = []
        total = len(quotes)
        for done, (quote, interval) in enumerate(quotes, start=1):
            now = quote.time
            batch = gate.judge_batch(
                [symbol],
                {symbol: quote},
                now=now,
                expected_interval=INTERVAL_LENGTH[interval],
                source="backtest",
            )
            evaluations = [self.engine.on_quotes(batch.quotes, now)]
            if batch.unavailable:
                evaluations.append(self.engine.mark_unavailable(batch.unavailable, now))
            for evaluation in evaluations:
                firings.extend(Firing.of(a) for a in evaluation.alerts if a.kind in FIRING_KINDS)
            if done % 500 == 0 or done == total:
                self.progress("engine", done, total)
        return firings


def _daily_closes(symbol: str, bars: Sequence[Bar]) -> dict[date, float]:
    zone = sessions.exchange_zone(symbol)
    return {bar.start.astimezone(zone).date(): bar.close for bar in bars}


def _previous_close(symbol: str, day: date, closes: dict[date, float]) -> float | None:
    """The close of the last trading day before ``day`` that Yahoo has a daily bar for."""
    ref = sessions.previous_trading_day(symbol, day)
    if ref in closes:
        return closes[ref]
    earlier = [d for d in closes if d < day]
    return closes[max(earlier)] if earlier else None


def _quotes(
    symbol: str, bars: Sequence[tuple[str, Bar]], closes: dict[date, float]
) -> Iterator[tuple[Quote, str]]:
    """Each bar as the quote a live source would have shown at its start (daily bars: at the
    close), measured against the previous trading day's close."""
    opens: dict[date, float] = {}
    volumes: dict[date, float] = {}
    seen: set[datetime] = set()
    for interval, bar in bars:
        when, session = bar.start, sessions.session_at(symbol, bar.start)
        day = sessions.trading_day(symbol, when)
        if interval == "1d":
            day = bar.start.astimezone(sessions.exchange_zone(symbol)).date()
            bounds = sessions.regular_session_bounds(symbol, day)
            if bounds is None:
                continue
            when, session = bounds[1] - timedelta(minutes=1), MarketSession.REGULAR
        if when in seen:
            continue
        seen.add(when)
        previous = _previous_close(symbol, day, closes)
        if previous is None or not math.isfinite(bar.close):
            continue
        if session is MarketSession.REGULAR:
            opens.setdefault(day, bar.open)
        volumes[day] = volumes.get(day, 0.0) + bar.volume
        quote = Quote(
            symbol=symbol,
            price=bar.close,
            time=when,
            session=session,
            previous_close=previous,
            open=opens.get(day) if session is MarketSession.REGULAR else None,
            day_volume=volumes[day],
            source="backtest",
        )
        yield quote, interval


def run_backtest(
    settings: Settings,
    target: str,
    rule_words: str,
    first: date,
    last: date | None,
    *,
    chart: Path | None = None,
    now: datetime | None = None,
    out: Console | None = None,
    err: Console | None = None,
) -> BacktestResult:
    """``marketbot backtest``: firings on stdout, the progress bar and notes on stderr.

    ``last`` None: today on the symbol's exchange (see ``exchange_today``).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bot.runner import build_engine

    out = out or Console()
    err = err or Console(stderr=True)
    symbol, rule_text = check_target_and_rule(target, rule_words)
    now = now or datetime.now(UTC)
    if last is None:
        last = exchange_today(symbol, now)
    start, end = day_range(symbol, first, last)
    cache_root = Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()
    history = YahooHistory(base_url=settings.yahoo.base_url, timeout=settings.yahoo.timeout_seconds)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def progress(what: str, done: int, total: int) -> None:
        if what not in tasks:
            label = {"history": f"Yahoo history of {symbol}", "engine": f"{rule_text}"}[what]
            tasks[what] = bar.add_task(label, total=total)
        bar.update(tasks[what], completed=done, total=total)

    tester = Backtester(
        build_engine(settings),
        history,
        HistoryCache(cache_root),
        now=now,
        progress=progress,
    )
    try:
        with bar:
            result = tester.run(symbol, rule_text, start, end)
    except MarketDataError as exc:
        raise BacktestError(f"could not get Yahoo history: {exc}") from None
    finally:
        history.close()
    _print_result(result, describe_days(symbol, start, end), settings.timezone, out, err)
    if chart is not None:
        _write_chart(result, chart, settings.timezone, first, last)
        err.print(f"chart written to {chart}", highlight=False)
    return result


def _print_result(
    result: BacktestResult, days: str, timezone: str, out: Console, err: Console
) -> None:
    from rich.table import Table

    from bot.render import format as fmt

    zone = ZoneInfo(timezone)
    bars = ", ".join(f"{count} × {interval}" for interval, count in result.intervals.items())
    source = (
        "all from the cache" if result.requests == 0 else plural(result.requests, "Yahoo request")
    )
    err.print(
        f"{result.symbol} `{result.rule_text}` {days}: {bars} bars ({source})", highlight=False
    )
    if not result.firings:
        out.print(f"{result.symbol} `{result.rule_text}` never fired in that range.")
        return
    table = Table(
        title=f"{result.symbol} {result.rule_text}: {plural(len(result.firings), 'firing')}"
    )
    table.add_column(f"time ({zone.key})")
    table.add_column("alert")
    table.add_column("move", justify="right")
    table.add_column("price", justify="right")
    table.add_column("session")
    for firing in result.firings:
        table.add_row(
            fmt.when(firing.at, zone),
            firing.kind.value if not firing.tier else f"{firing.kind.value} (tier {firing.tier})",
            fmt.pct(firing.change_pct),
            fmt.price(firing.price),
            firing.session.value if firing.session else "",
        )
    out.print(table)


def _write_chart(
    result: BacktestResult, path: Path, timezone: str, first: date, last: date
) -> None:
    from bot.charts import Fire, png, price_figure

    fires = [
        Fire(
            result.symbol,
            f.at,
            f.price,
            f"{f.change_pct:+.1f}%" if f.change_pct is not None else "",
            move=f.change_pct,
        )
        for f in result.firings
        if f.price is not None
    ]
    days = f"{first}" if first == last else f"{first} to {last}"
    title = f"{result.symbol} {result.rule_text}, {days}: {plural(len(fires), 'firing')}"
    fig = price_figure(
        result.symbol,
        result.path,
        title=title,
        timezone=timezone,
        fires=fires,
    )
    if fig is None:
        raise BacktestError("too few prices to draw a chart")
    path.write_bytes(png(fig))
