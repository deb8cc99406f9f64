"""Calendar cases: holidays, early closes, DST weeks, foreign listings, CME futures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.models import MarketSession as S
from bot.market.sessions import (
    Venue,
    is_open,
    listing,
    next_close,
    next_open,
    previous_trading_day,
    session_at,
    trading_day,
)

ET = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")


def et(*a: int) -> datetime:
    return datetime(*a, tzinfo=ET)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("symbol", "venue", "calendar"),
    [
        ("NVDA", Venue.US_EQUITY, "XNYS"),
        ("BRK-B", Venue.US_EQUITY, "XNYS"),
        ("ASML.AS", Venue.EXCHANGE, "XAMS"),
        ("OCDO.L", Venue.EXCHANGE, "XLON"),
        ("SAP.DE", Venue.EXCHANGE, "XETR"),
        ("MC.PA", Venue.EXCHANGE, "XPAR"),
        ("SHOP.TO", Venue.EXCHANGE, "XTSE"),
        ("NQ=F", Venue.CME_FUTURE, "CMES"),
        ("EURUSD=X", Venue.FX, None),
        ("BTC-USD", Venue.CRYPTO, None),
        ("^VIX", Venue.EXCHANGE, "XNYS"),
        ("^FTSE", Venue.EXCHANGE, "XLON"),
    ],
)
def test_listing_by_suffix(symbol: str, venue: Venue, calendar: str | None) -> None:
    got = listing(symbol)
    assert (got.venue, got.calendar) == (venue, calendar)


def test_2025_01_09_nyse_closed_all_day() -> None:
    for hour in (5, 10, 17):
        assert session_at("NVDA", et(2025, 1, 9, hour)) is S.CLOSED
    # The day before and after are ordinary.
    assert session_at("NVDA", et(2025, 1, 8, 10)) is S.REGULAR
    assert next_open("NVDA", et(2025, 1, 9, 12)) == et(2025, 1, 10, 4, 0)
    assert previous_trading_day("NVDA", date(2025, 1, 10)) == date(2025, 1, 8)


def test_2025_04_18_good_friday_stocks_and_futures_closed() -> None:
    assert session_at("AAPL", et(2025, 4, 18, 10)) is S.CLOSED
    assert session_at("ES=F", et(2025, 4, 18, 10)) is S.CLOSED
    assert next_open("AAPL", et(2025, 4, 18, 10)) == et(2025, 4, 21, 4, 0)
    # Futures reopen Sunday evening for Monday's trade date.
    assert next_open("ES=F", et(2025, 4, 18, 10)) == et(2025, 4, 20, 18, 0)


def test_2025_11_28_early_close_then_shortened_after_hours() -> None:
    assert session_at("NVDA", et(2025, 11, 28, 12, 59)) is S.REGULAR
    assert session_at("NVDA", et(2025, 11, 28, 13, 0)) is S.POST
    assert session_at("NVDA", et(2025, 11, 28, 16, 59)) is S.POST
    assert session_at("NVDA", et(2025, 11, 28, 17, 0)) is S.CLOSED
    assert next_close("NVDA", et(2025, 11, 28, 10)) == et(2025, 11, 28, 17, 0)
    # An ordinary day: regular until 16:00, post until 20:00.
    assert session_at("NVDA", et(2025, 11, 26, 15, 59)) is S.REGULAR
    assert session_at("NVDA", et(2025, 11, 26, 19, 59)) is S.POST


def test_dst_week_2025_03_10_open_moves_an_hour_in_utc() -> None:
    # Friday before the switch: 09:30 EST = 14:30 UTC; Monday after: 09:30 EDT = 13:30 UTC.
    assert session_at("NVDA", datetime(2025, 3, 7, 13, 45, tzinfo=UTC)) is S.PRE
    assert session_at("NVDA", datetime(2025, 3, 7, 14, 30, tzinfo=UTC)) is S.REGULAR
    assert session_at("NVDA", datetime(2025, 3, 10, 13, 45, tzinfo=UTC)) is S.REGULAR
    assert session_at("NVDA", datetime(2025, 3, 10, 8, 0, tzinfo=UTC)) is S.PRE  # 04:00 EDT
    assert session_at("NVDA", datetime(2025, 3, 7, 8, 30, tzinfo=UTC)) is S.CLOSED  # 03:30 EST
    # Europe switches three weeks later: Amsterdam still opens 08:00 UTC that week.
    assert session_at("ASML.AS", datetime(2025, 3, 10, 7, 59, tzinfo=UTC)) is S.CLOSED
    assert session_at("ASML.AS", datetime(2025, 3, 10, 8, 0, tzinfo=UTC)) is S.REGULAR


def test_dst_week_2025_11_03_back_to_standard_time() -> None:
    assert session_at("NVDA", datetime(2025, 10, 31, 14, 0, tzinfo=UTC)) is S.REGULAR  # 10:00 EDT
    assert session_at("NVDA", datetime(2025, 11, 3, 14, 0, tzinfo=UTC)) is S.PRE  # 09:00 EST
    assert session_at("NVDA", datetime(2025, 11, 3, 14, 30, tzinfo=UTC)) is S.REGULAR
    assert session_at("NVDA", datetime(2025, 11, 4, 0, 59, tzinfo=UTC)) is S.POST  # 19:59 EST
    assert session_at("NVDA", datetime(2025, 11, 4, 1, 0, tzinfo=UTC)) is S.CLOSED


def test_asml_as_trades_on_amsterdam_hours_not_new_york() -> None:
    day = (2025, 1, 27)
    assert session_at("ASML.AS", datetime(*day, 8, 59, tzinfo=AMS)) is S.CLOSED
    assert session_at("ASML.AS", datetime(*day, 9, 0, tzinfo=AMS)) is S.REGULAR
    assert session_at("ASML.AS", datetime(*day, 17, 29, tzinfo=AMS)) is S.REGULAR
    assert session_at("ASML.AS", datetime(*day, 17, 30, tzinfo=AMS)) is S.CLOSED
    # 04:00 ET: ASML.AS is already in its regular session while ASML (US) is premarket.
    assert session_at("ASML.AS", et(*day, 4)) is S.REGULAR
    assert session_at("ASML", et(*day, 4)) is S.PRE
    # No US-style extended hours for a European listing.
    assert session_at("ASML.AS", et(*day, 14)) is S.CLOSED
    assert next_open("ASML.AS", et(*day, 14)) == datetime(2025, 1, 28, 9, 0, tzinfo=AMS)


def test_sunday_evening_futures_open_and_daily_break() -> None:
    assert session_at("NQ=F", et(2025, 1, 25, 12)) is S.CLOSED  # Saturday
    assert session_at("NQ=F", et(2025, 1, 26, 17, 59)) is S.CLOSED
    assert session_at("NQ=F", et(2025, 1, 26, 18, 0)) is S.REGULAR
    assert next_open("NQ=F", et(2025, 1, 25, 12)) == et(2025, 1, 26, 18, 0)
    assert trading_day("NQ=F", et(2025, 1, 26, 20)) == date(2025, 1, 27)
    # Daily maintenance break 17:00-18:00 ET.
    assert session_at("NQ=F", et(2025, 1, 27, 16, 59)) is S.REGULAR
    assert session_at("NQ=F", et(2025, 1, 27, 17, 30)) is S.CLOSED
    assert next_open("NQ=F", et(2025, 1, 27, 17, 30)) == et(2025, 1, 27, 18, 0)
    # Friday 17:00 closes the week.
    assert session_at("NQ=F", et(2025, 1, 31, 17, 30)) is S.CLOSED
    assert next_open("NQ=F", et(2025, 1, 31, 17, 30)) == et(2025, 2, 2, 18, 0)


def test_deepseek_morning_premarket_open_for_us_names() -> None:
    assert session_at("NVDA", et(2025, 1, 27, 4, 0)) is S.PRE
    assert session_at("NVDA", et(2025, 1, 27, 3, 59)) is S.CLOSED
    assert is_open("NVDA", et(2025, 1, 27, 9, 0))


def test_indices_have_no_extended_hours_and_fx_crypto_hours() -> None:
    assert session_at("^GSPC", et(2025, 1, 27, 9, 0)) is S.CLOSED
    assert session_at("^GSPC", et(2025, 1, 27, 9, 30)) is S.REGULAR
    assert session_at("EURUSD=X", et(2025, 1, 25, 12)) is S.CLOSED
    assert session_at("EURUSD=X", et(2025, 1, 26, 17, 0)) is S.REGULAR
    assert session_at("BTC-USD", et(2025, 1, 25, 3)) is S.REGULAR


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        session_at("NVDA", datetime(2025, 1, 27, 9))


def test_a_calendar_is_built_once_by_threads_asking_for_it_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker's lanes render on threads: its first alerts used to build XNYS once each
    # (~0.15 s of CPU apiece, 5 per process measured).
    import threading
    import time

    from bot.market import sessions

    built: list[str] = []

    def slow_build(name: str) -> object:
        built.append(name)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(sessions.xc, "get_calendar", slow_build)
    monkeypatch.setattr(sessions, "_calendars", {})
    start = threading.Barrier(4)
    got: list[object] = []

    def ask() -> None:
        start.wait()
        got.append(sessions._calendar("XTEST"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == ["XTEST"]
    assert len({id(cal) for cal in got}) == 1
