"""Prometheus metrics (read from the code's own counters at scrape) and `/healthz`, one port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from bot.health import HealthCheck
from bot.pipeline import Pipeline

if TYPE_CHECKING:
    from wsgiref.types import StartResponse


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


HEALTH_PATHS = {"/healthz": True, "/healthz/ready": True, "/healthz/live": False}


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never keeps the bot from stopping


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return  # one line per scrape every few seconds is noise, not information


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``addr:port`` in a daemon thread; other paths 404."""

    def __init__(
        self,
        port: int,
        pipeline: Pipeline | None = None,
        market_counters: Callable[[], Mapping[str, int]] | None = None,
        *,
        addr: str = "0.0.0.0",
        health: HealthCheck | None = None,
    ) -> None:
        from prometheus_client import make_wsgi_app

        self.registry = CollectorRegistry()
        self._collector: MarketbotCollector | None = None
        # What /healthz reports while no Runtime is attached (a standby waiting to lead).
        self._idle_health = health
        self.health = health
        if pipeline is not None:
            self.attach(pipeline, market_counters, health)
        self._metrics = make_wsgi_app(self.registry)
        server_class: type[_ThreadingWSGIServer] = _ThreadingWSGIServer
        if ":" in addr:
            server_class = type("_ThreadingWSGIServer6", (_ThreadingWSGIServer,), {})
            server_class.address_family = socket.AF_INET6
        self._server = make_server(
            addr, port, self._route, server_class=server_class, handler_class=_QuietHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    def attach(
        self,
        pipeline: Pipeline,
        market_counters: Callable[[], Mapping[str, int]] | None,
        health: HealthCheck | None,
    ) -> None:
        """A Runtime took the lead: serve its counters and its health from now on."""
        self.detach()
        self._collector = MarketbotCollector(pipeline, market_counters)
        self.registry.register(self._collector)
        self.health = health

    def detach(self) -> None:
        """The Runtime stopped (stepped down): back to the idle health, no pipeline metrics."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None
        self.health = self._idle_health

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path in HEALTH_PATHS and self.health is not None:
            report = self.health.report(readiness=HEALTH_PATHS[path])
            ok = report.ready if HEALTH_PATHS[path] else report.live
            body = json.dumps(report.as_json()).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
