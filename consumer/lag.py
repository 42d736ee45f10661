"""Consumer-group lag, per topic and partition: one rule for ``histfill lag`` and the gauges.

lag = log-end offset (high watermark) - committed offset, as Kafka's own consumer-groups tool
computes it. A partition the group has never committed is not lag-free: everything still in
it is unread, so its lag is the log end - the log start (low watermark). Kafka's tool shows
``-`` there and leaves it out; we count it, so a topic no one has read reports its whole
backlog instead of 0. Where the tool shows a number, ours is the same.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec

from consumer.timelag import (
    DrainRate,
    TimestampReader,
    consumed_totals,
    effective_totals,
    time_lags,
)
from shared.errors import HistfillError

log = structlog.get_logger(__name__)


class LagError(HistfillError):
    """The broker could not say what the group's offsets or the log ends are."""

    retriable = True


def lag_of(committed: int | None, start: int, end: int) -> int:
    """Messages the group has still to read in one partition (see the module docstring)."""
    if committed is None:
        return max(end - start, 0)
    return max(end - committed, 0)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    """The group's committed offset; None if it never committed here."""
    start: int
    """The log start offset (low watermark): where a never-committed group starts reading."""
    end: int
    lag: int

    @property
    def never_committed(self) -> bool:
        return self.committed is None


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
        starts = _offsets(admin, partitions, OffsetSpec.earliest(), timeout)  # type: ignore[no-untyped-call]  # untyped C extension
        ends = _offsets(admin, partitions, OffsetSpec.latest(), timeout)  # type: ignore[no-untyped-call]
    except Exception as exc:  # librdkafka raises several types here
        raise LagError(f"cannot read lag of group {group!r}: {exc}") from exc
    rows = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        held = committed.get(key)
        start, end = starts[key], ends[key]
        rows.append(
            PartitionLag(group, tp.topic, tp.partition, held, start, end, lag_of(held, start, end))
        )
    return rows


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets(
        dict.fromkeys(partitions, spec),
        isolation_level=IsolationLevel.READ_UNCOMMITTED,
        request_timeout=timeout,
    )
    result: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        info: ListOffsetsResultInfo = future.result(timeout=timeout)
        result[(tp.topic, tp.partition)] = info.offset
    return result


def totals(rows: list[PartitionLag]) -> dict[str, int]:
    """Lag summed per topic, never-committed partitions included."""
    out: dict[str, int] = {}
    for row in rows:
        out[row.topic] = out.get(row.topic, 0) + row.lag
    return out


class GroupLagWatcher:
    """The whole group's lag on some topics, refreshed in the background every ``interval`` s.

    A consumer knows the lag of its own partitions from its position. To put real-time first
    across several consumer processes it also needs the partitions other members own: they
    write to the same QuestDB, so one member's backfill can delay another member's live
    values. The same figures feed ``histfill_consumer_lag_messages`` for the partitions it
    holds, with the rule ``histfill lag`` uses (committed offsets, or the log start where the
    group never committed). This asks the broker on its own thread, so the poll loop never
    waits for it.
    """

    def __init__(
        self,
        admin: AdminClient,
        group: str,
        topics: list[str],
        interval: float = 5.0,
        timestamps: TimestampReader | None = None,
    ) -> None:
        self._admin = admin
        self._group = group
        self._topics = topics
        self._interval = interval
        self._lags: dict[tuple[str, int], int] = {}
        self._seconds: dict[tuple[str, int], float | None] = {}
        self._etas: dict[str, float | None] = {}
        self._timestamps = timestamps
        self._drain = DrainRate()
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
        if self._timestamps is not None and not self._thread.is_alive():
            self._timestamps.close()
            self._timestamps = None

    def all_lags(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> lag from the last successful refresh.

        The first call starts the background refresh. Call it once the consumer has joined
        its group: on a new broker, asking for a group's offsets while the consumer is still
        looking for its coordinator kept the consumer from joining for minutes (Kafka 4.1).
        """
        self.start()
        return dict(self._lags)

    def lags(self, topic: str) -> dict[int, int]:
        """Partition -> lag of one topic (see ``all_lags``)."""
        return {p: lag for (t, p), lag in self.all_lags().items() if t == topic}

    def all_seconds(self) -> dict[tuple[str, int], float | None]:
        """(topic, partition) -> lag in seconds (see ``consumer.timelag``); None: unknown."""
        return dict(self._seconds)

    def drain_etas(self) -> dict[str, float | None]:
        """Topic -> seconds to drain the group's lag at its recent rate (None: not known yet)."""
        return dict(self._etas)

    def refresh(self) -> None:
        """Ask the broker now; on failure keep the last figures and log once per outage."""
        try:
            rows = group_lag(self._admin, self._group, self._topics, timeout=self._interval)
        except LagError as exc:
            if not self._failing:
                log.warning("group_lag_unavailable", topics=self._topics, error=str(exc)[:300])
            self._failing = True
            return
        if self._failing:
            log.info("group_lag_available", topics=self._topics)
        self._failing = False
        self._lags = {(row.topic, row.partition): row.lag for row in rows}
        self._drain.add(consumed_totals(rows))
        try:
            self._seconds = time_lags(rows, self._timestamps, time.time())
        except Exception as exc:  # noqa: BLE001  # librdkafka raises several types; keep the last figures
            log.warning("time_lag_unavailable", error=str(exc)[:300])
        lags = effective_totals(rows, self._seconds)
        self._etas = {t: self._drain.eta(t, lag) for t, lag in lags.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._interval)
