"""The replay scenario format: typed, validated values built from a parsed JSON document."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.models import MarketSession, NewsItem

FORMAT_VERSION = 2  # the newest format; files without a "format" field are version 1
SUPPORTED_FORMATS = (1, 2)

# Yahoo's symbol alphabet: NVDA, NQ=F, ASML.AS, ^VIX, BRK-B.
_SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.=^-]{0,31}$")
_WINDOW_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_KNOWN_TOP_LEVEL = frozenset(
    {
        "format",
        "name",
        "description",
        "derivation",
        "start",
        "end",
        "reference",
        "ticks",
        "news",
        "default_watches",
        "context_symbols",
        "halts",
        "gaps",
        "bad_ticks",
    }
)
# Fields that only version 2 understands; a version-1 file that uses one is told so.
_V2_TOP_LEVEL = frozenset({"halts", "gaps", "bad_ticks"})


class ScenarioError(ValueError):
    """A scenario document is malformed; the message names the offending field or tick."""


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """A daily stretch of local time; ``end <= start`` means it runs past midnight."""

    start: time
    end: time

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class SessionHours:
    """When a symbol trades, in its exchange's local time.

    A window that wraps midnight belongs to the trading day on which it ends, so CME
    futures (``18:00-17:00`` on Mon-Fri) are open from Sunday 18:00 to Friday 17:00.
    Holidays are not modelled: a scenario covers a known day.
    """

    timezone: str
    regular: SessionWindow | None
    pre: SessionWindow | None = None
    post: SessionWindow | None = None
    days: frozenset[int] = frozenset(range(5))  # Monday=0

    def session_at(self, when: datetime) -> MarketSession:
        if when.tzinfo is None:
            raise ValueError("session lookups need an aware datetime")
        local = when.astimezone(ZoneInfo(self.timezone))
        clock = local.time().replace(tzinfo=None)
        weekday = local.weekday()
        for session, window in (
            (MarketSession.REGULAR, self.regular),
            (MarketSession.PRE, self.pre),
            (MarketSession.POST, self.post),
        ):
            if window is not None and self._inside(window, clock, weekday):
                return session
        return MarketSession.CLOSED

    def trading_day(self, when: datetime) -> date:
        """The trading day ``when`` counts toward: its local date, except the evening part of a
        session that wraps midnight (CME from 18:00), which belongs to the next day."""
        local = when.astimezone(ZoneInfo(self.timezone))
        clock = local.time().replace(tzinfo=None)
        for window in (self.regular, self.pre, self.post):
            if window is not None and window.wraps and clock >= window.start:
                return local.date() + timedelta(days=1)
        return local.date()

    def _inside(self, window: SessionWindow, clock: time, weekday: int) -> bool:
        if not window.wraps:
            return weekday in self.days and window.start <= clock < window.end
        if clock >= window.start:
            return (weekday + 1) % 7 in self.days
        return clock < window.end and weekday in self.days


US_EQUITY_HOURS = SessionHours(
    timezone="America/New_York",
    pre=SessionWindow(time(4, 0), time(9, 30)),
    regular=SessionWindow(time(9, 30), time(16, 0)),
    post=SessionWindow(time(16, 0), time(20, 0)),
)
CME_FUTURES_HOURS = SessionHours(
    timezone="America/New_York",
    regular=SessionWindow(time(18, 0), time(17, 0)),
)


def default_session_hours(symbol: str) -> SessionHours:
    """Hours assumed when a reference entry gives none: CME for ``=F``, else US equities."""
    return CME_FUTURES_HOURS if symbol.endswith("=F") else US_EQUITY_HOURS


@dataclass(frozen=True, slots=True)
class Reference:
    """What a symbol is measured against: the previous regular-session close.

    ``previous_close`` is the close the scenario's first trading day is measured against.
    A multi-day file (format 2) lists ``previous_closes`` by trading day; a day that is not
    listed (a weekend tick) uses the latest listed day before it.
    """

    symbol: str
    previous_close: float
    currency: str | None
    exchange: str | None
    session_hours: SessionHours
    previous_closes: Mapping[date, float] = field(default_factory=lambda: MappingProxyType({}))

    def previous_close_on(self, day: date) -> float | None:
        """The previous close trading day ``day`` is measured against (None: not covered)."""
        if not self.previous_closes:
            return self.previous_close
        covered = [d for d in self.previous_closes if d <= day]
        return self.previous_closes[max(covered)] if covered else None

    def previous_close_at(self, when: datetime) -> float | None:
        return self.previous_close_on(self.session_hours.trading_day(when))


@dataclass(frozen=True, slots=True)
class Tick:
    """One price point; ``volume`` is the day's cumulative volume when the source gives it."""

    time: datetime
    price: float
    volume: float | None = None


