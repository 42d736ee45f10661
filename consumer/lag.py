"""Consumer-group lag, per topic and partition, as Kafka's own tools compute it.

lag = log-end offset (high watermark) - committed offset. Like Kafka's consumer-groups tool, a
partition the group has never committed shows no lag (``-``): there is no position to measure
from until the group commits there.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec

from shared.errors import HistfillError

log = structlog.get_logger(__name__)


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


class GroupLagWatcher:
    """The whole group's lag on one topic, refreshed in the background every ``interval`` s.

    A consumer knows the lag of its own partitions from its position. To put real-time first
    across several consumer processes it also needs the partitions other members own: they
    write to the same QuestDB, so one member's backfill can delay another member's live
    values. This asks the broker (committed offsets and log ends, as ``histfill lag`` does) on
    its own thread, so the poll loop never waits for it.
    """

    def __init__(self, admin: AdminClient, group: str, topic: str, interval: float = 5.0) -> None:
        self._admin = admin
        self._group = group
        self._topic = topic
        self._interval = interval
        self._lags: dict[int, int] = {}
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-lag", daemon=True)

    def start(self) -> GroupLagWatcher:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 15)

    def lags(self) -> dict[int, int]:
        """Partition -> lag from the last successful refresh (partitions never committed: 0).

        The first call starts the background refresh. Call it once the consumer has joined
        its group: on a new broker, asking for a group's offsets while the consumer is still
        looking for its coordinator kept the consumer from joining for minutes (Kafka 4.1).
        """
        self.start()
        return dict(self._lags)

    def refresh(self) -> None:
        """Ask the broker now; on failure keep the last figures and log once per outage."""
        try:
            rows = group_lag(self._admin, self._group, [self._topic], timeout=self._interval)
        except LagError as exc:
            if not self._failing:
                log.warning("group_lag_unavailable", topic=self._topic, error=str(exc)[:300])
            self._failing = True
            return
        if self._failing:
            log.info("group_lag_available", topic=self._topic)
        self._failing = False
        self._lags = {row.partition: row.lag or 0 for row in rows}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._interval)
