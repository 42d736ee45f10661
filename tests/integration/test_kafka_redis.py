"""Topics and the wire format against a real Kafka broker, and Redis answering."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.kafka import consumer_config, ensure_topics, producer_config, topic_specs
from shared.settings import ConsumerSettings

pytestmark = pytest.mark.stack


def test_topics_are_created_once_with_their_partitions(
    settings: ConsumerSettings, admin: AdminClient
) -> None:
    """ensure_topics creates the four topics, then finds nothing to do on a second run."""
    created = ensure_topics(admin, topic_specs(settings))
    assert sorted(created) == sorted(
        [settings.topic_realtime, settings.topic_backfill, settings.topic_dlq, settings.topic_state]
    )
    assert ensure_topics(admin, topic_specs(settings)) == []
    topics = admin.list_topics(timeout=10).topics
    assert len(topics[settings.topic_backfill].partitions) == settings.topic_backfill_partitions
    (future,) = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, settings.topic_state)]
    ).values()
    assert future.result(timeout=10)["cleanup.policy"].value == "compact"


def test_redis_answers(redis_client: redis.Redis, settings: ConsumerSettings) -> None:
    """The local Redis answers PING and stores a hash."""
    assert redis_client.ping()
    key = f"{settings.redis_key_prefix}probe"
    redis_client.hset(key, mapping={"value": "1.5"})
    assert redis_client.hget(key, "value") == b"1.5"


def test_encoded_batch_round_trips_through_the_broker(
    settings: ConsumerSettings, admin: AdminClient
) -> None:
    """A batch encoded, produced and consumed back from the real broker decodes identical."""
    ensure_topics(admin, topic_specs(settings))
    batch = PointBatch.from_columns(
        "\\\\PISRV01\\Ünit-7 Flow",
        "PIWebApi",
        np.arange(10_000, dtype=np.int64) * 60_000_000 + 1_704_067_200_000_000,
        np.r_[np.linspace(-1e6, 1e6, 9_997), [np.nan, np.inf, -np.inf]],
        quality=np.arange(10_000) % 3,
        texts=["Active" if i % 7 == 0 else "" for i in range(10_000)],
        request_id="req-1",
        chunk_index=3,
        unit="m3/h",
    )
    codec = BatchCodec()
    producer = Producer(producer_config(settings))
    producer.produce(
        settings.topic_backfill, codec.encode(batch), key=batch.source_address.encode()
    )
    assert producer.flush(30) == 0

    reader = Consumer(consumer_config(settings, f"{settings.consumer_group_id}-rt"))
    reader.subscribe([settings.topic_backfill])
    received: list[bytes] = []
    deadline = 30.0
    while not received and deadline > 0:
        message = reader.poll(0.5)
        deadline -= 0.5
        if message is not None and message.error() is None:
            received.append(message.value() or b"")
    reader.close()
    assert len(received) == 1
    assert codec.decode(received[0]) == batch
