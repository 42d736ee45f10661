"""Fixtures for tests against the real local stack (Kafka, QuestDB, Redis processes).

``make test`` starts the stack before pytest; the ``stack`` fixture brings it up itself when a
test session is started some other way (``histfill stack up`` is idempotent). Each test gets its
own topic names and table, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka.admin import AdminClient

from histfill import stack as stack_mod
from shared.kafka import base_config
from shared.qdb import QuestDBSQL, points_table
from shared.settings import ConsumerSettings, load_settings


@pytest.fixture(scope="session")
def stack() -> None:
    """The real stack is up (started here if `make stack-up` was not run)."""
    stack_mod.up()


@pytest.fixture
def stack_env(stack: None) -> dict[str, str]:
    """Environment variables naming topics, table and keys unique to this test."""
    tag = uuid.uuid4().hex[:10]
    return {
        "TOPIC_REALTIME": f"t{tag}.datapoints",
        "TOPIC_BACKFILL": f"t{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"t{tag}.datapoints.dlq",
        "TOPIC_STATE": f"t{tag}.backfill.state",
        "TOPIC_BACKFILL_PARTITIONS": "4",
        "QDB_TABLE": f"point_data_{tag}",
        "REDIS_KEY_PREFIX": f"test:{tag}:",
        "CONSUMER_GROUP_ID": f"g{tag}",
    }


@pytest.fixture
def settings(stack_env: dict[str, str]) -> ConsumerSettings:
    """Settings with topic, table and key names unique to this test."""
    return load_settings(ConsumerSettings, stack_env)


@pytest.fixture
def admin(settings: ConsumerSettings) -> AdminClient:
    return AdminClient(base_config(settings))


@pytest.fixture
def qdb(settings: ConsumerSettings) -> Iterator[QuestDBSQL]:
    """SQL access to QuestDB; drops the test's table afterwards."""
    with QuestDBSQL.from_settings(settings) as sql:
        yield sql
        sql.exec(f"DROP TABLE IF EXISTS {settings.qdb_table}")
        sql.exec(f"DROP TABLE IF EXISTS {points_table(settings.qdb_table)}")


@pytest.fixture
def redis_client(settings: ConsumerSettings) -> Iterator[redis.Redis]:
    """A Redis client; deletes the test's keys afterwards."""
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    yield client
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}*"):
        client.delete(key)
    client.close()
