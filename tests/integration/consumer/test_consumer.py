"""The consumer service against real Kafka, QuestDB and Redis, as a real process."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer

from histfill import stack as stack_mod
from shared.codec import BatchCodec
from shared.kafka import consumer_config
from shared.qdb import QuestDBSQL, points_table
from shared.settings import ConsumerSettings
from tests.fake_registry import serve_registry
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (
    BASE_US,
    MINUTE_US,
    BatchProducer,
    ConsumerProcess,
    count_rows,
    duplicate_keys,
    make_batch,
    wait_for_count,
)
from tests.poison import local_poison, registry_poison

pytestmark = pytest.mark.stack

POINTS = [f"PLANT1.TAG{i:02d}" for i in range(6)]


def test_both_topics_land_once_with_latest_values_in_redis(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
    redis_client: redis.Redis,
) -> None:
    """Batches on both topics land as exactly as many rows; Redis holds each point's newest."""
    live_start = BASE_US + 60 * 24 * 60 * MINUTE_US  # after the 50,000 backfill minutes
    for address in POINTS:
        for k in range(10):  # 50,000 backfill values per point, older than the live ones
            producer.send(
                infra.topic_backfill, make_batch(address, BASE_US + k * 5000 * MINUTE_US, 5000)
            )
        for k in range(5):
            producer.send(
                infra.topic_realtime, make_batch(address, live_start + k * 20 * MINUTE_US, 20)
            )
    producer.flush()

    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    assert duplicate_keys(qdb, infra.qdb_table) == []
    newest_ts = live_start + (5 * 20 - 1) * MINUTE_US
    for address in POINTS:
        expected = make_batch(address, newest_ts, 1)
        wait_for(
            lambda a=address: redis_client.hget(f"{infra.redis_key_prefix}{a}", "ts") is not None
        )
        cached = redis_client.hgetall(f"{infra.redis_key_prefix}{address}")
        assert int(cached[b"ts"]) == newest_ts
        assert float(cached[b"value"]) == expected.values[0]
    assert consumer.terminate() == 0


def test_units_land_in_the_points_table_and_in_redis(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
    redis_client: redis.Redis,
) -> None:
    """A batch's unit is stored once per point (the points table, joined to the values) and in
    the point's Redis hash; a point without a unit has none (null in the join, '' in Redis);
    a changed unit replaces the old one."""
    with_unit, without, changing = POINTS[:3]
    producer.send(infra.topic_backfill, make_batch(with_unit, BASE_US, 50, unit="degF"))
    producer.send(infra.topic_backfill, make_batch(without, BASE_US, 50))
    producer.send(infra.topic_realtime, make_batch(changing, BASE_US, 50, unit="kW"))
    producer.flush()
    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, 150)
    units_table = points_table(infra.qdb_table)

    def units() -> dict[str, str | None]:
        rows = qdb.rows(
            f"SELECT d.source_address, p.unit FROM {infra.qdb_table} d "
            f"LEFT JOIN {units_table} p ON source_address "
            f"WHERE d.ts = '2025-01-01T00:00:00Z'"
        )
        return dict(rows)

    wait_for(lambda: units() == {with_unit: "degF", without: None, changing: "kW"})
    producer.send(
        infra.topic_realtime, make_batch(changing, BASE_US + 50 * MINUTE_US, 5, unit="MW")
    )
    producer.flush()
    wait_for(lambda: units()[changing] == "MW")
    assert qdb.scalar(f"SELECT count() FROM {units_table}") == 2  # one row per point with a unit
    key = f"{infra.redis_key_prefix}{{}}".format
    wait_for(lambda: redis_client.hget(key(changing), "unit") == b"MW")
    assert redis_client.hget(key(with_unit), "unit") == b"degF"
    assert redis_client.hget(key(without), "unit") == b""
    assert consumer.terminate() == 0


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """SIGKILL while ingesting, start again: every value is in QuestDB exactly once."""
    for k in range(40):
        for address in POINTS:
            producer.send(
                infra.topic_backfill, make_batch(address, BASE_US + k * 5000 * MINUTE_US, 5000)
            )
    producer.flush()
    total = producer.values  # 1.2 M values

    first = start_consumer(FLUSH_ROWS="30000", POLL_BATCH="10")
    held: list[float] = []  # flushes held history back (the default): the kill lands among them

    def progressed() -> bool:
        held.append(first.metric("histfill_consumer_held_back_values"))
        return max(held) > 0 and count_rows(qdb, infra.qdb_table) >= total // 5

    wait_for(progressed, timeout=90)
    first.kill()
    assert count_rows(qdb, infra.qdb_table) < total, "the kill must land mid-stream"

    second = start_consumer()
    wait_for_count(qdb, infra.qdb_table, total, timeout=120)
    assert duplicate_keys(qdb, infra.qdb_table) == []
    assert second.terminate() == 0


