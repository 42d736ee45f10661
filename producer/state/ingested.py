"""How much of a request is in QuestDB: its published offsets against the consumers' commits.

The consumer commits an offset only after QuestDB accepted every message before it, so a
published message is in QuestDB once the consumer group's committed offset on its partition is
past it. Each committed chunk transaction leaves, per partition, the offset after its last data
message (from the delivery reports); the chunk's values are in QuestDB once the group's commits
reach all of them. That costs one ``list_consumer_group_offsets`` call per refresh for every
request together; counting the request's rows in QuestDB instead would scan the request's
points over its whole window (and count values other requests or the live stream wrote there).

On a topic written in transactions the group's committed offset stays short of the log end by
the commit markers and any aborted data after its last message (a ``read_committed`` consumer
never sees them, so never commits past them). Where the group's offset did not move since the
last refresh, :class:`GroupOffsets` peeks at the first readable message from it
(:class:`shared.kafka_peek.Peeker`): none before the log end means the group has read it all,
and its effective offset is the log end. Values published before this process started have no
delivery reports: they count once the group's effective offsets reach the log ends read at the
first refresh (conservative: it may wait for newer messages too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from shared.kafka_peek import Peeker

log = structlog.get_logger(__name__)

Ends = dict[int, int]
"""Partition -> the offset a consumer must have committed for the messages to count."""


@dataclass
class _Request:
    pending: list[tuple[Ends | None, int]] = field(default_factory=list)
    """(ends, values) not yet committed by the group; ends None: published before this process,
    waiting for the log end read at the first refresh."""
    ingested: int = 0


def reached(ends: Mapping[int, int], committed: Mapping[int, int]) -> bool:
    """Whether the group's commits are at or past every partition end of a transaction."""
    return all(committed.get(p, -1) >= end for p, end in ends.items())