@dataclass(frozen=True, slots=True)
class Halt:
    """Trading in ``symbol`` is halted in ``[start, end)``: its quotes carry ``halted``."""

    symbol: str
    start: datetime
    end: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    """The source goes silent for ``symbol`` in ``[start, end)``: ticks there are withheld and
    the last quote before it keeps being served, so it turns stale in the regular session."""

    symbol: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BadTick:
    """A broken print the data-quality gate must refuse: zero, negative, NaN or missing."""

    symbol: str
    time: datetime
    price: float | None  # None: the source sent no price at all


@dataclass(frozen=True, slots=True)
class Target:
    """A move the scenario is shaped to reach (by ``by``, else by the last tick)."""

    symbol: str
    change_pct: float
    by: datetime | None = None
    basis: str = ""


@dataclass(frozen=True, slots=True)
class Derivation:
    """How the numbers were obtained: free text, notes and the table of moves aimed at."""

    summary: str = ""
    notes: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()

    def target(self, symbol: str) -> Target | None:
        return next((t for t in self.targets if t.symbol == symbol), None)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A replayable market episode: reference closes, ticks per symbol, news, default watches."""

    name: str
    description: str
    start: datetime
    end: datetime
    reference: Mapping[str, Reference]
    ticks: Mapping[str, tuple[Tick, ...]]
    derivation: Derivation = field(default_factory=Derivation)
    news: tuple[NewsItem, ...] = ()
    default_watches: tuple[str, ...] = ()
    context_symbols: tuple[str, ...] = ()
    format: int = 1
    halts: tuple[Halt, ...] = ()
    gaps: tuple[Gap, ...] = ()
    bad_ticks: tuple[BadTick, ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.reference)

    def halted_at(self, symbol: str, when: datetime) -> bool:
        return any(h.symbol == symbol and h.start <= when < h.end for h in self.halts)

    def in_gap(self, symbol: str, when: datetime) -> bool:
        return any(g.symbol == symbol and g.start <= when < g.end for g in self.gaps)


# --- loading -------------------------------------------------------------------------------


def load_scenario(data: Mapping[str, object]) -> Scenario:
    """Validate a parsed scenario document and build a :class:`Scenario`.

    Raises :class:`ScenarioError` naming the field (``ticks.NVDA[12]``) and what is wrong.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError(f"a scenario is a JSON object, got {_kind(data)}")
    unknown = sorted(set(data) - _KNOWN_TOP_LEVEL)
    if unknown:
        raise ScenarioError(
            f"unknown top-level field(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_KNOWN_TOP_LEVEL))}"
        )
    version = data.get("format", 1)
    if isinstance(version, bool) or version not in SUPPORTED_FORMATS:
        raise ScenarioError(
            f"format: versions {' and '.join(map(str, SUPPORTED_FORMATS))} are understood, "
            f"got {version!r}"
        )
    assert isinstance(version, int)
    if version < 2:
        newer = sorted(_V2_TOP_LEVEL & set(data))
        if newer:
            raise ScenarioError(
                f'{", ".join(map(repr, newer))}: needs "format": 2 (this file says {version})'
            )

    name = _text(_required(data, "name"), "name")
    description = _text(data.get("description", ""), "description", allow_empty=True)
    start = _aware_time(_required(data, "start"), "start")
    end = _aware_time(_required(data, "end"), "end")
    if end <= start:
        raise ScenarioError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")

    reference = _load_reference(_required(data, "reference"), version, start)
    ticks = _load_ticks(_required(data, "ticks"), reference, start, end)
    halts = tuple(
        Halt(symbol, a, b, reason)
        for symbol, a, b, reason in _load_spans(data.get("halts", []), "halts", reference, start)
    )
    gaps = tuple(
        Gap(symbol, a, b)
        for symbol, a, b, _ in _load_spans(data.get("gaps", []), "gaps", reference, start)
    )
    bad_ticks = _load_bad_ticks(data.get("bad_ticks", []), reference, ticks, start, end)
    news = _load_news(data.get("news", []), reference, name, start)
    watches = _string_list(data.get("default_watches", []), "default_watches")
    context = _string_list(data.get("context_symbols", []), "context_symbols")
    for i, symbol in enumerate(context):
        _known_symbol(symbol, reference, f"context_symbols[{i}]")
    derivation = _load_derivation(data.get("derivation", ""), reference, start)

    return Scenario(
        name=name,
        description=description,
        start=start,
        end=end,
        reference=MappingProxyType(reference),
        ticks=MappingProxyType(ticks),
        derivation=derivation,
        news=news,
        default_watches=watches,
        context_symbols=context,
        format=version,
        halts=halts,
        gaps=gaps,
        bad_ticks=bad_ticks,
    )