def test_old_backfill_never_overwrites_newer_live_value(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
    redis_client: redis.Redis,
) -> None:
    """A backfill of older data consumed after a live value leaves the live value in Redis."""
    key = f"{infra.redis_key_prefix}{POINTS[0]}"
    live = make_batch(POINTS[0], BASE_US + 10_000 * MINUTE_US, 1, connector="PIWebApi")
    producer.send(infra.topic_realtime, live)
    producer.flush()
    consumer = start_consumer()
    wait_for(lambda: redis_client.hget(key, "ts") is not None)

    producer.send(infra.topic_backfill, make_batch(POINTS[0], BASE_US, 5000, request_id="r1"))
    producer.flush()
    wait_for_count(qdb, infra.qdb_table, 5001)
    cached = redis_client.hgetall(key)
    assert int(cached[b"ts"]) == int(live.timestamps_us[0])
    assert cached[b"connector"] == b"PIWebApi"
    assert consumer.terminate() == 0


def test_poison_messages_go_to_the_dlq_and_later_messages_land(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """Undecodable bytes and a batch QuestDB refuses go to the DLQ with headers; the rest lands."""
    topic = infra.topic_realtime
    garbage = b"\xc3\x01" + struct.pack("<Q", 12345) + os.urandom(40)  # unknown fingerprint
    refused = make_batch("PLANT1.OLD", -10 * MINUTE_US, 3)  # before 1970: QuestDB refuses it
    producer.send(topic, make_batch(POINTS[0], BASE_US, 100))
    producer.send_raw(topic, garbage, key=POINTS[0].encode())
    producer.send(topic, refused)
    producer.send(topic, make_batch(POINTS[0], BASE_US + 100 * MINUTE_US, 100))
    producer.flush()

    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, 200)

    reader = Consumer(consumer_config(infra, "dlq-reader", **{"enable.auto.offset.store": True}))
    reader.subscribe([infra.topic_dlq])
    dead: list[tuple[bytes, dict[str, bytes]]] = []
    wait_for(lambda: _drain(reader, dead) >= 2, timeout=30)
    reader.close()
    by_type = {headers["histfill.error.type"]: (value, headers) for value, headers in dead}
    assert set(by_type) == {b"DecodeError", b"QuestDBRejected"}
    value, headers = by_type[b"DecodeError"]
    assert value == garbage
    assert headers["histfill.source.topic"] == topic.encode()
    assert headers["origin"] == b"test"
    assert b"fingerprint" in headers["histfill.error.message"]
    value, headers = by_type[b"QuestDBRejected"]
    assert BatchCodec().decode(value) == refused
    assert b"negative" in headers["histfill.error.message"]
    assert consumer.metric("histfill_dlq_messages_total") == 2
    assert consumer.terminate() == 0


def _dead_letters_by_key(
    settings: ConsumerSettings, expected: int
) -> dict[bytes, dict[str, bytes]]:
    """The DLQ's records, read until ``expected`` arrived: their headers by message key."""
    reader = Consumer(consumer_config(settings, "dlq-reader", **{"enable.auto.offset.store": True}))
    reader.subscribe([settings.topic_dlq])
    found: dict[bytes, dict[str, bytes]] = {}

    def read() -> bool:
        message = reader.poll(0.5)
        if message is not None and message.error() is None:
            found[message.key() or b""] = dict(message.headers() or [])  # type: ignore[arg-type]
        return len(found) >= expected

    try:
        wait_for(read, timeout=60)
    finally:
        reader.close()
    return found


