"""Lag in seconds from the messages' CreateTime, on /metrics and in `histfill lag --json`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
from confluent_kafka import Producer

from shared.codec import BatchCodec
from shared.kafka import producer_config
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import BASE_US, ConsumerProcess, make_batch

pytestmark = pytest.mark.stack

POINTS = [f"SITE7.AHU{i:02d}.SAT" for i in range(8)]
HOUR_S = 3600


def produce_aged(settings: ConsumerSettings, topic: str, age_s: float) -> None:
    """One batch per point whose Kafka CreateTime is ``age_s`` seconds in the past."""
    producer = Producer(producer_config(settings))
    codec = BatchCodec()
    created_ms = int((time.time() - age_s) * 1000)
    for address in POINTS:
        producer.produce(
            topic,
            codec.encode(make_batch(address, BASE_US, 10)),
            key=address.encode(),
            timestamp=created_ms,
        )
    assert producer.flush(30) == 0


def _series(consumer: ConsumerProcess, name: str) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{consumer.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        labels: float(value)
        for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
    }


def test_lag_seconds_is_the_age_of_the_oldest_unread_message(
    infra: ConsumerSettings,
    stack_env: dict[str, str],
    start_consumer: Callable[..., ConsumerProcess],
) -> None:
    """Backfill messages created an hour ago, held back by the rate cap: their partitions lag
    an hour on /metrics and in `histfill lag --json`; the drain ETA is exported; real-time
    values written make the newest value's age small."""
    produce_aged(infra, infra.topic_backfill, HOUR_S)
    consumer = start_consumer(BACKFILL_MAX_VALUES_PER_SECOND="0.01", POLL_BATCH="1")

    def lagging() -> dict[str, float]:
        return {
            k: v
            for k, v in _series(consumer, "histfill_consumer_lag_seconds").items()
            if infra.topic_backfill in k and v > 0
        }

    wait_for(lambda: bool(lagging()), timeout=90)
    assert all(HOUR_S <= v < HOUR_S + 600 for v in lagging().values()), lagging()
    wait_for(lambda: bool(_series(consumer, "histfill_consumer_drain_eta_seconds")), timeout=60)

    out = subprocess.run(
        [sys.executable, "-m", "histfill", "lag", "--json", "--rate-window", "1"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    doc = json.loads(out)
    backfill = doc["topics"][infra.topic_backfill]
    assert backfill["lag_messages"] > 0
    assert HOUR_S <= backfill["lag_seconds"] < HOUR_S + 600
    assert {p["topic"] for p in doc["partitions"]} == {infra.topic_backfill, infra.topic_realtime}
    assert doc["topics"][infra.topic_realtime]["lag_seconds"] == 0

    produce_aged(infra, infra.topic_realtime, 0)
    wait_for(
        lambda: (
            _series(consumer, "histfill_realtime_newest_value_timestamp_seconds").get("", 0) > 0
        ),
        timeout=60,
    )
    assert consumer.terminate() == 0
