"""Every fleet member keeps tailing the state topic, so any of them answers from the same state.

The state topic is read ``read_committed`` from the beginning into a :class:`StateView` and then
followed: request records (status, cancel, pause), chunk checkpoints, failures, task records
and member records reach every member within a poll. Records are applied on the event loop's
thread only (the Kafka poll runs in a worker thread and hands over the batch), so the view is
never read half-updated.

:meth:`StateTailer.catch_up` waits until the view holds everything committed before the call
(the partitions' last stable offsets): a member that takes over a task must see the checkpoint a
dead member committed just before it died, so it skips the task instead of publishing it again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from producer.errors import StateError
from producer.state.checkpoints import StateView
from shared.kafka import consumer_config
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


class StateTailer:
    """The state topic followed into a view; :meth:`run` is the member's background task."""

    def __init__(self, settings: CommonSettings, view: StateView | None = None) -> None:
        self.settings = settings
        self.view = view or StateView()
        self._consumer: Any = None
        self._partitions: list[int] = []
        self._positions: dict[int, int] = {}
        self._stopping = False
        self._advanced = asyncio.Event()

    def open(self) -> None:
        """Assign every partition of the state topic from its beginning."""
        consumer = Consumer(
            consumer_config(
                self.settings,
                f"histfill-state-tailer-{uuid.uuid4().hex[:8]}",
                **{"enable.auto.commit": False, "fetch.wait.max.ms": 50},
            )
        )
        topic = self.settings.topic_state
        try:
            metadata = consumer.list_topics(topic, timeout=10.0).topics[topic]
        except KafkaException as exc:
            consumer.close()
            raise StateError(f"cannot describe state topic {topic}: {exc}") from exc
        self._partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._consumer = consumer

    def _poll(self) -> tuple[list[tuple[str, bytes | None]], dict[int, int]]:
        records: list[tuple[str, bytes | None]] = []
        for msg in self._consumer.consume(5000, 0.2):
            if msg.error() is not None:
                log.warning("state_tail_error", error=msg.error().str())
                continue
            key = msg.key()
            if key is not None:
                records.append((key.decode(), msg.value()))
        topic = self.settings.topic_state
        positions = self._consumer.position([TopicPartition(topic, p) for p in self._partitions])
        return records, {tp.partition: tp.offset for tp in positions if tp.offset >= 0}

    async def run(self) -> None:
        """Follow the topic until :meth:`stop`; records are applied here, on the loop."""
        while not self._stopping:
            records, positions = await asyncio.to_thread(self._poll)
            for key, value in records:
                try:
                    self.view.apply(key, value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("state_record_skipped", key=key, error=str(exc))
            self._positions.update(positions)
            self._advanced.set()
            self._advanced = asyncio.Event()

    def _ends(self) -> dict[int, int]:
        topic = self.settings.topic_state
        ends = {}
        for p in self._partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10.0, cached=False
            )
            ends[p] = high
        return ends

    async def catch_up(self, timeout_s: float = 60.0) -> None:
        """Return once the view holds every record committed before this call."""
        ends = await asyncio.to_thread(self._ends)
        deadline = time.monotonic() + timeout_s
        while any(self._positions.get(p, 0) < end for p, end in ends.items()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StateError(f"state topic not caught up in {timeout_s}s: {ends}")
            try:
                await asyncio.wait_for(self._advanced.wait(), timeout=min(1.0, remaining))
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Ask :meth:`run` to end after its current poll."""
        self._stopping = True

    def close(self) -> None:
        """Close the consumer (after :meth:`run` ended)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
