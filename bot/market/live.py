"""Feeds the pipeline from live Yahoo data: batches in, symbols followed as watches change."""

from __future__ import annotations

import logging

from alerts.ports import Clock
from bot.market.source import YahooMarketData
from bot.pipeline import Pipeline
from bot.settings import Settings

log = logging.getLogger(__name__)


def build_market_source(settings: Settings, clock: Clock) -> YahooMarketData:
    return YahooMarketData.from_settings(
        clock=clock,
        yahoo_base_url=settings.yahoo.base_url,
        yahoo_stream_url=settings.yahoo.stream_url,
        poll_interval=settings.yahoo.poll_interval_seconds,
        timeout=settings.yahoo.timeout_seconds,
        stream_enabled=settings.yahoo.stream_enabled,
    )


class UnreachableNotice:
    """Says once that the data source is unreachable, and once that it is back."""

    def __init__(self) -> None:
        self.down = False

    def observe(self, got_quotes: bool, failures: int) -> str | None:
        if not got_quotes and failures and not self.down:
            self.down = True
            return "market data source unreachable; retrying with backoff"
        if got_quotes and self.down:
            self.down = False
            return "market data source reachable again"
        return None


async def run_market_loop(source: YahooMarketData, pipeline: Pipeline) -> None:
    """Never returns on bad data or network trouble: the source backs off, we keep reading."""
    notice = UnreachableNotice()
    source.set_symbols(pipeline.symbols())
    async for batch in source.batches():
        pipeline.ingest_quotes(batch.quotes, batch.unavailable)
        message = notice.observe(bool(batch.quotes), source.poller.backoff.failures)
        if message:
            log.warning(message)
        source.set_symbols(pipeline.symbols())
