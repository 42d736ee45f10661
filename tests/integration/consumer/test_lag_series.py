"""Lag hides no partition: unread topics, held-but-unread and paused partitions, rebalances."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (
    BASE_US,
    MINUTE_US,
    BatchProducer,
    ConsumerProcess,
    make_batch,
    wait_for_count,
)

pytestmark = pytest.mark.stack

POINTS = [f"SITE4.CH{i:02d}.LWT" for i in range(16)]
LIVE_US = BASE_US + 10**6 * MINUTE_US


def _lag_series(consumer: ConsumerProcess) -> dict[tuple[str, int], float]:
    """The histfill_consumer_lag_messages series on /metrics: (topic, partition) -> lag."""
    try:
        text = httpx.get(f"http://127.0.0.1:{consumer.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        (topic, int(partition)): float(value)
        for partition, topic, value in re.findall(
            r'^histfill_consumer_lag_messages\{partition="(\d+)",topic="([^"]+)"\} (\S+)$',
            text,
            flags=re.MULTILINE,
        )
    }


def _every_partition(settings: ConsumerSettings) -> set[tuple[str, int]]:
    return {(settings.topic_realtime, p) for p in range(settings.topic_realtime_partitions)} | {
        (settings.topic_backfill, p) for p in range(settings.topic_backfill_partitions)
    }


def test_histfill_lag_counts_a_topic_no_one_has_read(
    infra: ConsumerSettings, producer: BatchProducer, stack_env: dict[str, str]
) -> None:
    """A topic with data and a group that never committed: the totals are its whole backlog,
    not 0."""
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 10))
    producer.flush()
    out = subprocess.run(
        [sys.executable, "-m", "histfill", "lag"],
        env={**os.environ, **stack_env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert f"total lag {infra.topic_backfill}: {len(POINTS)}" in out, out
    assert f"total lag {infra.topic_realtime}: 0" in out, out
    assert "never committed" in out


def test_every_held_partition_has_a_series_paused_and_unread_ones_included(
    infra: ConsumerSettings, producer: BatchProducer, start_consumer: Callable[..., ConsumerProcess]
) -> None:
    """Backfill paused by the rate cap right after it starts: each partition the consumer holds
    has a lag series, those it never read and those without data too, and the paused backlog
    shows in them."""
    for k in range(10):
        for address in POINTS:
            producer.send(infra.topic_backfill, make_batch(address, BASE_US + k * MINUTE_US, 1))
    producer.flush()
    consumer = start_consumer(BACKFILL_MAX_VALUES_PER_SECOND="0.01", POLL_BATCH="1")
    wait_for(lambda: consumer.metric("histfill_backfill_paused") == 1, timeout=60)
    wait_for(lambda: set(_lag_series(consumer)) == _every_partition(infra), timeout=30)
    series = _lag_series(consumer)
    backfill_lag = sum(v for (t, _p), v in series.items() if t == infra.topic_backfill)
    assert 0 < backfill_lag <= len(POINTS) * 10
    assert all(v == 0 for (t, _p), v in series.items() if t == infra.topic_realtime)
    assert consumer.terminate() == 0


def test_a_partition_moved_to_another_member_loses_its_series_on_the_first(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """After a second consumer joins, each partition has a series on exactly one member."""
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 10))
        producer.send(infra.topic_realtime, make_batch(address, LIVE_US, 1))
    producer.flush()
    first = start_consumer()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    everything = _every_partition(infra)
    wait_for(lambda: set(_lag_series(first)) == everything, timeout=30)

    second = start_consumer()

    def split() -> bool:
        mine, theirs = set(_lag_series(first)), set(_lag_series(second))
        return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == everything

    wait_for(split, timeout=60)
    assert first.terminate() == 0
    assert second.terminate() == 0
