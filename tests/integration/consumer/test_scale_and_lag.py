"""Two consumers sharing a group, and `histfill lag` against Kafka's own consumer-groups tool."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from consumer.lag import GroupLagWatcher, group_lag, totals
from histfill.stack import StackPaths
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (
    BASE_US,
    MINUTE_US,
    BatchProducer,
    ConsumerProcess,
    duplicate_keys,
    make_batch,
    wait_for_count,
)

pytestmark = pytest.mark.stack

POINTS = [f"SITE2.AHU{i:02d}.SAT" for i in range(16)]


def test_two_consumers_share_partitions_and_write_every_value_once(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """Two processes in one group split the partitions; together they write each value once."""
    first = start_consumer()
    second = start_consumer()
    wait_for(lambda: "partitions_assigned" in first.log() and "partitions_assigned" in second.log())
    for k in range(5):
        for address in POINTS:
            producer.send(
                infra.topic_backfill, make_batch(address, BASE_US + k * 4000 * MINUTE_US, 4000)
            )
    producer.flush()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    assert duplicate_keys(qdb, infra.qdb_table) == []
    # each process ingested part of the data, none all of it
    wait_for(
        lambda: (
            sum(p.metric("histfill_values_ingested_total") for p in (first, second))
            >= producer.values
        )
    )
    shares = [p.metric("histfill_values_ingested_total") for p in (first, second)]
    assert all(0 < share < producer.values for share in shares), shares
    assert first.terminate() == 0
    assert second.terminate() == 0


def _kafka_tool_lag(group: str) -> dict[tuple[str, int], tuple[str, str, str]]:
    """Run Kafka's ConsumerGroupCommand and parse (topic, partition) -> (committed, end, lag)."""
    lib = StackPaths().lib / "kafka"
    out = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            f"{lib}/*",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            "127.0.0.1:9092",
            "--describe",
            "--group",
            group,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = {}
    for line in out.splitlines():
        cols = re.split(r"\s+", line.strip())
        if len(cols) >= 6 and cols[0] == group:
            rows[(cols[1], int(cols[2]))] = (cols[3], cols[4], cols[5])
    return rows


def test_lag_agrees_with_kafkas_consumer_groups_tool(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
    admin: AdminClient,
) -> None:
    """After a partial consumption, our per-partition lag equals Kafka's tool's numbers."""
    for address in POINTS[:8]:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 1000))
        producer.send(infra.topic_realtime, make_batch(address, BASE_US + 10**6 * MINUTE_US, 10))
    producer.flush()
    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    assert consumer.terminate() == 0
    for address in POINTS:  # unconsumed: lag
        producer.send(infra.topic_backfill, make_batch(address, BASE_US + 5000 * MINUTE_US, 10))
    producer.flush()

    ours = group_lag(admin, infra.consumer_group_id, [infra.topic_realtime, infra.topic_backfill])
    theirs = _kafka_tool_lag(infra.consumer_group_id)
    assert totals(ours)[infra.topic_backfill] == len(POINTS)
    compared = 0
    for row in ours:
        committed, end, lag = theirs.get((row.topic, row.partition), ("-", str(row.end), "-"))
        assert str(row.end) == end
        if committed == "-":  # the tool has no number: we count what the partition holds
            assert row.never_committed
            assert row.lag == row.end - row.start
        else:
            assert (str(row.committed), str(row.lag)) == (committed, lag)
        compared += 1
    assert compared == infra.topic_backfill_partitions + infra.topic_realtime_partitions


def test_group_lag_watcher_sees_the_groups_realtime_backlog(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
    admin: AdminClient,
) -> None:
    """What pauses backfill across members: the group's committed real-time offsets against
    the log ends, read from the broker, per partition."""
    for address in POINTS:
        producer.send(infra.topic_realtime, make_batch(address, BASE_US, 5))
    producer.flush()
    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    assert consumer.terminate() == 0
    watcher = GroupLagWatcher(admin, infra.consumer_group_id, [infra.topic_realtime], interval=2)
    watcher.refresh()
    rt = infra.topic_realtime
    assert sum(watcher.lags(rt).values()) == 0
    assert set(watcher.lags(rt)) == set(range(infra.topic_realtime_partitions))
    for address in POINTS[:10]:  # ten messages nobody consumes
        producer.send(infra.topic_realtime, make_batch(address, BASE_US + MINUTE_US * 10, 5))
    producer.flush()
    watcher.start()
    wait_for(lambda: sum(watcher.lags(rt).values()) == 10, timeout=20)
    watcher.stop()
    expected = totals(group_lag(admin, infra.consumer_group_id, [infra.topic_realtime]))
    assert expected == {infra.topic_realtime: 10}