def _load_reference(raw: object, version: int, start: datetime) -> dict[str, Reference]:
    entries = _mapping(raw, "reference")
    if not entries:
        raise ScenarioError("reference: needs at least one symbol")
    out: dict[str, Reference] = {}
    for symbol, value in entries.items():
        where = f"reference.{symbol}"
        _check_symbol(symbol, where)
        entry = _mapping(value, where)
        known = {"previous_close", "currency", "exchange", "session_hours"}
        if version >= 2:
            known.add("previous_closes")
        extra = sorted(set(entry) - known)
        if extra:
            hint = " ('previous_closes' needs \"format\": 2)" if "previous_closes" in extra else ""
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}{hint}")
        hours_raw = entry.get("session_hours")
        hours = (
            default_session_hours(symbol)
            if hours_raw is None
            else _load_session_hours(hours_raw, f"{where}.session_hours")
        )
        by_day: dict[date, float] = {}
        if "previous_closes" in entry:
            if "previous_close" in entry:
                raise ScenarioError(
                    f"{where}: give 'previous_close' (one day) or 'previous_closes' "
                    "(by trading day), not both"
                )
            by_day = _load_closes(entry["previous_closes"], f"{where}.previous_closes")
            first_day = hours.trading_day(start)
            covered = [d for d in by_day if d <= first_day]
            close = by_day[max(covered)] if covered else by_day[min(by_day)]
        else:
            close = _positive(_required(entry, "previous_close", where), f"{where}.previous_close")
        out[symbol] = Reference(
            symbol=symbol,
            previous_close=close,
            currency=_optional_text(entry.get("currency"), f"{where}.currency"),
            exchange=_optional_text(entry.get("exchange"), f"{where}.exchange"),
            session_hours=hours,
            previous_closes=MappingProxyType(dict(sorted(by_day.items()))),
        )
    return out


def _load_closes(raw: object, where: str) -> dict[date, float]:
    entries = _mapping(raw, where)
    if not entries:
        raise ScenarioError(f"{where}: needs at least one 'YYYY-MM-DD': close entry")
    out: dict[date, float] = {}
    for day_text, value in entries.items():
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ScenarioError(
                f"{where}: {day_text!r} is not a trading day like '2025-01-27'"
            ) from None
        out[day] = _positive(value, f"{where}.{day_text}")
    return out


def _load_spans(
    raw: object, where: str, reference: Mapping[str, Reference], start: datetime
) -> list[tuple[str, datetime, datetime, str]]:
    """``halts`` and ``gaps``: ``{"symbol", "start", "end"[, "reason"]}`` entries."""
    if not isinstance(raw, list):
        raise ScenarioError(f"{where}: expected a list, got {_kind(raw)}")
    out: list[tuple[str, datetime, datetime, str]] = []
    for i, value in enumerate(raw):
        here = f"{where}[{i}]"
        entry = _mapping(value, here)
        allowed = (
            {"symbol", "start", "end", "reason"} if where == "halts" else {"symbol", "start", "end"}
        )
        extra = sorted(set(entry) - allowed)
        if extra:
            raise ScenarioError(f"{here}: unknown field(s) {', '.join(map(repr, extra))}")
        symbol = _text(_required(entry, "symbol", here), f"{here}.symbol")
        _known_symbol(symbol, reference, f"{here}.symbol")
        a = _time_or_offset(_required(entry, "start", here), f"{here}.start", start)
        b = _time_or_offset(_required(entry, "end", here), f"{here}.end", start)
        if b <= a:
            raise ScenarioError(f"{here}: end ({b.isoformat()}) must be after start")
        reason = _text(entry.get("reason", ""), f"{here}.reason", allow_empty=True)
        out.append((symbol, a, b, reason))
    return out


