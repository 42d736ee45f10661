"""A producer fleet: three ``python -m producer`` processes share one request's chunk tasks
through Kafka; one is SIGKILLed mid-request and the others finish it, each chunk exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
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


def _submit(member: Service, start: str = START, end: str = END) -> str:
    response = member.post(
        "/api/backfill/start",
        {
            "connectorType": "Simulator",
            "pointAddresses": POINTS,
            "startTime": start,
            "endTime": end,
            "chunkSize": "1d",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["totalChunks"] == 900
    request_id: str = response.json()["data"]["requestId"]
    return request_id


def _spread(member: Service, request_id: str, members: int = 3, each: int = 3) -> bool:
    counts = _tasks_done(member.get("/api/backfill/status"), request_id)
    return len(counts) == members and all(n >= each for n in counts.values())


def _await_final(member: Service, request_id: str) -> dict[str, Any]:
    wait_for(
        lambda: member.get(f"/api/backfill/request/{request_id}")["status"] in FINAL,
        timeout=240,
        interval=0.5,
    )
    return member.get(f"/api/backfill/request/{request_id}")


def _assert_exactly_once(settings: ProducerSettings, done: dict[str, Any]) -> None:
    """Every value the source has is in the backfill topic, none twice (read_committed)."""
    expected = _expected_values(settings)
    assert expected == 216_000
    seen = values_by_point(read_committed(settings))
    assert sorted(seen) == sorted(POINTS)
    duplicates = sum(len(ts) - len(set(ts)) for ts in seen.values())
    assert duplicates == 0, f"{duplicates} values committed twice"
    assert sum(len(ts) for ts in seen.values()) == expected
    assert done["valuesPublished"] == expected


def test_three_members_share_a_request_and_survive_a_sigkill(
    fleet: list[Service], producer_settings: ProducerSettings
) -> None:
    """Every member commits tasks; after one is SIGKILLed the others take its tasks within the
    session timeout, the request completes on every member's API, and a read_committed reader
    sees every value the source has exactly once."""
    for member in fleet:
        member.start()
    first, second, victim = fleet
    request_id = _submit(first)
    wait_for(lambda: _spread(first, request_id), timeout=120, interval=0.2)
    victim.kill()
    at_kill = first.get(f"/api/backfill/request/{request_id}")
    assert at_kill["status"] not in FINAL, "the request must still be running when one dies"

    done = _await_final(first, request_id)
    assert done["status"] == "Completed", done
    # members answer from the state topic they tail: the other one reads the last task records
    # a moment later (a fresh CI run once caught it still Running right after the first said so)
    final = _await_final(second, request_id)
    assert final["status"] == "Completed", final
    counts = _tasks_done(second.get("/api/backfill/status"), request_id)
    assert sum(counts.values()) == 900
    assert min(counts[m] for m in ("m0", "m1", "m2")) > 0
    metrics = httpx.get(f"{second.url}/metrics", timeout=10).text
    assert 'histfill_fleet_tasks_total{member="m1",outcome="committed"}' in metrics
    for member in ("m0", "m1", "m2"):  # every member's share, as the state topic tells it
        assert f'histfill_fleet_request_tasks{{member="{member}",request_id="{request_id}"}}' in (
            metrics
        )
    _assert_exactly_once(producer_settings, done)


def test_a_member_killed_inside_a_commit_leaves_nothing_twice(
    fleet: list[Service], producer_settings: ProducerSettings
) -> None:
    """SIGKILL while a worker's transaction holds a chunk's data and checkpoint but is not yet
    committed (TEST_COMMIT_DELAY_SECONDS opens the window): a survivor fences its id, the open
    transaction is aborted, the task is redone once, and the request completes exactly once."""
    first, second, victim = fleet
    first.start()
    second.start()
    victim.start(TEST_COMMIT_DELAY_SECONDS="5")
    request_id = _submit(first)
    wait_for(lambda: _spread(first, request_id, each=1), timeout=120, interval=0.2)
    marks = victim.log_path.read_text().count("commit_delayed_for_test")
    wait_for(
        lambda: victim.log_path.read_text().count("commit_delayed_for_test") > marks,
        timeout=60,
        interval=0.05,
    )
    victim.kill()  # inside the commit's delay: records produced, transaction open
    done = _await_final(first, request_id)
    assert done["status"] == "Completed", done
    _assert_exactly_once(producer_settings, done)


def test_a_whole_fleet_restart_resumes_without_republishing(
    fleet: list[Service], producer_settings: ProducerSettings
) -> None:
    """Every member SIGKILLed mid-request, then all started again: they resume from the
    committed task offsets and checkpoints, and no committed chunk is published again."""
    for member in fleet:
        member.start()
    request_id = _submit(fleet[0])
    wait_for(lambda: _spread(fleet[0], request_id), timeout=120, interval=0.2)
    for member in fleet:
        member.kill()
    for member in fleet:
        member.start()
    before = fleet[1].get(f"/api/backfill/request/{request_id}")
    assert before["status"] not in FINAL
    assert before["completedChunks"] > 0
    done = _await_final(fleet[1], request_id)
    assert done["status"] == "Completed", done
    _assert_exactly_once(producer_settings, done)


def test_pause_resume_and_cancel_reach_every_member(
    fleet: list[Service], producer_settings: ProducerSettings
) -> None:
    """A pause asked of one member holds the request on all (every member reports it paused and
    its tasks wait uncommitted); resumed through another member it completes exactly once; a
    request cancelled through one member ends cancelled on all."""
    first, second, _ = fleet
    first.start()
    second.start()
    request_id = _submit(first)
    wait_for(lambda: _spread(first, request_id, members=2, each=1), timeout=120, interval=0.2)
    assert second.post(f"/api/backfill/request/{request_id}/pause").status_code == 200
    wait_for(
        lambda: first.get(f"/api/backfill/request/{request_id}")["status"] == "Paused",
        timeout=30,
    )
    held = sum(_tasks_done(first.get("/api/backfill/status"), request_id).values())
    assert held < 900
    assert first.post(f"/api/backfill/request/{request_id}/resume").status_code == 200
    done = _await_final(second, request_id)
    assert done["status"] == "Completed", done
    _assert_exactly_once(producer_settings, done)

    other = _submit(second, "2024-01-01T00:00:00Z", "2024-03-31T00:00:00Z")  # 90 days, new
    assert first.post(f"/api/backfill/request/{other}/cancel").status_code == 200
    cancelled = _await_final(second, other)
    assert cancelled["status"] == "Cancelled"
