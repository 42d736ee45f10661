"""Prometheus metrics and the /metrics, /health, /ready endpoints of the consumer.

The HTTP side is prometheus_client's own WSGI app served by the standard library's wsgiref in a
daemon thread; /health (= /live) and /ready are small routes in front of it, answering JSON.
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)

from shared.errors import ConfigError


class ConsumerMetrics:
    """Every metric the consumer exports, on its own registry (so tests can build several).

    Names follow Prometheus's conventions: the unit in the name (``_seconds``, ``_messages``),
    ``_total`` on counters (prometheus_client adds it), labels with bounded values only (topic,
    partition, sink, error type). ``ops/prometheus/`` and ``ops/grafana/`` query them, and
    ``tests/unit/ops`` checks that every name they use is exported here.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU, open fds
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
            "histfill_consumer_lag_messages",
            "Messages of a partition this consumer holds (paused too) not yet committed: log "
            "end - committed offset, or log end - log start if never committed.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "histfill_consumer_lag_seconds",
            "Seconds the oldest message of a partition this consumer holds has waited unread "
            "(now - its CreateTime; 0 without lag).",
            ["topic", "partition"],
            registry=r,
        )
        self._lag_shown: set[tuple[str, int]] = set()
        self.drain_eta = Gauge(
            "histfill_consumer_drain_eta_seconds",
            "The group's lag on a topic divided by its commit rate over the last minute "
            "(+Inf: no progress). Every member exports the group's figure.",
            ["topic"],
            registry=r,
        )
        self.realtime_lag = Gauge(
            "histfill_realtime_lag_messages",
            "Real-time messages not yet ingested across the consumer group (own partitions "
            "from positions, the others from the group's commits): what pauses backfill.",
            registry=r,
        )
        self.realtime_lag_seconds = Gauge(
            "histfill_realtime_lag_seconds",
            "Largest lag in seconds over the real-time topic's partitions, the whole group's.",
            registry=r,
        )
        self.realtime_newest = Gauge(
            "histfill_realtime_newest_value_timestamp_seconds",
            "Timestamp of the newest real-time value this consumer wrote to QuestDB.",
            registry=r,
        )
        self.realtime_newest_age = Gauge(
            "histfill_realtime_newest_value_age_seconds",
            "Now minus the newest real-time value this consumer wrote to QuestDB (NaN: none "
            "yet): how old the freshest live data in QuestDB is.",
            registry=r,
        )
        self.realtime_newest_age.set_function(self._newest_age)
        self._newest_s: float | None = None
        self.assigned = Gauge(
            "histfill_consumer_assigned_partitions",
            "Partitions this consumer holds (0 during a rebalance or before joining).",
            registry=r,
        )
        self.ready = Gauge(
            "histfill_consumer_ready",
            "1 while /ready answers 200 (joined, no sink stuck), else 0.",
            registry=r,
        )
        self.backfill_paused = Gauge(
            "histfill_backfill_paused", "1 while backfill partitions are paused.", registry=r
        )
        self.held_back = Gauge(
            "histfill_consumer_held_back_values",
            "Backfill values the last flush held for a later one (BACKFILL_HOLD_MAX_S).",
            registry=r,
        )
        self.last_flush = Gauge(
            "histfill_last_flush_timestamp_seconds",
            "Unix time of the last successful flush.",
            registry=r,
        )

    def _newest_age(self) -> float:
        newest = self._newest_s
        return float("nan") if newest is None else max(time.time() - newest, 0.0)

    def wrote_realtime(self, newest_us: int) -> None:
        """A flush put real-time values up to ``newest_us`` in QuestDB."""
        newest_s = newest_us / 1_000_000
        if self._newest_s is None or newest_s > self._newest_s:
            self._newest_s = newest_s
            self.realtime_newest.set(newest_s)

    def show_lag(
        self,
        assigned: Iterable[tuple[str, int]],
        lags: dict[tuple[str, int], int],
        seconds: dict[tuple[str, int], float | None] | None = None,
    ) -> None:
        """One ``histfill_consumer_lag_messages`` (and ``_seconds``) series per partition
        held, and none for any other.

        ``lags`` and ``seconds`` are the group's figures (see ``consumer.lag`` and
        ``consumer.timelag``); a partition they do not cover yet keeps its last value until
        they do.
        """
        held = set(assigned)
        self.drop_lag(self._lag_shown - held)
        for topic, partition in held:
            lag = lags.get((topic, partition))
            if lag is not None:
                self.lag.labels(topic, str(partition)).set(lag)
                self._lag_shown.add((topic, partition))
            late = (seconds or {}).get((topic, partition))
            if late is not None and (topic, partition) in self._lag_shown:
                self.lag_seconds.labels(topic, str(partition)).set(late)

    def show_group(
        self,
        realtime_topic: str,
        seconds: dict[tuple[str, int], float | None],
        etas: dict[str, float | None],
    ) -> None:
        """The group-wide figures: real-time lag in seconds, and each topic's drain ETA."""
        realtime = [s for (t, _p), s in seconds.items() if t == realtime_topic and s is not None]
        if realtime:
            self.realtime_lag_seconds.set(max(realtime))
        for topic, eta in etas.items():
            if eta is not None:
                self.drain_eta.labels(topic).set(eta)

    def drop_lag(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Remove the series of partitions revoked or lost: their lag is another member's."""
        for topic, partition in list(partitions):
            if (topic, partition) in self._lag_shown:
                self._lag_shown.discard((topic, partition))
                self.lag.remove(topic, str(partition))
                with suppress(KeyError):  # no seconds figure was known yet
                    self.lag_seconds.remove(topic, str(partition))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


Probe = Callable[[], tuple[bool, dict[str, Any]]]
"""A health check: whether it passes, and a JSON body saying why."""


class HealthServer:
    """Serves /metrics, /health and /live (the process runs), /ready (it is writing)."""

    def __init__(
        self,
        metrics: ConsumerMetrics,
        port: int,
        live: Probe,
        ready: Probe,
        host: str = "0.0.0.0",  # noqa: S104  # scraped from outside the container
    ) -> None:
        metrics_app = make_wsgi_app(metrics.registry)
        probes = {"/health": live, "/live": live, "/ready": ready}

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in probes:
                ok, body = probes[path]()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable",
                    [("Content-Type", "application/json")],
                )
                return [json.dumps(body).encode() + b"\n"]
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result

        try:
            self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"METRICS_PORT={port} is already in use on {host} (another consumer on this "
                    "host?): give each consumer its own METRICS_PORT, or 0 to serve no metrics"
                ) from exc
            raise ConfigError(f"METRICS_PORT={port}: cannot listen on {host}: {exc}") from exc
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


