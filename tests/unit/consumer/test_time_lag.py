"""Lag in seconds, the drain ETA, their gauges, and a metrics port already taken."""

from __future__ import annotations

import math
import socket

import pytest

from consumer.lag import PartitionLag
from consumer.metrics import ConsumerMetrics, HealthServer
from consumer.timelag import (
    NOTHING_UNREAD,
    DrainRate,
    consumed_totals,
    effective_totals,
    lag_seconds,
    time_lags,
)
from histfill.lagview import LagSnapshot, duration
from shared.errors import ConfigError


def test_lag_seconds_is_the_wait_of_the_oldest_unread_message() -> None:
    """now - CreateTime of the message at the committed offset; 0 with no lag; None unknown."""
    assert lag_seconds(5, oldest_unread_ms=1_000_000, now_s=1_060.0) == 60.0
    assert lag_seconds(0, oldest_unread_ms=1_000_000, now_s=1_060.0) == 0.0
    assert lag_seconds(0, oldest_unread_ms=None, now_s=1_060.0) == 0.0
    assert lag_seconds(5, oldest_unread_ms=None, now_s=1_060.0) is None
    assert lag_seconds(5, oldest_unread_ms=-1, now_s=1_060.0) is None  # no timestamp
    assert lag_seconds(5, oldest_unread_ms=2_000_000, now_s=1_060.0) == 0.0  # clock skew


def test_a_partition_with_only_a_transaction_marker_left_is_caught_up() -> None:
    """Backfill is written in transactions: a group that read everything sits one commit
    marker short of the log end. That is 0 s of lag, and no lag for the drain ETA."""
    assert lag_seconds(1, oldest_unread_ms=NOTHING_UNREAD, now_s=1_060.0) == 0.0
    rows = [PartitionLag("g", "t", 0, 47, 0, 48, 1), PartitionLag("g", "t", 1, 40, 0, 48, 8)]
    seconds: dict[tuple[str, int], float | None] = {("t", 0): 0.0, ("t", 1): 30.0}
    assert effective_totals(rows, seconds) == {"t": 8}
    assert effective_totals(rows, {}) == {"t": 9}  # unknown seconds: the lag counts


Key = tuple[str, int]


class _Reader:
    def __init__(self, stamps: dict[tuple[str, int], int | None]) -> None:
        self.stamps = stamps
        self.asked: dict[tuple[str, int], int] = {}

    def oldest_unread(self, wanted: dict[Key, int]) -> dict[Key, int | None]:
        self.asked = dict(wanted)
        return {k: self.stamps.get(k) for k in wanted}


def test_time_lags_read_at_the_commit_or_the_log_start_and_only_where_lagging() -> None:
    """The timestamp asked for is at the committed offset (log start if never committed);
    caught-up partitions are not read at all."""
    rows = [
        PartitionLag("g", "t", 0, 40, 10, 100, 60),
        PartitionLag("g", "t", 1, None, 10, 100, 90),
        PartitionLag("g", "t", 2, 100, 10, 100, 0),
    ]
    reader = _Reader({("t", 0): 50_000, ("t", 1): 20_000})
    seconds = time_lags(rows, reader, now_s=100.0)  # type: ignore[arg-type]  # a fake reader
    assert reader.asked == {("t", 0): 40, ("t", 1): 10}
    assert seconds == {("t", 0): 50.0, ("t", 1): 80.0, ("t", 2): 0.0}
    assert consumed_totals(rows) == {"t": 40 + 10 + 100}


def test_drain_eta_is_lag_over_the_recent_commit_rate() -> None:
    """Two samples 10 s apart, 500 messages committed: 50 msg/s; 1,000 lag drains in 20 s;
    no progress with lag is +Inf, no lag is 0, one sample is unknown."""
    now = [0.0]
    drain = DrainRate(window_s=60, clock=lambda: now[0])
    drain.add({"t": 1_000})
    assert drain.eta("t", 1_000) is None
    now[0] = 10.0
    drain.add({"t": 1_500})
    assert drain.rate("t") == 50.0
    assert drain.eta("t", 1_000) == 20.0
    assert drain.eta("t", 0) == 0.0
    now[0] = 100.0
    drain.add({"t": 1_500})
    now[0] = 170.0
    drain.add({"t": 1_500})  # the window slid past the progress
    assert drain.eta("t", 10) == math.inf


