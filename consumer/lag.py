"""Consumer-group lag, per topic and partition, as Kafka's own tools compute it.

lag = log-end offset (high watermark) - committed offset. Like Kafka's consumer-groups tool, a
partition the group has never committed shows no lag (``-``): there is no position to measure
from until the group commits there.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec

from shared.errors import HistfillError


class LagError(HistfillError):
    """The broker could not say what the group's offsets or the log ends are."""

    retriable = True


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int | None


def group_lag(
    admin: AdminClient, group: str, topics: list[str] | None = None, timeout: float = 10.0
) -> list[PartitionLag]:
    """Lag of every partition of ``topics`` (default: those the group has offsets for)."""
    try:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in future.result(timeout=timeout).topic_partitions or []
            if tp.offset >= 0
        }
        wanted = set(topics) if topics else {t for t, _ in committed}
        metadata = admin.list_topics(timeout=timeout).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in sorted(wanted)
            if topic in metadata
            for p in sorted(metadata[topic].partitions)
        ]
        if not partitions:
            return []
        ends = _offsets(admin, partitions, timeout)
    except Exception as exc:  # librdkafka raises several types here
        raise LagError(f"cannot read lag of group {group!r}: {exc}") from exc
    rows = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        end = ends[key]
        held = committed.get(key)
        lag = None if held is None else max(end - held, 0)
        rows.append(PartitionLag(group, tp.topic, tp.partition, held, end, lag))
    return rows


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], timeout: float
) -> dict[tuple[str, int], int]:
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped C extension
    specs = dict.fromkeys(partitions, latest)
    futures = admin.list_offsets(
        specs, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=timeout
    )
    result: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        info: ListOffsetsResultInfo = future.result(timeout=timeout)
        result[(tp.topic, tp.partition)] = info.offset
    return result


def totals(rows: list[PartitionLag]) -> dict[str, int]:
    """Lag summed per topic."""
    out: dict[str, int] = {}
    for row in rows:
        out[row.topic] = out.get(row.topic, 0) + (row.lag or 0)
    return out