def _load_bad_ticks(
    raw: object,
    reference: Mapping[str, Reference],
    ticks: Mapping[str, tuple[Tick, ...]],
    start: datetime,
    end: datetime,
) -> tuple[BadTick, ...]:
    """Broken prints, kept apart from ``ticks`` so a typo there is still refused."""
    if not isinstance(raw, list):
        raise ScenarioError(f"bad_ticks: expected a list, got {_kind(raw)}")
    out: list[BadTick] = []
    for i, value in enumerate(raw):
        where = f"bad_ticks[{i}]"
        entry = _mapping(value, where)
        extra = sorted(set(entry) - {"symbol", "time", "price"})
        if extra:
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}")
        symbol = _text(_required(entry, "symbol", where), f"{where}.symbol")
        _known_symbol(symbol, reference, f"{where}.symbol")
        when = _time_or_offset(_required(entry, "time", where), f"{where}.time", start)
        if not start <= when <= end:
            raise ScenarioError(f"{where}.time: {when.isoformat()} is outside start..end")
        if any(t.time == when for t in ticks[symbol]):
            raise ScenarioError(f"{where}.time: {symbol} already has a tick at {when.isoformat()}")
        price = _bad_price(_required(entry, "price", where), f"{where}.price")
        out.append(BadTick(symbol, when, price))
    out.sort(key=lambda b: b.time)
    return tuple(out)


def _bad_price(raw: object, where: str) -> float | None:
    # JSON has no NaN: "NaN" (a string) stands for it, null for a missing price.
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().lower() == "nan":
        return math.nan
    value = _number(raw, where)
    if value > 0:
        raise ScenarioError(
            f'{where}: {value:g} is a good price; a bad tick is 0, negative, "NaN" or null'
        )
    return value


def _load_session_hours(raw: object, where: str) -> SessionHours:
    entry = _mapping(raw, where)
    extra = sorted(set(entry) - {"timezone", "pre", "regular", "post", "days"})
    if extra:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}")
    tz = _text(_required(entry, "timezone", where), f"{where}.timezone")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScenarioError(f"{where}.timezone: unknown time zone {tz!r}") from None
    windows = {
        key: None if entry.get(key) is None else _window(entry[key], f"{where}.{key}")
        for key in ("pre", "regular", "post")
    }
    if all(w is None for w in windows.values()):
        raise ScenarioError(f"{where}: give at least one of 'pre', 'regular', 'post'")
    days = _days(entry.get("days", "mon-fri"), f"{where}.days")
    return SessionHours(
        timezone=tz, pre=windows["pre"], regular=windows["regular"], post=windows["post"], days=days
    )


