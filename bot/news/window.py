"""Since when a headline can explain today's move: the previous regular close (NYSE calendar)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.market import sessions

CALENDAR_SYMBOL = "SPY"  # any NYSE listing: the exchange calendar decides
FALLBACK = timedelta(hours=24)


def since_previous_close(now: datetime, symbol: str = CALENDAR_SYMBOL) -> datetime:
    """The close of the last regular session before the trading day ``now`` belongs to.

    Monday premarket -> Friday 16:00 ET, so weekend news counts; a holiday or an early close
    comes from exchange_calendars. A move is measured against that same close.
    """
    try:
        day = sessions.trading_day(symbol, now)
        previous = sessions.previous_trading_day(symbol, day)
        bounds = sessions.regular_session_bounds(symbol, previous)
    except ValueError:
        return now - FALLBACK
    if bounds is None or bounds[1] > now:
        return now - FALLBACK
    return bounds[1]
