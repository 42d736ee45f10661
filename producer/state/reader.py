"""Reading the state topic back into a :class:`~producer.state.checkpoints.StateView` at start.

The reader uses ``read_committed`` and assigns every partition from the beginning, with no
consumer group (nothing is committed: the whole compacted topic is the state). It reads until
each partition reports EOF, which for ``read_committed`` means "up to the last stable offset":
run :func:`producer.worker.publisher.fence` first, so no crashed transaction holds that offset back.
"""

from __future__ import annotations

import time
import uuid

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from producer.errors import StateError
from producer.state.checkpoints import StateView
from shared.kafka import consumer_config
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


def read_state(settings: CommonSettings, timeout_s: float = 60.0) -> StateView:
    """Every record of the state topic folded into a view; ``StateError`` past the deadline."""
    view = StateView()
    consumer = Consumer(
        consumer_config(
            settings,
            f"histfill-state-reader-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": True, "fetch.wait.max.ms": 50},
        )
    )
    started = time.monotonic()
    try:
        topic = settings.topic_state
        try:
            metadata = consumer.list_topics(topic, timeout=10.0).topics[topic]
        except KafkaException as exc:
            raise StateError(f"cannot describe state topic {topic}: {exc}") from exc
        if metadata.error is not None:
            raise StateError(f"state topic {topic}: {metadata.error}")
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        while pending:
            if time.monotonic() - started > timeout_s:
                raise StateError(f"state topic {topic} not read to its end in {timeout_s}s")
            for msg in consumer.consume(1000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise StateError(f"reading state topic {topic}: {err.str()}")
                key = msg.key()
                if key is None:
                    continue
                try:
                    view.apply(key.decode(), msg.value())
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("state_record_skipped", offset=msg.offset(), error=str(exc))
    finally:
        consumer.close()
    log.info(
        "state_rebuilt",
        topic=settings.topic_state,
        records=view.records,
        requests=len(view.requests),
        seconds=round(time.monotonic() - started, 3),
    )
    return view
