"""A consumer killed and restarted gets its partitions back without waiting out its session."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (
    BASE_US,
    MINUTE_US,
    BatchProducer,
    ConsumerProcess,
    make_batch,
    wait_for_count,
)

pytestmark = pytest.mark.stack

SESSION_TIMEOUT_S = 60
LIVE_US = BASE_US + 10**6 * MINUTE_US  # live values, after every backfilled one
POINTS = [f"SITE3.VAV{i:02d}.ZNT" for i in range(12)]


def _started(consumer: ConsumerProcess) -> dict[str, object]:
    """The consumer's `consumer_started` log record (instance id, session timeout)."""
    for line in consumer.log().splitlines():
        if '"consumer_started"' in line:
            record: dict[str, object] = json.loads(line)
            return record
    raise AssertionError("consumer_started not logged")


def test_sigkilled_consumer_restarted_resumes_well_within_the_session_timeout(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """Static membership: the restarted process takes the dead member's place (same instance
    id) at once, instead of waiting for the dead member's session to expire."""
    env = {"CONSUMER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_S * 1000)}
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 100))
        producer.send(infra.topic_realtime, make_batch(address, LIVE_US, 1))
    producer.flush()
    first = start_consumer(**env)
    wait_for_count(qdb, infra.qdb_table, producer.values)
    first.kill()

    killed_at = time.monotonic()
    second = start_consumer(**env)
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US + 100 * MINUTE_US, 100))
        producer.send(infra.topic_realtime, make_batch(address, LIVE_US + MINUTE_US, 1))
    producer.flush()
    # Without static membership the group waits for the dead member's session (60 s here)
    # before the new process gets any partition; half of it is a wide margin for a slow start.
    wait_for_count(qdb, infra.qdb_table, producer.values, timeout=SESSION_TIMEOUT_S / 2)
    resumed_s = time.monotonic() - killed_at
    assert resumed_s < SESSION_TIMEOUT_S / 2
    print(f"restart to every new value ingested: {resumed_s:.1f} s")  # noqa: T201  # the figure
    started = _started(second)
    assert started["instance_id"] == _started(first)["instance_id"]
    assert started["session_timeout_ms"] == SESSION_TIMEOUT_S * 1000
    assert second.terminate() == 0


def test_two_consumers_on_one_host_get_distinct_instance_ids(
    infra: ConsumerSettings,
    start_consumer: Callable[..., ConsumerProcess],
) -> None:
    """Two consumers of one group on one host must not share a static id (they would fence
    each other): the second takes the next free slot; a third asking for a taken id is refused
    naming the variable."""
    first = start_consumer()
    second = start_consumer()
    wait_for(lambda: "partitions_assigned" in first.log() and "partitions_assigned" in second.log())
    assert _started(first)["instance_id"] != _started(second)["instance_id"]
    taken = str(_started(first)["instance_id"])
    third = start_consumer(CONSUMER_INSTANCE_ID=taken)
    assert third.process is not None
    assert third.process.wait(60) == 1
    assert "CONSUMER_INSTANCE_ID" in third.log()
    assert first.terminate() == 0
    assert second.terminate() == 0


def _assigned_now(consumer: ConsumerProcess) -> int:
    """How many partitions the consumer's last `partitions_assigned` record lists."""
    records = [json.loads(line) for line in consumer.log().splitlines() if line.startswith("{")]
    assigned = [r for r in records if r.get("event") == "partitions_assigned"]
    revoked = [r for r in records if r.get("event") == "partitions_revoked"]
    if not assigned or (revoked and revoked[-1]["timestamp"] > assigned[-1]["timestamp"]):
        return 0
    return len(assigned[-1]["partitions"])


def test_a_consumer_stopped_for_good_hands_its_partitions_over_at_once(
    infra: ConsumerSettings,
    producer: BatchProducer,
    start_consumer: Callable[..., ConsumerProcess],
    qdb: QuestDBSQL,
) -> None:
    """Scale-in: SIGTERM one of two static members; it leaves the group after its last
    commit, so the other takes every partition well within the session timeout."""
    env = {"CONSUMER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_S * 1000)}
    first = start_consumer(**env)
    second = start_consumer(**env)
    every = infra.topic_realtime_partitions + infra.topic_backfill_partitions

    def shared() -> bool:
        mine, theirs = _assigned_now(first), _assigned_now(second)
        return mine > 0 and theirs > 0 and mine + theirs == every

    wait_for(shared, timeout=60)

    assert first.terminate() == 0
    stopped_at = time.monotonic()
    for address in POINTS:
        producer.send(infra.topic_backfill, make_batch(address, BASE_US, 100))
        producer.send(infra.topic_realtime, make_batch(address, LIVE_US, 1))
    producer.flush()
    wait_for(lambda: _assigned_now(second) == every, timeout=SESSION_TIMEOUT_S / 2)
    wait_for_count(qdb, infra.qdb_table, producer.values, timeout=SESSION_TIMEOUT_S / 2)
    handed_over_s = time.monotonic() - stopped_at
    assert handed_over_s < SESSION_TIMEOUT_S / 2
    print(f"stop to every new value ingested by the other: {handed_over_s:.1f} s")  # noqa: T201
    assert '"group_left"' in first.log()
    assert second.terminate() == 0
