"""Topics against a real Kafka broker, and Redis answering."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from shared.kafka import ensure_topics, topic_specs
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
