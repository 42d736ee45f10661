"""Live mode on the real stack: current simulator values land on the real-time topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producer.live.poller import LivePoller
from producer.sources.connectors import Connectors
from shared.codec import BatchCodec
from shared.settings import ProducerSettings
from tests.integration.producer.conftest import LoopThread, read_committed, values_by_point

pytestmark = [pytest.mark.stack]

NOON = datetime(2026, 1, 9, 12, tzinfo=UTC).timestamp()


def test_polls_publish_every_value_since_the_last_poll(
    loop: LoopThread, producer_settings: ProducerSettings
) -> None:
    """Each poll publishes the values recorded since the previous one to the real-time topic,
    none twice and none missed."""
    settings = producer_settings.model_copy(
        update={
            "live_connector": "Simulator",
            "live_points": "SINUSOID, CDT158",
            "live_poll_interval_seconds": 60.0,
        }
    )
    now = [NOON]
    poller = LivePoller(
        settings, Connectors.from_settings(settings), BatchCodec(), clock=lambda: now[0]
    )
    assert loop.run(poller.poll_once()) == 2  # the last minute: one value per point
    now[0] += 300
    assert loop.run(poller.poll_once()) == 10  # five more minutes
    loop.run(poller.stop())
    stamps = values_by_point(read_committed(settings, settings.topic_realtime))
    for point in ("SINUSOID", "CDT158"):
        assert len(stamps[point]) == len(set(stamps[point])) == 6
        assert max(stamps[point]) < (NOON + 300) * 1_000_000
    assert read_committed(settings) == []  # nothing went to the backfill topic