def _window(raw: object, where: str) -> SessionWindow:
    match = _WINDOW_RE.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ScenarioError(f"{where}: expected 'HH:MM-HH:MM' (e.g. '09:30-16:00'), got {raw!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ScenarioError(f"{where}: {raw!r} is not a valid time range")
    return SessionWindow(time(h1, m1), time(h2, m2))


def _days(raw: object, where: str) -> frozenset[int]:
    if isinstance(raw, str) and "-" in raw:
        first, _, last = raw.partition("-")
        a, b = _day_index(first, where), _day_index(last, where)
        if b < a:
            raise ScenarioError(f"{where}: range {raw!r} runs backwards")
        return frozenset(range(a, b + 1))
    if isinstance(raw, list) and raw:
        return frozenset(_day_index(d, f"{where}[{i}]") for i, d in enumerate(raw))
    raise ScenarioError(f"{where}: expected 'mon-fri' or a list like ['mon', 'tue'], got {raw!r}")


def _day_index(raw: object, where: str) -> int:
    if isinstance(raw, str) and raw.strip().lower()[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(raw.strip().lower()[:3])
    raise ScenarioError(f"{where}: {raw!r} is not a day name (mon..sun)")


def _load_ticks(
    raw: object, reference: Mapping[str, Reference], start: datetime, end: datetime
) -> dict[str, tuple[Tick, ...]]:
    series = _mapping(raw, "ticks")
    out: dict[str, tuple[Tick, ...]] = {}
    for symbol, points in series.items():
        where = f"ticks.{symbol}"
        _known_symbol(symbol, reference, where)
        if not isinstance(points, list) or not points:
            raise ScenarioError(f"{where}: expected a non-empty list of [time, price] points")
        built: list[Tick] = []
        for i, point in enumerate(points):
            tick = _tick(point, f"{where}[{i}]", start)
            if not start <= tick.time <= end:
                raise ScenarioError(
                    f"{where}[{i}]: time {tick.time.isoformat()} is outside "
                    f"start..end ({start.isoformat()} .. {end.isoformat()})"
                )
            ref = reference[symbol]
            if ref.previous_close_at(tick.time) is None:
                day = ref.session_hours.trading_day(tick.time)
                raise ScenarioError(
                    f"{where}[{i}]: no previous close for trading day {day.isoformat()}; "
                    f"reference.{symbol}.previous_closes starts at {min(ref.previous_closes)}"
                )
            if built:
                prev = built[-1]
                if tick.time <= prev.time:
                    raise ScenarioError(
                        f"{where}[{i}]: time {tick.time.isoformat()} is not after the previous "
                        f"point's {prev.time.isoformat()} (times must increase)"
                    )
                if (
                    tick.volume is not None
                    and prev.volume is not None
                    and tick.volume < prev.volume
                ):
                    raise ScenarioError(
                        f"{where}[{i}]: volume {tick.volume:g} is below the previous "
                        f"{prev.volume:g} (it is the day's cumulative volume)"
                    )
            built.append(tick)
        out[symbol] = tuple(built)
    missing = [s for s in reference if s not in out]
    if missing:
        raise ScenarioError(f"ticks: no points for {', '.join(missing)} (listed in reference)")
    return out


def _tick(raw: object, where: str, start: datetime) -> Tick:
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise ScenarioError(
            f"{where}: expected [time, price] or [time, price, volume], got {raw!r}"
        )
    when = _time_or_offset(raw[0], f"{where} time", start)
    price = _positive(raw[1], f"{where} price")
    volume = None
    if len(raw) == 3:
        volume = _number(raw[2], f"{where} volume")
        if volume < 0:
            raise ScenarioError(f"{where} volume: must not be negative, got {volume:g}")
    return Tick(when, price, volume)


def _load_news(
    raw: object, reference: Mapping[str, Reference], scenario: str, start: datetime
) -> tuple[NewsItem, ...]:
    if not isinstance(raw, list):
        raise ScenarioError(f"news: expected a list, got {_kind(raw)}")
    items: list[NewsItem] = []
    for i, value in enumerate(raw):
        where = f"news[{i}]"
        entry = _mapping(value, where)
        extra = sorted(set(entry) - {"time", "title", "url", "source", "symbols"})
        if extra:
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}")
        when = _time_or_offset(_required(entry, "time", where), f"{where}.time", start)
        title = _text(_required(entry, "title", where), f"{where}.title")
        symbols = _string_list(entry.get("symbols", []), f"{where}.symbols")
        for j, symbol in enumerate(symbols):
            _known_symbol(symbol, reference, f"{where}.symbols[{j}]")
        # Stable across edits elsewhere in the file, so a pipeline sees each story once.
        digest = hashlib.sha1(f"{when.isoformat()}|{title}".encode()).hexdigest()[:12]
        items.append(
            NewsItem(
                key=f"scenario:{scenario}:{digest}",
                title=title,
                published=when,
                url=_optional_text(entry.get("url"), f"{where}.url"),
                source=_optional_text(entry.get("source"), f"{where}.source"),
                symbols=symbols,
            )
        )
    items.sort(key=lambda n: n.published)
    return tuple(items)


def _load_derivation(
    raw: object, reference: Mapping[str, Reference], start: datetime
) -> Derivation:
    if isinstance(raw, str):
        return Derivation(summary=raw)
    entry = _mapping(raw, "derivation")
    extra = sorted(set(entry) - {"summary", "notes", "targets"})
    if extra:
        raise ScenarioError(f"derivation: unknown field(s) {', '.join(map(repr, extra))}")
    targets: list[Target] = []
    for symbol, value in _mapping(entry.get("targets", {}), "derivation.targets").items():
        where = f"derivation.targets.{symbol}"
        _known_symbol(symbol, reference, where)
        t = _mapping(value, where)
        by_raw = t.get("by")
        targets.append(
            Target(
                symbol=symbol,
                change_pct=_number(_required(t, "change_pct", where), f"{where}.change_pct"),
                by=None if by_raw is None else _time_or_offset(by_raw, f"{where}.by", start),
                basis=_text(t.get("basis", ""), f"{where}.basis", allow_empty=True),
            )
        )
    return Derivation(
        summary=_text(entry.get("summary", ""), "derivation.summary", allow_empty=True),
        notes=_string_list(entry.get("notes", []), "derivation.notes"),
        targets=tuple(targets),
    )


# --- small validators ----------------------------------------------------------------------


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _required(entry: Mapping[str, object], key: str, where: str = "") -> object:
    if key not in entry:
        raise ScenarioError(f"{where + '.' if where else ''}{key}: missing required field")
    return entry[key]


def _mapping(raw: object, where: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected an object, got {_kind(raw)}")
    return raw


def _text(raw: object, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(raw, str):
        raise ScenarioError(f"{where}: expected a string, got {_kind(raw)}")
    if not allow_empty and not raw.strip():
        raise ScenarioError(f"{where}: must not be empty")
    return raw


def _optional_text(raw: object, where: str) -> str | None:
    return None if raw is None else _text(raw, where)


def _string_list(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ScenarioError(f"{where}: expected a list of strings, got {_kind(raw)}")
    return tuple(_text(v, f"{where}[{i}]") for i, v in enumerate(raw))


def _number(raw: object, where: str) -> float:
    # bool is an int subclass; true/false as a price is a typo, not a number.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ScenarioError(f"{where}: expected a number, got {_kind(raw)} {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: must be a finite number, got {raw!r}")
    return value


def _positive(raw: object, where: str) -> float:
    value = _number(raw, where)
    if value <= 0:
        raise ScenarioError(f"{where}: must be positive, got {value:g}")
    return value


def _check_symbol(symbol: str, where: str) -> None:
    if not _SYMBOL_RE.match(symbol):
        raise ScenarioError(
            f"{where}: {symbol!r} is not a Yahoo symbol (upper case, like NVDA, NQ=F, ASML.AS)"
        )


def _known_symbol(symbol: str, reference: Mapping[str, Reference], where: str) -> None:
    if symbol not in reference:
        raise ScenarioError(
            f"{where}: unknown symbol {symbol!r}; every symbol needs a 'reference' entry "
            f"(known: {', '.join(reference)})"
        )


def _aware_time(raw: object, where: str) -> datetime:
    if not isinstance(raw, str):
        raise ScenarioError(f"{where}: expected an ISO time string, got {_kind(raw)}")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ScenarioError(
            f"{where}: {raw!r} is not an ISO time (like 2025-01-27T04:00:00-05:00)"
        ) from None
    if when.tzinfo is None:
        raise ScenarioError(f"{where}: {raw!r} has no UTC offset; write e.g. {raw}-05:00 or {raw}Z")
    return when


def _time_or_offset(raw: object, where: str, start: datetime) -> datetime:
    """An ISO time string, or a number of seconds after the scenario's ``start``."""
    if isinstance(raw, str):
        return _aware_time(raw, where)
    seconds = _number(raw, where)
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        raise ScenarioError(f"{where}: offset {seconds:g} s is out of range") from None


def change_pct(price: float, previous_close: float) -> float:
    """Percent move of ``price`` against ``previous_close``."""
    return (price / previous_close - 1.0) * 100.0


def latest_at(ticks: Sequence[Tick], when: datetime) -> Tick | None:
    """The last tick at or before ``when`` (ticks are in time order), or None."""
    lo, hi = 0, len(ticks)
    while lo < hi:
        mid = (lo + hi) // 2
        if ticks[mid].time <= when:
            lo = mid + 1
        else:
            hi = mid
    return ticks[lo - 1] if lo else None