class SinkHealth:
    """Which sinks (questdb, redis, dlq, schema_registry) fail, and since when.

    The loop reports every failed and every successful write; a sink is stuck from its first
    failure until its next success. The state is learned from writes: with nothing to write, a
    sink that went down is not noticed (nor does it hold anything up).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()  # the writer thread and the poll thread both report

    def failed(self, sink: str) -> None:
        with self._lock:
            self._since.setdefault(sink, self._clock())

    def succeeded(self, sink: str) -> None:
        with self._lock:
            self._since.pop(sink, None)

    def stuck(self) -> dict[str, float]:
        """Sink -> seconds since its first failure without a success since, longest first."""
        now = self._clock()
        with self._lock:
            since = dict(self._since)
        return dict(sorted(((s, now - t) for s, t in since.items()), key=lambda kv: -kv[1]))


class HealthState:
    """Liveness and readiness of the consumer, with bodies an operator can act on.

    Live: the poll loop still turns (it also turns while it waits for a sink). Ready: it has
    joined the group and no sink has been failing for longer than ``max_stuck_s``. /health
    stays 200 while live, but its body says which sink is stuck and for how long, so a
    liveness probe never restarts a consumer that is only waiting for QuestDB.
    """

    def __init__(
        self,
        heartbeat: Heartbeat,
        sinks: SinkHealth,
        joined: Callable[[], bool],
        max_stuck_s: float,
        held: Callable[[], int] | None = None,
    ) -> None:
        self._heartbeat = heartbeat
        self._sinks = sinks
        self._joined = joined
        self._max_stuck_s = max_stuck_s
        self._held = held

    def _state(self) -> tuple[bool, bool, dict[str, Any]]:
        live = self._heartbeat.alive()
        joined = self._joined()
        stuck = self._sinks.stuck()
        over = {s: t for s, t in stuck.items() if t >= self._max_stuck_s}
        reasons = []
        if not live:
            reasons.append("the consume loop stopped turning")
        if not joined:
            reasons.append("no partitions assigned yet")
        reasons += [
            f"sink {s} failing for {t:.0f} s (limit {self._max_stuck_s:g} s)"
            for s, t in over.items()
        ]
        ready = live and joined and not over
        body: dict[str, Any] = {
            "live": live,
            "ready": ready,
            "joined": joined,
            "stuck_sinks": [{"sink": s, "seconds": round(t, 1)} for s, t in stuck.items()],
            "max_sink_stuck_seconds": self._max_stuck_s,
        }
        if self._held is not None:
            held = self._held()
            body["partitions_held"] = held
            if joined and held == 0:
                # still ready: a rebalance is brief and the lag series come back with the
                # partitions; more consumers than partitions leaves some idle for good
                body["note"] = (
                    "holds no partitions now: a rebalance in progress (its lag series return "
                    "with its partitions), or more consumers than partitions"
                )
        if reasons:
            body["reason"] = "; ".join(reasons)
        return live, ready, body

    def live(self) -> tuple[bool, dict[str, Any]]:
        live, _ready, body = self._state()
        return live, body

    def ready(self) -> tuple[bool, dict[str, Any]]:
        _live, ready, body = self._state()
        return ready, body
