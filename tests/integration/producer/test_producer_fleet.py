"""A producer fleet: three ``python -m producer`` processes share one request's chunk tasks
through Kafka; one is SIGKILLed mid-request and the others finish it, each chunk exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producer.sources.connectors import Connectors
from shared.settings import ProducerSettings
from tests.helpers import wait_for
from tests.integration.producer.conftest import Service, read_committed, values_by_point

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = [f"SIMTAG{i:05d}" for i in range(100)]
START, END = "2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z"  # 90 days
# 100 points x 90 days of hourly values = 216,000 values in 900 one-day tasks (10-point groups);
# a publish cap of 5,000 values/s per member keeps the request running ~15 s with three members
FLEET_ENV = {
    "PRODUCER_FLEET": "true",
    "SIMULATOR_INTERVAL_SECONDS": "3600",
    "SIMULATOR_GENERATED_TAGS": "100",
    "PUBLISH_MAX_VALUES_PER_SECOND": "5000",
    "TOPIC_TASKS_PARTITIONS": "6",
}
FINAL = {"Completed", "CompletedWithErrors", "Failed", "Cancelled", "Partial"}


@pytest.fixture
def fleet(
    producer_env: dict[str, str], producer_settings: ProducerSettings, tmp_path: Path
) -> Iterator[list[Service]]:
    """Three fleet members on this test's topics, group and tasks topic (not yet started)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **producer_env,
        **FLEET_ENV,
        "TOPIC_TASKS": f"{producer_env['TOPIC_STATE']}.tasks",
        "PRODUCER_GROUP_ID": f"fleet-{tag}",
        "SOURCE_RATE_LIMIT_KEY_PREFIX": f"test:{tag}:ratelimit:",
    }
    members = [
        Service({**env, "PRODUCER_INSTANCE_ID": f"m{i}"}, tmp_path / f"m{i}.log") for i in range(3)
    ]
    yield members
    for member in members:
        member.stop()


def _tasks_done(status: dict[str, Any], request_id: str) -> dict[str, int]:
    members = status["fleet"]["members"]
    return {m: info.get("tasksDone", {}).get(request_id, 0) for m, info in members.items()}


def _expected_values(settings: ProducerSettings) -> int:
    connectors = Connectors.from_settings(
        settings.model_copy(
            update={"simulator_interval_seconds": 3600.0, "simulator_generated_tags": 100}
        )
    )
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2025, 4, 1, tzinfo=UTC)
    counts = [connectors.exact_count("Simulator", p, start, end) for p in POINTS]
    assert all(c is not None for c in counts)
    return sum(c or 0 for c in counts)


def test_three_members_share_a_request_and_survive_a_sigkill(
    fleet: list[Service], producer_settings: ProducerSettings
) -> None:
    """Every member commits tasks; after one is SIGKILLed the others take its tasks within the
    session timeout, the request completes on every member's API, and a read_committed reader
    sees every value the source has exactly once."""
    for member in fleet:
        member.start()
    first, second, victim = fleet
    response = first.post(
        "/api/backfill/start",
        {
            "connectorType": "Simulator",
            "pointAddresses": POINTS,
            "startTime": START,
            "endTime": END,
            "chunkSize": "1d",
        },
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["data"]["requestId"]
    assert response.json()["data"]["totalChunks"] == 900

    # spread over all three: each member has committed tasks of the request
    wait_for(
        lambda: (
            all(n >= 3 for n in _tasks_done(first.get("/api/backfill/status"), request_id).values())
            and len(_tasks_done(first.get("/api/backfill/status"), request_id)) == 3
        ),
        timeout=120,
        interval=0.2,
    )
    victim.kill()
    at_kill = first.get(f"/api/backfill/request/{request_id}")
    assert at_kill["status"] not in FINAL, "the request must still be running when one dies"

    wait_for(
        lambda: first.get(f"/api/backfill/request/{request_id}")["status"] in FINAL,
        timeout=180,
        interval=0.5,
    )
    done = first.get(f"/api/backfill/request/{request_id}")
    assert done["status"] == "Completed", done
    # any member answers the same
    assert second.get(f"/api/backfill/request/{request_id}")["status"] == "Completed"
    counts = _tasks_done(second.get("/api/backfill/status"), request_id)
    assert sum(counts.values()) == 900
    assert min(counts[m] for m in ("m0", "m1", "m2")) > 0

    expected = _expected_values(producer_settings)
    assert expected == 216_000
    seen = values_by_point(read_committed(producer_settings))
    assert sorted(seen) == sorted(POINTS)
    total = sum(len(ts) for ts in seen.values())
    duplicates = sum(len(ts) - len(set(ts)) for ts in seen.values())
    assert duplicates == 0, f"{duplicates} values committed twice"
    assert total == expected
    assert done["valuesPublished"] == expected
