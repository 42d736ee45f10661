"""The lag rule and the per-partition gauges that follow the assignment."""

from __future__ import annotations

from consumer.lag import PartitionLag, lag_of, totals
from consumer.metrics import ConsumerMetrics


def test_lag_counts_from_the_commit_or_from_the_log_start_when_never_committed() -> None:
    """Committed: end - committed (Kafka's tool's number); never committed: end - start."""
    assert lag_of(committed=40, start=10, end=100) == 60
    assert lag_of(committed=None, start=10, end=100) == 90
    assert lag_of(committed=None, start=0, end=0) == 0
    assert lag_of(committed=120, start=0, end=100) == 0  # never negative


def test_totals_include_never_committed_partitions() -> None:
    """A topic nobody read reports its whole backlog, not 0."""
    rows = [
        PartitionLag("g", "t", 0, None, 0, 7, 7),
        PartitionLag("g", "t", 1, 3, 0, 5, 2),
    ]
    assert totals(rows) == {"t": 9}


def _series(metrics: ConsumerMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.lag.collect()
        for s in family.samples
    }


def test_gauges_exist_for_exactly_the_held_partitions() -> None:
    """Every held partition gets a series; a partition no longer held loses it."""
    metrics = ConsumerMetrics()
    lags = {("rt", 0): 0, ("rt", 1): 4, ("bf", 0): 9}
    metrics.show_lag({("rt", 0), ("rt", 1), ("bf", 0)}, lags)
    assert _series(metrics) == {("rt", "0"): 0, ("rt", "1"): 4, ("bf", "0"): 9}
    metrics.drop_lag([("rt", 1)])
    assert set(_series(metrics)) == {("rt", "0"), ("bf", "0")}
    metrics.show_lag({("rt", 0)}, lags)  # bf[0] moved away without a revoke seen
    assert _series(metrics) == {("rt", "0"): 0}
    metrics.drop_lag([("rt", 5)])  # never shown: nothing to drop
