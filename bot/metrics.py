"""Prometheus metrics: read from the pipeline's and the market source's own counters at scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bot.pipeline import Pipeline


class MarketbotCollector(Collector):
    """Reads counters the code keeps anyway, so nothing is counted twice or drifts."""

    def __init__(
        self, pipeline: Pipeline, market_counters: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        self._pipeline = pipeline
        self._market_counters = market_counters

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = asdict(self._pipeline.stats)
        by_platform = stats.pop("by_platform")
        for name, value in stats.items():
            yield CounterMetricFamily(
                f"marketbot_{name}", f"Pipeline: {name.replace('_', ' ')}", value=value
            )
        delivered = CounterMetricFamily(
            "marketbot_delivered_by_platform", "Messages accepted per platform", labels=["platform"]
        )
        for platform, count in sorted(by_platform.items()):
            delivered.add_metric([platform], count)
        yield delivered
        outbox = GaugeMetricFamily(
            "marketbot_outbox_rows", "Outbox rows by status", labels=["status"]
        )
        for status, count in sorted(self._pipeline.store.outbox_counts().items()):
            outbox.add_metric([status], count)
        yield outbox
        yield GaugeMetricFamily(
            "marketbot_broken_destinations",
            "Channels marked broken (they refused delivery for good)",
            value=len(self._pipeline.store.broken_destinations()),
        )
        yield GaugeMetricFamily(
            "marketbot_symbols_watched",
            "Symbols the watches need",
            value=len(self._pipeline.symbols()),
        )
        if self._market_counters is not None:
            market = CounterMetricFamily(
                "marketbot_market_events", "Market-data events by kind", labels=["kind"]
            )
            for kind, count in sorted(self._market_counters().items()):
                market.add_metric([kind], count)
            yield market


class MetricsServer:
    """``/metrics`` on ``addr:port`` in a daemon thread, stopped with the bot."""

    def __init__(
        self,
        port: int,
        pipeline: Pipeline,
        market_counters: Callable[[], Mapping[str, int]] | None = None,
        *,
        addr: str = "0.0.0.0",
    ) -> None:
        from prometheus_client import start_http_server

        self.registry = CollectorRegistry()
        self.registry.register(MarketbotCollector(pipeline, market_counters))
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