class IngestTracker:
    """Per request, the values the consumer group has committed (pure bookkeeping, no I/O)."""

    def __init__(self) -> None:
        self._requests: dict[str, _Request] = {}
        self.checked: bool = False
        """Whether a refresh ever succeeded (before that, nothing is known to be in QuestDB)."""

    def adopt(self, request_id: str, values: int) -> None:
        """Values published before this process: judged against the first log end read."""
        if values > 0:
            self._requests.setdefault(request_id, _Request()).pending.append((None, values))

    def note(self, request_id: str, ends: Mapping[int, int], values: int) -> None:
        """A chunk's transaction committed ``values`` ending at ``ends`` (offset after its last
        data message per partition)."""
        self._requests.setdefault(request_id, _Request()).pending.append((dict(ends), values))

    def settle(self, committed: Mapping[int, int], log_ends: Mapping[int, int]) -> None:
        """Count what the group's effective ``committed`` offsets now cover (they only grow;
        see :class:`GroupOffsets`)."""
        # an empty partition (end 0) holds nothing to wait for
        first_ends = {p: end for p, end in log_ends.items() if end > 0}
        for request in self._requests.values():
            still: list[tuple[Ends | None, int]] = []
            for noted, values in request.pending:
                # published before this process: pinned to the first log end read
                ends = first_ends if noted is None else noted
                if reached(ends, committed):
                    request.ingested += values
                else:
                    still.append((ends, values))
            request.pending = still
        self.checked = True

    def ingested(self, request_id: str) -> int | None:
        """Values of the request in QuestDB, None until a refresh succeeded."""
        if not self.checked:
            return None
        request = self._requests.get(request_id)
        return 0 if request is None else request.ingested

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the bookkeeping of requests no longer shown."""
        kept = set(keep)
        self._requests = {k: v for k, v in self._requests.items() if k in kept}


def share(ingested: int | None, published: int, percent_published: float) -> float | None:
    """The request's percent in QuestDB: its published percent scaled by the share of its
    published values the consumers committed."""
    if ingested is None:
        return None
    if published <= 0:
        return 0.0 if percent_published < 100 else 100.0
    return round(percent_published * min(ingested / published, 1.0), 1)


class GroupOffsets:
    """Reads the consumer group's committed offsets and the log ends of the backfill topic."""

    def __init__(
        self,
        admin: AdminClient,
        group: str,
        topic: str,
        peeker: Peeker | None = None,
    ) -> None:
        self._admin = admin
        self._group = group
        self._topic = topic
        self._failing = False
        self._peeker = peeker
        self._previous: dict[int, int] = {}
        self._peeked: dict[int, tuple[int, int, int]] = {}  # partition -> committed, end, effective

    def close(self) -> None:
        if self._peeker is not None:
            self._peeker.close()

    def read(self, timeout: float = 5.0) -> tuple[Ends, Ends] | None:
        """(committed, log ends) per partition, or None when Kafka did not answer (logged
        once per outage; the figures stay as they were)."""
        try:
            future = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(self._group)]
            )[self._group]
            result = future.result(timeout=timeout)
            committed = {
                tp.partition: tp.offset
                for tp in result.topic_partitions or []
                if tp.topic == self._topic and tp.offset >= 0
            }
            meta = self._admin.list_topics(self._topic, timeout=timeout).topics[self._topic]
            spec = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped C extension
            futures = self._admin.list_offsets(
                {TopicPartition(self._topic, p): spec for p in meta.partitions},
                isolation_level=IsolationLevel.READ_UNCOMMITTED,
                request_timeout=timeout,
            )
            ends = {tp.partition: f.result(timeout=timeout).offset for tp, f in futures.items()}
        except Exception as exc:  # noqa: BLE001  # librdkafka raises several types here
            if not self._failing:
                log.warning("ingest_offsets_unavailable", group=self._group, error=str(exc)[:300])
            self._failing = True
            return None
        self._failing = False
        try:
            return self._effective(committed, ends), ends
        except Exception as exc:  # noqa: BLE001  # a failed peek: the raw commits still hold
            log.warning("ingest_peek_failed", error=str(exc)[:300])
            return committed, ends

    def _effective(self, committed: Ends, ends: Ends) -> Ends:
        """The group's offsets, moved to the log end (or the first readable message) where
        only markers or aborted data lie between them and it (see the module docstring)."""
        effective = {p: committed.get(p, 0) for p in ends}
        idle: dict[int, int] = {}
        for p, end in ends.items():
            at = effective[p]
            if at >= end:
                continue
            seen = self._peeked.get(p)
            if seen is not None and seen[:2] == (at, end):
                effective[p] = seen[2]
            elif self._previous.get(p) == at:  # not moving: caught up, or stuck
                idle[p] = at
        self._previous = dict(effective)
        if self._peeker is None or not idle:
            return effective
        answers = self._peeker.first_visible({(self._topic, p): at for p, at in idle.items()})
        for p, at in idle.items():
            if (self._topic, p) in answers:
                first = answers[(self._topic, p)]
                effective[p] = ends[p] if first is None else max(at, first[0])
                self._peeked[p] = (at, ends[p], effective[p])
        return effective


class IngestWatch:
    """Refreshes an :class:`IngestTracker` from Kafka in the background (never on a request:
    a status page or a scrape must not wait for a broker that is down)."""

    def __init__(
        self,
        tracker: IngestTracker,
        offsets: GroupOffsets,
        interval: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tracker = tracker
        self._offsets = offsets
        self._interval = interval
        self._sleep = sleep

    async def run(self, stopping: Callable[[], bool]) -> None:
        try:
            while not stopping():
                read = await asyncio.to_thread(self._offsets.read)
                if read is not None:
                    self.tracker.settle(*read)
                waited = 0.0
                while waited < self._interval and not stopping():  # stop within half a second
                    await self._sleep(0.5)
                    waited += 0.5
        finally:
            await asyncio.to_thread(self._offsets.close)


def with_ingested(tracker: IngestTracker, request: dict[str, Any]) -> dict[str, Any]:
    """A request's JSON (``RequestProgress.to_json``) with ``valuesInQuestDB`` and
    ``inQuestDBPercent`` (null until the consumers' offsets were read once)."""
    ingested = tracker.ingested(str(request["requestId"]))
    published = int(request.get("valuesPublished") or 0)
    return {
        **request,
        "valuesInQuestDB": None if ingested is None else min(ingested, published),
        "inQuestDBPercent": share(ingested, published, float(request.get("progress") or 0.0)),
    }
