"""Kafka helpers shared by the services: client configs from settings and idempotent topics.

Clients are created by the services' ``main()`` (never at import time) from these configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shared.errors import HistfillError
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


class KafkaSetupError(HistfillError):
    """Topics could not be created or checked."""

    retriable = True


def base_config(settings: CommonSettings) -> dict[str, Any]:
    """librdkafka properties every client shares: servers and security."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        conf["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return conf


PRODUCER_MESSAGE_MAX_BYTES = 8_388_608
"""The largest message our producers send (librdkafka ``message.max.bytes``, 8 MiB): a data
batch stays far below it, and a backfill request's state record must fit in it."""


def producer_config(settings: CommonSettings, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer tuned for large batches (lz4, 64 KiB-1 MiB batches)."""
    return {
        **base_config(settings),
        "enable.idempotence": True,
        # Java-compatible murmur2 spreads similar point names ("AHU01.SAT", "AHU02.SAT") across
        # partitions; librdkafka's default CRC32 put 16 such names on 2 of 4 partitions.
        "partitioner": "murmur2_random",
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_048_576,
        "message.max.bytes": PRODUCER_MESSAGE_MAX_BYTES,
        **overrides,
    }


def consumer_config(settings: CommonSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only offsets the application stored after the sink accepted.

    ``enable.auto.offset.store`` is off, so librdkafka's background auto-commit can only commit
    offsets we stored explicitly (``store_offsets``) after QuestDB acknowledged the rows; it also
    commits them on revoke and close. Committing in the background never blocks the poll loop
    (a synchronous commit inside a cooperative rebalance can stall until the rebalance ends).
    ``read_committed`` hides the data of aborted backfill transactions.
    """
    return {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        # Bounded prefetch: librdkafka's local queue (default 64 MiB) and in-flight fetches
        # (default 50 MiB) dominated the consumer's RSS. They fill while the loop waits for a
        # flush; 1 MiB each is refilled faster than the loop drains it (a fetch bigger than
        # this still returns its first record batch whole, so big messages pass). Measured (e2e,
        # 120 days): 8 -> 4 MiB took the peak from 250-270 to 232-236 MB; with flushes holding
        # back history (consumer.pending), 4 -> 2 -> 1 MiB took it 265 -> 256 -> 248 MB at the
        # same throughput.
        "queued.max.messages.kbytes": 1024,
        "fetch.max.bytes": 1024 * 1024,
        # ...but only if the fetcher looks again soon: once the local queue is over its bound,
        # librdkafka (2.1+) waits fetch.queue.backoff.ms, 1 s by default, before fetching that
        # partition again. With a 4 MiB queue that was most of the time: the loop sat in
        # consume() (py-spy: ~85 % of its samples) while the writer idled a third of the run.
        # Measured (e2e, 120 days): 513 k -> 825 k values/s.
        "fetch.queue.backoff.ms": 10,
        # range balances each topic on its own, so a second consumer takes half of the backfill
        # partitions too (cooperative-sticky balances the total, and may hand one member every
        # real-time partition and the other every backfill partition).
        "partition.assignment.strategy": "range",
        **overrides,
    }


def static_membership(instance_id: str, session_timeout_ms: int) -> dict[str, Any]:
    """Overrides that make a consumer a static group member (see ``consumer.membership``).

    Restarted with the same ``group.instance.id`` within ``session.timeout.ms`` it gets its
    partitions back without a rebalance; closed, it does not leave the group (librdkafka sends
    no LeaveGroup for a static member), so its partitions wait for the session to expire.
    """
    return {"group.instance.id": instance_id, "session.timeout.ms": session_timeout_ms}


@dataclass(frozen=True)
class TopicSpec:
    """A topic histfill needs, with the partition count and configs it should have."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: CommonSettings) -> list[TopicSpec]:
    """The four topics: real-time, backfill, dead letters, and compacted backfill state."""
    rf = settings.topic_replication_factor
    return [
        TopicSpec(settings.topic_realtime, settings.topic_realtime_partitions, rf),
        TopicSpec(settings.topic_backfill, settings.topic_backfill_partitions, rf),
        TopicSpec(settings.topic_dlq, settings.topic_dlq_partitions, rf, {"retention.ms": "-1"}),
        TopicSpec(
            settings.topic_state,
            settings.topic_state_partitions,
            rf,
            # compacted: the latest state per request/chunk key survives forever
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
    ]


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to run concurrently.

    An existing topic is left as it is (with a warning when it has fewer partitions than asked):
    changing partition counts under a running pipeline would move keys between partitions.
    """
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise KafkaSetupError(f"cannot list Kafka topics: {exc}") from exc
    missing = [spec for spec in specs if spec.name not in existing]
    for spec in specs:
        if spec.name in existing and len(existing[spec.name].partitions) < spec.partitions:
            log.warning(
                "topic_has_fewer_partitions",
                topic=spec.name,
                partitions=len(existing[spec.name].partitions),
                wanted=spec.partitions,
            )
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config=s.config,
            )
            for s in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
            log.info("topic_created", topic=name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another service won the race: fine
            raise KafkaSetupError(f"cannot create topic {name}: {exc}") from exc
    return created
