"""Prometheus metrics and the /metrics, /health, /ready endpoints of the consumer.

The HTTP side is prometheus_client's own WSGI app served by the standard library's wsgiref in a
daemon thread; /health and /ready are two small routes in front of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


class ConsumerMetrics:
    """Every metric the consumer exports, on its own registry (so tests can build several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.values = Counter(
            "histfill_values_ingested", "Values written to QuestDB.", ["topic"], registry=r
        )
        self.batches = Counter(
            "histfill_batches_ingested", "Point batches written to QuestDB.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "histfill_dlq_messages",
            "Messages sent to the dead-letter topic.",
            ["error_type"],
            registry=r,
        )
        self.sink_errors = Counter(
            "histfill_sink_errors", "Failed writes (retried).", ["sink"], registry=r
        )
        self.flush_seconds = Histogram(
            "histfill_flush_seconds",
            "Time to write one flush to QuestDB and Redis and commit it.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.lag = Gauge(
            "histfill_consumer_lag",
            "Messages between the consumer's position and the partition end.",
            ["topic", "partition"],
            registry=r,
        )
        self.realtime_lag = Gauge(
            "histfill_realtime_lag",
            "Real-time messages not yet ingested across the consumer group (own partitions "
            "from positions, the others from the group's commits): what pauses backfill.",
            registry=r,
        )
        self.backfill_paused = Gauge(
            "histfill_backfill_paused", "1 while backfill partitions are paused.", registry=r
        )
        self.last_flush = Gauge(
            "histfill_last_flush_timestamp_seconds",
            "Unix time of the last successful flush.",
            registry=r,
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class HealthServer:
    """Serves /metrics, /health (the loop is alive) and /ready (assigned and sinks reachable)."""

    def __init__(
        self,
        metrics: ConsumerMetrics,
        port: int,
        live: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",  # noqa: S104  # scraped from outside the container
    ) -> None:
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in ("/health", "/ready"):
                ok = live() if path == "/health" else ready()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
                )
                return [b"ok\n" if ok else b"not ok\n"]
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Heartbeat:
    """The loop beats on every iteration; /health fails when it stops beating."""

    def __init__(
        self, max_silence_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._max = max_silence_s
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def alive(self) -> bool:
        return self._clock() - self._last < self._max
