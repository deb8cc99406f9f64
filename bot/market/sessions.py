"""Which trading session a Yahoo symbol is in at a given instant, from exchange calendars."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import exchange_calendars as xc
import pandas as pd

from alerts.models import MarketSession

NEW_YORK = ZoneInfo("America/New_York")

# US extended hours as Yahoo reports them (premarket 04:00, after-hours until 20:00 ET).
_US_PRE_START = time(4, 0)
_US_POST_END = time(20, 0)
# After an early close (13:00 ET) the after-hours session still lasts four hours, not till 20:00.
_US_POST_LENGTH = timedelta(hours=4)
# CME Globex equity/commodity futures: trading day D runs 18:00 ET on D-1 to 17:00 ET on D.
_CME_DAILY_CLOSE = time(17, 0)
_FX_WEEK_OPEN = time(17, 0)  # Sunday 17:00 ET to Friday 17:00 ET

_SEARCH_DAYS = 20  # longest stretch without a session on any calendar we use (holiday runs)


class Venue(StrEnum):
    US_EQUITY = "us_equity"  # XNYS calendar plus pre/post market
    EXCHANGE = "exchange"  # regular hours of one exchange calendar only
    CME_FUTURE = "cme_future"
    FX = "fx"
    CRYPTO = "crypto"


@dataclass(frozen=True, slots=True)
class Listing:
    """Where a symbol trades: the venue kind and the exchange_calendars name behind it."""

    symbol: str
    venue: Venue
    calendar: str | None


# Yahoo suffix -> ISO MIC of the exchange calendar.
SUFFIX_CALENDARS: dict[str, str] = {
    "AS": "XAMS",
    "L": "XLON",
    "IL": "XLON",
    "DE": "XETR",
    "F": "XFRA",
    "BE": "XFRA",
    "DU": "XDUS",
    "HM": "XHAM",
    "SG": "XSTU",
    "PA": "XPAR",
    "BR": "XBRU",
    "LS": "XLIS",
    "IR": "XDUB",
    "MI": "XMIL",
    "MC": "XMAD",
    "SW": "XSWX",
    "VI": "XWBO",
    "CO": "XCSE",
    "ST": "XSTO",
    "HE": "XHEL",
    "OL": "XOSL",
    "TO": "XTSE",
    "V": "XTSX",
    "T": "XTKS",
    "HK": "XHKG",
    "AX": "XASX",
    "NZ": "XNZE",
    "SI": "XSES",
    "KS": "XKRX",
    "TW": "XTAI",
    "SS": "XSHG",
    "NS": "XBOM",
    "BO": "XBOM",
    "JO": "XJSE",
    "MX": "XMEX",
    "WA": "XWAR",
    "IS": "XIST",
    "TA": "XTAE",
    "JK": "XIDX",
}

# Non-US indices and where their constituents trade; any other ``^`` index is taken as US.
INDEX_CALENDARS: dict[str, str] = {
    "^FTSE": "XLON",
    "^GDAXI": "XETR",
    "^FCHI": "XPAR",
    "^AEX": "XAMS",
    "^STOXX50E": "XETR",
    "^IBEX": "XMAD",
    "^SSMI": "XSWX",
    "^N225": "XTKS",
    "^HSI": "XHKG",
    "^AXJO": "XASX",
    "^GSPTSE": "XTSE",
    "^KS11": "XKRX",
}

_FIAT = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "CNY", "HKD", "KRW", "INR", "BRL"}


def listing(symbol: str) -> Listing:
    """Classify a Yahoo symbol: NVDA, ASML.AS, NQ=F, EURUSD=X, BTC-USD, ^VIX."""
    sym = symbol.upper()
    if sym.endswith("=F"):
        return Listing(sym, Venue.CME_FUTURE, "CMES")
    if sym.endswith("=X"):
        return Listing(sym, Venue.FX, None)
    if sym.startswith("^"):
        return Listing(sym, Venue.EXCHANGE, INDEX_CALENDARS.get(sym, "XNYS"))
    if "-" in sym:
        base, _, quote = sym.rpartition("-")
        # BRK-B is a share class; BTC-USD is a coin priced in a fiat currency.
        if quote in _FIAT and len(base) >= 2:
            return Listing(sym, Venue.CRYPTO, None)
    if "." in sym:
        suffix = sym.rsplit(".", 1)[1]
        cal = SUFFIX_CALENDARS.get(suffix)
        if cal is not None:
            return Listing(sym, Venue.EXCHANGE, cal)
    return Listing(sym, Venue.US_EQUITY, "XNYS")


_calendars: dict[str, xc.ExchangeCalendar] = {}
_calendars_lock = threading.Lock()


def _calendar(name: str) -> xc.ExchangeCalendar:
    """The calendar called ``name``, built once per process.

    Under a lock, not ``functools.cache``: building one takes ~0.15 s of CPU (pandas works
    out decades of holidays), and the lanes of a worker render on threads, so its first
    alerts each built their own copy at once (5 per process, measured).
    """
    cal = _calendars.get(name)
    if cal is None:
        with _calendars_lock:
            cal = _calendars.get(name)
            if cal is None:
                cal = _calendars[name] = xc.get_calendar(name)
    return cal


@dataclass(frozen=True, slots=True)
class _Day:
    open: datetime
    close: datetime
    break_start: datetime | None
    break_end: datetime | None


def _ts(value: object) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    assert isinstance(value, pd.Timestamp)
    result: datetime = value.to_pydatetime().astimezone(UTC)
    return result


@functools.lru_cache(maxsize=16384)
def _day(cal_name: str, day: date) -> _Day | None:
    """The session of ``day`` on a calendar, or None when the exchange does not trade that day."""
    cal = _calendar(cal_name)
    label = pd.Timestamp(day)
    if label < cal.first_session or label > cal.last_session or not cal.is_session(label):
        return None
    row = cal.schedule.loc[label]
    open_, close = _ts(row["open"]), _ts(row["close"])
    assert open_ is not None
    assert close is not None
    return _Day(open_, close, _ts(row["break_start"]), _ts(row["break_end"]))


@dataclass(frozen=True, slots=True)
class Window:
    """One contiguous stretch of a trading day with its session label."""

    start: datetime
    end: datetime
    session: MarketSession


def _windows_for_day(lst: Listing, day: date) -> list[Window]:
    """Non-closed windows that belong to trading day ``day`` (may start the evening before)."""
    if lst.venue is Venue.US_EQUITY:
        d = _day("XNYS", day)
        if d is None:
            return []
        pre = datetime.combine(day, _US_PRE_START, NEW_YORK).astimezone(UTC)
        post_cap = datetime.combine(day, _US_POST_END, NEW_YORK).astimezone(UTC)
        post = min(d.close + _US_POST_LENGTH, post_cap)
        return [
            Window(pre, d.open, MarketSession.PRE),
            Window(d.open, d.close, MarketSession.REGULAR),
            Window(d.close, post, MarketSession.POST),
        ]
    if lst.venue is Venue.EXCHANGE:
        assert lst.calendar is not None
        d = _day(lst.calendar, day)
        if d is None:
            return []
        if d.break_start is not None and d.break_end is not None:
            return [
                Window(d.open, d.break_start, MarketSession.REGULAR),
                Window(d.break_end, d.close, MarketSession.REGULAR),
            ]
        return [Window(d.open, d.close, MarketSession.REGULAR)]
    if lst.venue is Venue.CME_FUTURE:
        d = _day("CMES", day)
        if d is None:
            return []
        # exchange_calendars gives the Globex open (18:00 ET the evening before) and the
        # holiday early closes; its regular close is an hour late for the daily break.
        daily_close = datetime.combine(day, _CME_DAILY_CLOSE, NEW_YORK).astimezone(UTC)
        return [Window(d.open, min(d.close, daily_close), MarketSession.REGULAR)]
    if lst.venue is Venue.FX:
        if day.weekday() >= 5:
            return []
        close = datetime.combine(day, _FX_WEEK_OPEN, NEW_YORK).astimezone(UTC)
        # Each weekday's FX session opens at 17:00 ET the day before (Sunday for Monday).
        open_ = datetime.combine(day - timedelta(days=1), _FX_WEEK_OPEN, NEW_YORK)
        return [Window(open_.astimezone(UTC), close, MarketSession.REGULAR)]
    # Crypto never closes.
    start = datetime.combine(day, time(0), UTC)
    return [Window(start, start + timedelta(days=1), MarketSession.REGULAR)]


def exchange_zone(symbol: str) -> ZoneInfo:
    """The time zone a symbol's trading day is counted in (its exchange's; New York for US)."""
    lst = listing(symbol)
    if lst.calendar is not None and lst.venue is Venue.EXCHANGE:
        return ZoneInfo(str(_calendar(lst.calendar).tz))
    if lst.venue is Venue.CRYPTO:
        return ZoneInfo("UTC")
    return NEW_YORK


def _local_day(lst: Listing, when: datetime) -> date:
    if lst.calendar is not None and lst.venue is Venue.EXCHANGE:
        tz = ZoneInfo(str(_calendar(lst.calendar).tz))
        return when.astimezone(tz).date()
    if lst.venue is Venue.CRYPTO:
        return when.astimezone(UTC).date()
    return when.astimezone(NEW_YORK).date()


def _check_aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("session lookups need an aware datetime")
    return when.astimezone(UTC)


def session_at(symbol: str, when: datetime) -> MarketSession:
    """The session ``symbol`` is in at ``when`` (pre, regular, post or closed)."""
    when = _check_aware(when)
    lst = listing(symbol)
    today = _local_day(lst, when)
    # The evening session of a futures/FX trading day belongs to the next calendar day.
    for day in (today, today + timedelta(days=1)):
        for w in _windows_for_day(lst, day):
            if w.start <= when < w.end:
                return w.session
    return MarketSession.CLOSED


def is_open(symbol: str, when: datetime) -> bool:
    """True in any non-closed session, premarket and after-hours included."""
    return session_at(symbol, when) is not MarketSession.CLOSED


def next_open(symbol: str, after: datetime) -> datetime:
    """The first instant at or after ``after`` at which ``symbol`` is in any open session."""
    after = _check_aware(after)
    lst = listing(symbol)
    today = _local_day(lst, after)
    for offset in range(-1, _SEARCH_DAYS * 20):
        for w in _windows_for_day(lst, today + timedelta(days=offset)):
            if w.end > after and w.end > w.start:
                return max(w.start, after)
    raise ValueError(f"no session for {symbol} after {after.isoformat()} within the calendar")


def next_close(symbol: str, after: datetime) -> datetime:
    """The first instant after ``after`` at which the current open stretch ends."""
    after = _check_aware(after)
    lst = listing(symbol)
    today = _local_day(lst, after)
    end: datetime | None = None
    for offset in range(-1, _SEARCH_DAYS):
        for w in _windows_for_day(lst, today + timedelta(days=offset)):
            if w.end <= after or w.end <= w.start:
                continue
            if end is None:
                if w.start > after:
                    return after
                end = w.end
            elif w.start <= end:
                end = max(end, w.end)  # contiguous windows (pre -> regular -> post)
            else:
                return end
    if end is None:
        raise ValueError(f"no session for {symbol} after {after.isoformat()}")
    return end


def regular_session_bounds(symbol: str, day: date) -> tuple[datetime, datetime] | None:
    """Open and close of the regular session of trading day ``day``, or None if no session."""
    windows = [
        w for w in _windows_for_day(listing(symbol), day) if w.session is MarketSession.REGULAR
    ]
    if not windows:
        return None
    return windows[0].start, windows[-1].end


def previous_trading_day(symbol: str, before: date) -> date:
    """The last trading day strictly before ``before`` (whose close is the reference close)."""
    lst = listing(symbol)
    for offset in range(1, _SEARCH_DAYS):
        day = before - timedelta(days=offset)
        if _windows_for_day(lst, day):
            return day
    raise ValueError(f"no trading day for {symbol} before {before}")


def trading_day(symbol: str, when: datetime) -> date:
    """The trading day label ``when`` belongs to (futures evenings count toward the next day)."""
    when = _check_aware(when)
    lst = listing(symbol)
    today = _local_day(lst, when)
    for day in (today, today + timedelta(days=1)):
        for w in _windows_for_day(lst, day):
            if w.start <= when < w.end:
                return day
    return today
