"""The producer service as a real process on the real stack: the seed's Test 1, idempotent
re-runs, bad requests, and a SIGKILL in the middle of a backfill."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from producer.api import cli
from producer.state.progress import Status
from simulators.data import expected_count
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.helpers import wait_for
from tests.integration.producer.conftest import Service, read_committed, values_by_point

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = ["SINUSOID", "CDT158", "SINUSOIDU"]
TEST_ONE = {
    "connectorType": "Simulator",
    "pointAddresses": POINTS,
    "startTime": "2026-01-09T00:00:00Z",
    "endTime": "2026-01-10T00:00:00Z",
    "chunkSize": "01:00:00",
}


def _final(service: Service, request_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(service.get(f"/api/backfill/request/{request_id}"))
        return Status(found["status"]).final

    wait_for(finished, timeout=120, interval=0.1)
    return found


def _start(service: Service, body: dict[str, Any]) -> str:
    response = service.post("/api/backfill/start", body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is True
    assert payload["data"]["status"] == "Queued"
    request_id: str = payload["data"]["requestId"]
    return request_id


def _assert_exactly_once(service: Service, start: datetime, end: datetime) -> None:
    seen = values_by_point(read_committed(service_settings(service)))
    for point in POINTS:
        stamps = seen.get(point, [])
        assert len(stamps) == len(set(stamps)), f"{point} has duplicates"
        assert len(stamps) == expected_count(point, start, end)


def service_settings(service: Service) -> Any:
    from shared.settings import ProducerSettings, load_settings  # noqa: PLC0415

    return load_settings(ProducerSettings, service.env)


def test_seed_test_one_completes_and_a_rerun_publishes_nothing(service: Service) -> None:
    """Test 1 through the API completes with the simulator's 4,320 values; resubmitted, it
    skips every chunk and publishes nothing."""
    service.start()
    request_id = _start(service, TEST_ONE)
    done = _final(service, request_id)
    assert done["status"] == "Completed"
    assert done["progress"] == 100.0
    assert done["totalChunks"] == done["completedChunks"] == 24
    assert done["pointsProcessed"] == 4320
    assert done["errors"] == []
    start, end = datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    assert sum(expected_count(p, start, end) for p in POINTS) == 4320
    _assert_exactly_once(service, start, end)
    messages = len(read_committed(service_settings(service)))

    again = _final(service, _start(service, TEST_ONE))
    assert again["status"] == "Completed"
    assert again["skippedChunks"] == 24
    assert again["pointsProcessed"] == 0
    assert len(read_committed(service_settings(service))) == messages

    status = service.get("/api/backfill/status?all=true")
    assert status["stats"]["completedRequests"] == 2
    assert status["stats"]["totalPointsBackfilled"] == 4320
    assert status["queueDepth"] == 0


def test_bad_requests_leave_nothing_queued(service: Service) -> None:
    """Every bad request gets its 4xx over real HTTP, and the service queues none of them."""
    service.start()
    bad = [
        {"endTime": "2026-01-08T00:00:00Z"},
        {"pointAddresses": []},
        {"pointAddresses": ["A", "A"]},
        {"chunkSize": "fortnightly"},
        {"chunkSize": "00:00:05"},
        {"connectorType": "Nope"},
        {"connectorType": "PIAfSdk"},
        {"startTime": "not a time"},
    ]
    for changes in bad:
        response = service.post("/api/backfill/start", {**TEST_ONE, **changes})
        assert response.status_code in (400, 422), (changes, response.text)
        assert response.json()["error"]["field"] in changes
    status = service.get("/api/backfill/status?all=true")
    assert status["activeRequests"] == []
    assert status["queueDepth"] == 0


def test_sigkill_mid_backfill_resumes_and_publishes_each_chunk_once(service: Service) -> None:
    """Killed with SIGKILL mid-backfill and started again, the request resumes and completes,
    and a read_committed reader sees every value exactly once."""
    body = {**TEST_ONE, "endTime": "2026-01-11T00:00:00Z"}  # 2 days: 48 chunks, 8,640 values
    service.start(PUBLISH_MAX_VALUES_PER_SECOND="2500")
    request_id = _start(service, body)

    def midway() -> bool:
        progress = service.get(f"/api/backfill/request/{request_id}")
        return 8 <= progress["completedChunks"] <= 40

    wait_for(midway, timeout=60, interval=0.05)
    service.kill()

    service.start()  # no throttle now; the state topic says the request is unfinished
    resumed = service.get(f"/api/backfill/request/{request_id}")
    assert resumed["completedChunks"] >= 8
    done = _final(service, request_id)
    assert done["status"] == "Completed"
    assert done["completedChunks"] == 48
    assert done["pointsProcessed"] == 8640
    _assert_exactly_once(
        service, datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)
    )


def test_cli_starts_waits_and_summarises(service: Service, tmp_path: Path) -> None:
    """`histfill backfill start --wait` ends with the seed-style summary; status and cancel
    answer through the same API."""
    service.start()
    points_file = tmp_path / "points.txt"
    points_file.write_text("# Test 1 without CDT158\nSINUSOID\nSINUSOIDU\n")
    runner = CliRunner()
    args = ["--start", "2026-01-09T00:00:00Z", "--end", "2026-01-10T00:00:00Z", "--chunk", "1h"]
    result = runner.invoke(
        cli.app,
        [
            "start",
            "--connector",
            "Simulator",
            "--points-file",
            str(points_file),
            *args,
            "--wait",
            "--interval",
            "0.05",
            "--url",
            service.url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Progress: 100.0% (24/24 chunks)" in result.output
    assert "Data points: 2,880" in result.output
    assert "Skipped: 0" in result.output

    dry = runner.invoke(
        cli.app,
        [
            "start",
            "--connector",
            "Simulator",
            "--points",
            "CDT158",
            *args,
            "--dry-run",
            "--url",
            service.url,
        ],
    )
    assert dry.exit_code == 0, dry.output
    assert "1440" in dry.output

    listing = runner.invoke(cli.app, ["status", "--all", "--url", service.url])
    assert listing.exit_code == 0, listing.output
    assert "completed 1, failed 0; 2,880 values" in listing.output

    missing = runner.invoke(cli.app, ["cancel", "no-such-request", "--url", service.url])
    assert missing.exit_code == 2
    assert "404" in missing.output


def test_seed_test_one_with_pi_web_api_against_the_simulator(service: Service) -> None:
    """Test 1 with connectorType PIWebApi, read over HTTP from the PI Web API simulator,
    completes with the same 4,320 values, each once."""
    secret = "pw"  # noqa: S105  # the simulator's test credentials
    with serve_in_thread(PISimulator(PISimulatorOptions(username="pi", password=secret)).app) as pi:
        service.start(
            PI_WEB_API_URL=f"{pi.url}/piwebapi",
            PI_USERNAME="pi",
            PI_PASSWORD=secret,
            PI_DEFAULT_SERVER="PISRV01",
        )
        done = _final(service, _start(service, {**TEST_ONE, "connectorType": "PIWebApi"}))
    assert done["status"] == "Completed", done["errors"]
    assert done["pointsProcessed"] == 4320
    _assert_exactly_once(
        service, datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    )