def test_seconds_gauges_follow_the_held_partitions() -> None:
    """A lag-seconds series per held partition, removed with it; group figures per topic."""
    metrics = ConsumerMetrics()
    metrics.show_lag(
        [("t", 0), ("t", 1)], {("t", 0): 5, ("t", 1): 0}, {("t", 0): 12.5, ("t", 1): 0.0}
    )
    metrics.show_group("t", {("t", 0): 12.5, ("t", 9): 40.0}, {"t": math.inf, "u": None})
    text = _exposition(metrics)
    assert 'histfill_consumer_lag_seconds{partition="0",topic="t"} 12.5' in text
    assert 'histfill_consumer_lag_seconds{partition="1",topic="t"} 0.0' in text
    assert "histfill_realtime_lag_seconds 40.0" in text
    assert 'histfill_consumer_drain_eta_seconds{topic="t"} +Inf' in text
    assert 'topic="u"' not in text
    metrics.drop_lag([("t", 0)])
    assert 'histfill_consumer_lag_seconds{partition="0"' not in _exposition(metrics)


def test_newest_realtime_value_age_is_nan_until_a_value_is_written() -> None:
    """The age is computed at scrape time from the newest real-time value written."""
    metrics = ConsumerMetrics()
    assert "histfill_realtime_newest_value_age_seconds NaN" in _exposition(metrics)
    metrics.wrote_realtime(1_000_000)
    metrics.wrote_realtime(500_000)  # older: ignored
    text = _exposition(metrics)
    assert "histfill_realtime_newest_value_timestamp_seconds 1.0" in text
    assert "histfill_realtime_newest_value_age_seconds NaN" not in text


def _exposition(metrics: ConsumerMetrics) -> str:
    from prometheus_client import generate_latest  # noqa: PLC0415

    return generate_latest(metrics.registry).decode()


def test_a_taken_metrics_port_is_a_config_error_naming_metrics_port() -> None:
    """Another process on the port: a ConfigError naming METRICS_PORT, not a bare OSError."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"METRICS_PORT={port} is already in use"):
            HealthServer(
                ConsumerMetrics(),
                port,
                live=lambda: (True, {}),
                ready=lambda: (True, {}),
                host="127.0.0.1",
            )


def test_json_snapshot_has_no_infinity_and_durations_read_well() -> None:
    """JSON carries a stalled topic as a null ETA with stalled=true (JSON has no +Inf)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    rows = [PartitionLag("g", "t", 0, 1, 0, 11, 10)]
    snap = LagSnapshot(
        "g", datetime(2026, 1, 1, tzinfo=UTC), rows, {("t", 0): 90.0}, {"t": 0.0}, {"t": math.inf}
    )
    doc = snap.to_json()
    assert doc["topics"]["t"] == {
        "lag_messages": 10,
        "lag_seconds": 90.0,
        "consumed_per_second": 0.0,
        "drain_eta_seconds": None,
        "stalled": True,
    }
    assert doc["partitions"][0]["lag_seconds"] == 90.0
    assert [duration(x) for x in (None, 12.34, 250, 7_500, 200_000)] == [
        "-",
        "12.3s",
        "4m 10s",
        "2h 05m",
        "2d 7h",
    ]


def test_the_lag_table_shows_seconds_rate_and_eta() -> None:
    """`histfill lag` (and each `--watch` frame) shows lag in messages and time per partition,
    and per topic the consumption rate and drain ETA."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from histfill.lagview import render  # noqa: PLC0415

    rows = [PartitionLag("g", "t", 0, 1, 0, 11, 10), PartitionLag("g", "t", 1, None, 0, 4, 4)]
    snap = LagSnapshot(
        "g",
        datetime(2026, 1, 1, tzinfo=UTC),
        rows,
        {("t", 0): 90.0, ("t", 1): None},
        {"t": 2.0},
        {"t": 7.0},
    )
    console = Console(width=200, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "consumer lag, group g" in text
    assert "1m 30s" in text
    assert "4*" in text
    assert "total lag t: 14   consumed 2.0 msg/s   drain ETA 7.0s" in text