def test_each_kind_of_poison_reaches_the_dlq_with_its_reason_code(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """One poison message of every kind a consumer without a registry can meet (a tombstone,
    bad framing, unknown schema, broken Avro, unequal columns, a timestamp QuestDB refuses)
    goes to the DLQ with its own `histfill.error.reason`, the other headers kept."""
    topic = infra.topic_realtime
    poison: dict[str, bytes | None] = {
        str(code): data for code, data in local_poison(BatchCodec()).items()
    }
    producer.send(topic, make_batch(POINTS[0], BASE_US, 100))
    for code, data in poison.items():
        producer.send_raw(topic, data, key=code.encode())
    producer.send_raw(topic, None, key=b"tombstone")
    refused = make_batch("PLANT1.OLD", -10 * MINUTE_US, 3)  # before 1970: QuestDB refuses it
    producer.send_raw(topic, BatchCodec().encode(refused), key=b"before_1970")
    producer.send(topic, make_batch(POINTS[0], BASE_US + 100 * MINUTE_US, 100))
    producer.flush()

    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, 200)
    dead = _dead_letters_by_key(infra, len(poison) + 2)
    reasons = {
        key.decode(): headers["histfill.error.reason"].decode() for key, headers in dead.items()
    }
    assert reasons == {
        **{code: code for code in poison},
        "tombstone": "empty_message",
        "before_1970": "timestamp_out_of_range",
    }
    for key, headers in dead.items():
        assert headers["origin"] == b"test"
        assert headers["histfill.source.topic"] == topic.encode()
        assert headers["histfill.error.type"] in {
            b"DecodeError",
            b"EmptyMessage",
            b"QuestDBRejected",
        }
        assert headers["histfill.error.message"], key
    assert dead[b"before_1970"]["histfill.error.type"] == b"QuestDBRejected"
    assert consumer.terminate() == 0


def test_writer_schemas_from_a_registry_that_cannot_be_read_reach_the_dlq_with_their_codes(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """A consumer reading through a schema registry dead-letters messages whose writer schema
    lacks a required field, has a field of another type, is not Avro, or is unknown to the
    registry, each with its own `histfill.error.reason`; a good message still lands."""
    topic = infra.topic_realtime
    with serve_registry() as registry:
        poison = {str(code): data for code, data in registry_poison(BatchCodec(), registry).items()}
        for code, data in poison.items():
            producer.send_raw(topic, data, key=code.encode())
        producer.send(topic, make_batch(POINTS[0], BASE_US, 100))
        producer.flush()
        consumer = start_consumer(SCHEMA_REGISTRY_URL=registry.url)
        wait_for_count(qdb, infra.qdb_table, 100)
        dead = _dead_letters_by_key(infra, len(poison))
        assert consumer.terminate() == 0
    reasons = {
        key.decode(): headers["histfill.error.reason"].decode() for key, headers in dead.items()
    }
    assert reasons == {code: code for code in poison}


def _drain(reader: Consumer, into: list[tuple[bytes, dict[str, bytes]]]) -> int:
    message = reader.poll(0.5)
    if message is not None and message.error() is None:
        into.append((message.value() or b"", dict(message.headers() or [])))  # type: ignore[arg-type]
    return len(into)


def test_questdb_outage_keeps_the_data_until_it_returns(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """With QuestDB stopped mid-ingestion the consumer retries; after it returns nothing is lost."""
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 2000))
    producer.flush()
    consumer = start_consumer()
    wait_for_count(qdb, infra.qdb_table, producer.values)
    first = producer.values

    paths = stack_mod.StackPaths()
    questdb = next(s for s in stack_mod.SERVICES if s.name == "questdb")
    assert stack_mod.stop_service("questdb", paths)
    try:
        for address in POINTS:
            producer.send(
                infra.topic_backfill, make_batch(address, BASE_US + 2000 * MINUTE_US, 3000)
            )
        producer.flush()
        wait_for(
            lambda: consumer.metric('histfill_sink_errors_total{sink="questdb"}') >= 2, timeout=60
        )
    finally:
        stack_mod.start_service(questdb, paths)
    wait_for_count(qdb, infra.qdb_table, producer.values, timeout=120)
    assert producer.values > first
    assert duplicate_keys(qdb, infra.qdb_table) == []
    assert consumer.terminate() == 0
