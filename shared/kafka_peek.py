"""Peek at the first visible message of partitions at given offsets, without a group.

Two questions need it: how old the oldest unread message is (the consumer's lag in seconds,
``consumer.timelag``), and whether anything readable is left between a group's committed offset
and the log end (``producer.state.ingested``). On topics written in transactions the answer is
not in the offsets: a group that read everything stays short of the log end by the commit
markers, and by aborted data, which a ``read_committed`` reader never sees and so never
commits past.

A plain consumer (``assign``, never ``subscribe`` nor commit) takes part in no rebalance and
moves no offsets. A fetch returns at least one record batch per partition (up to a producer's
batch size), so callers peek only where the answer may have changed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

Key = tuple[str, int]


class Peeker:
    """Answers, per partition, the offset and CreateTime of the first committed message at or
    after an offset, or None when there is none before the log end."""

    def __init__(self, config: Mapping[str, Any], timeout_s: float = 3.0) -> None:
        self._consumer = Consumer(
            {
                **config,
                "group.id": "histfill-peek",  # required by the client; never joined
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",  # an offset below the log start: from there
                # one record batch per partition is all we want: the broker sends at least one
                # even when larger than the partition limit; a small limit keeps the rest out
                "max.partition.fetch.bytes": 64 * 1024,
                "fetch.max.bytes": 8 * 1024 * 1024,
                "queued.max.messages.kbytes": 8 * 1024,
                "fetch.wait.max.ms": 10,
                "log_level": 3,
            }
        )
        self._timeout = timeout_s

    def first_visible(self, wanted: Mapping[Key, int]) -> dict[Key, tuple[int, int] | None]:
        """(topic, partition) -> (offset, CreateTime ms) of the first committed message at or
        after the offset given, None where there is none before the log end; a partition
        that did not answer within the timeout is left out."""
        if not wanted:
            return {}
        found: dict[Key, tuple[int, int] | None] = {}
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in wanted.items()])
        deadline = time.monotonic() + self._timeout
        try:
            while len(found) < len(wanted) and time.monotonic() < deadline:
                done = []
                for message in self._consumer.consume(len(wanted) - len(found), timeout=0.2):
                    key = (message.topic() or "", message.partition() or 0)
                    if key not in wanted or key in found:
                        continue
                    error = message.error()
                    if error is None:
                        found[key] = (message.offset() or 0, message.timestamp()[1])
                    elif error.code() == KafkaError._PARTITION_EOF:
                        found[key] = None
                    else:
                        continue
                    done.append(TopicPartition(*key))
                if done:
                    self._consumer.pause(done)
        finally:
            # a pause outlives the assignment in librdkafka: undo it before the next one
            self._consumer.resume([TopicPartition(t, p) for (t, p) in wanted])
            self._consumer.unassign()
        return found

    def close(self) -> None:
        self._consumer.close()
