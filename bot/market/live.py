"""Builds the live Yahoo market source from settings."""

from __future__ import annotations

from alerts.ports import Clock
from bot.market.source import YahooMarketData
from bot.market.timer import Sleep, real_sleep
from bot.settings import Settings


def build_market_source(
    settings: Settings, clock: Clock, *, sleep: Sleep = real_sleep
) -> YahooMarketData:
    """``sleep`` is the runtime's: wall time live, simulated time when tests drive the clock."""
    return YahooMarketData.from_settings(
        clock=clock,
        yahoo_base_url=settings.yahoo.base_url,
        yahoo_stream_url=settings.yahoo.stream_url,
        poll_interval=settings.yahoo.poll_interval_seconds,
        timeout=settings.yahoo.timeout_seconds,
        stream_enabled=settings.yahoo.stream_enabled,
        sleep=sleep,
    )
