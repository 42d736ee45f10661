"""Status that tells the truth, on the real stack: a window reaching into the future is recorded
only up to the read and filled by a rerun; one failing point of several is counted per point,
listed, and retried in one call; finished requests stay on the status page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from producer.api import cli
from producer.state.progress import Status
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, ProducerSettings, load_settings
from simulators.data import expected_count
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (  # noqa: F401  # fixtures used by name
    ConsumerProcess,
    count_rows,
    duplicate_keys,
    infra,
    start_consumer,
)
from tests.integration.producer.conftest import Service, read_committed, values_by_point

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = ["SINUSOID", "CDT158", "SINUSOIDU"]
PI_ENV = {"PI_USERNAME": "pi", "PI_PASSWORD": "pw", "PI_DEFAULT_SERVER": "PISRV01"}


def _final(service: Service, request_id: str, timeout: float = 120) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(service.get(f"/api/backfill/request/{request_id}"))
        return Status(found["status"]).final

    wait_for(finished, timeout=timeout, interval=0.1)
    return found


def _start(service: Service, body: dict[str, Any]) -> str:
    response = service.post("/api/backfill/start", body)
    assert response.status_code == 200, response.text
    request_id: str = response.json()["data"]["requestId"]
    return request_id


def test_a_window_ending_in_the_future_is_recorded_up_to_the_read_and_a_rerun_fills_it(
    service: Service,
    infra: ConsumerSettings,  # noqa: F811  # the consumer's fixture
    start_consumer: Callable[..., ConsumerProcess],  # noqa: F811
    qdb: QuestDBSQL,
) -> None:
    """A request whose endTime is seconds ahead ends Partial with coveredUntil before endTime;
    rerun once endTime has passed, it reads the rest, and QuestDB holds every value the source
    has for the window exactly once."""
    start_consumer()
    with serve_in_thread(PISimulator(PISimulatorOptions(interval_s=1.0)).app) as pi:
        env = {"PI_WEB_API_URL": f"{pi.url}/piwebapi", **PI_ENV}
        service.start(**env)
        # the window is taken once the service is up, so its end is still ahead when it is read
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = now - timedelta(seconds=30), now + timedelta(seconds=30)
        body = {
            "connectorType": "PIWebApi",
            "pointAddresses": POINTS,
            "startTime": start.isoformat(),
            "endTime": end.isoformat(),
            "chunkSize": "00:01:00",
        }
        first = _final(service, _start(service, body))
        assert first["status"] == "Partial", first
        covered = datetime.fromisoformat(first["coveredUntil"])
        assert start < covered < end
        assert first["message"].startswith("endTime was in the future: recorded up to ")
        assert (first["completedChunks"], first["partialChunks"]) == (0, 1)
        assert first["partialPointChunks"] == len(POINTS)
        assert first["pointsCompleted"] == 0
        service.stop()  # what it says survives a restart
        service.start(**env)
        restored = service.get(f"/api/backfill/request/{first['requestId']}")
        kept = ("status", "coveredUntil", "message", "partialChunks", "partialPointChunks")
        assert {k: restored[k] for k in kept} == {k: first[k] for k in kept}

        wait_for(lambda: datetime.now(UTC) >= end, timeout=60, interval=0.2)
        second = _final(service, _start(service, body))
    assert second["status"] == "Completed", second
    assert second["coveredUntil"] is None
    assert second["completedPointChunks"] == len(POINTS)
    assert second["pointsCompleted"] == len(POINTS)

    expected = sum(expected_count(p, start, end, interval_s=1.0) for p in POINTS)
    assert expected == 60 * len(POINTS)
    assert first["valuesProcessed"] + second["valuesProcessed"] == expected  # nothing re-read
    table = infra.qdb_table
    wait_for(lambda: count_rows(qdb, table) >= expected, timeout=90, interval=0.25)
    assert count_rows(qdb, table) == expected
    assert duplicate_keys(qdb, table) == []


def test_one_failing_point_is_counted_listed_survives_a_restart_and_is_retried(
    service: Service,
) -> None:
    """One tag failing of three: every chunk has a failed point, but the other points'
    point-chunks are completed, the request ends CompletedWithErrors listing the point; the
    counts survive a producer restart, the finished request stays under recentRequests, and one
    retry call (the fault cleared) publishes the rest, each value once."""
    start, end = datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 9, 6, tzinfo=UTC)
    body = {
        "connectorType": "PIWebApi",
        "pointAddresses": POINTS,
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "chunkSize": "01:00:00",
    }
    sim = PISimulator()
    sim.faults.update({"error_tags": ["CDT158"]})
    with serve_in_thread(sim.app) as pi:
        env = {"PI_WEB_API_URL": f"{pi.url}/piwebapi", **PI_ENV}
        service.start(**env)
        request_id = _start(service, body)
        done = _final(service, request_id)
        counts = {
            "status": "CompletedWithErrors",
            "totalChunks": 6,
            "completedChunks": 0,
            "failedChunks": 6,
            "completedPointChunks": 12,
            "skippedPointChunks": 0,
            "failedPointChunks": 6,
            "pointsCompleted": 2,
            "failedPointCount": 1,
            "valuesProcessed": 2 * 360,
            "pointsProcessed": 2 * 360,
        }
        assert {k: done[k] for k in counts} == counts
        assert list(done["failedPoints"]) == ["CDT158"]
        assert "Archive read failed" in done["failedPoints"]["CDT158"]

        status = service.get("/api/backfill/status")
        assert [r["requestId"] for r in status["recentRequests"]] == [request_id]
        assert status["recentRequests"][0]["status"] == "CompletedWithErrors"
        assert status["activeRequests"] == []

        runner = CliRunner()
        # wide enough that the table never folds an id, whatever its other columns hold
        listing = runner.invoke(cli.app, ["status", "--url", service.url], env={"COLUMNS": "250"})
        assert listing.exit_code == 0, listing.output
        assert request_id in listing.output  # finished, still listed
        one = runner.invoke(cli.app, ["status", request_id, "--url", service.url])
        text = " ".join(one.output.split())  # the console folds long lines
        assert f"Failed points (1; retry them with: histfill backfill retry {request_id})" in text
        assert "CDT158: " in text

        service.stop()
        service.start(**env)
        restored = service.get(f"/api/backfill/request/{request_id}")
        assert {k: restored[k] for k in counts} == counts
        assert restored["failedPoints"] == done["failedPoints"]
        recent = service.get("/api/backfill/status")["recentRequests"]
        assert [r["requestId"] for r in recent] == [request_id]

        sim.faults.update({"error_tags": []})
        response = service.post(f"/api/backfill/request/{request_id}/retry")
        assert response.status_code == 200, response.text
        retried = response.json()["data"]
        assert retried["retryOf"] == request_id
        assert retried["pointCount"] == 1
        again = _final(service, retried["requestId"])
    assert again["status"] == "Completed", again
    assert again["pointAddresses"] == ["CDT158"]
    assert (again["completedPointChunks"], again["failedPointChunks"]) == (6, 0)
    assert again["valuesProcessed"] == 360
    nothing = CliRunner().invoke(cli.app, ["retry", again["requestId"], "--url", service.url])
    assert nothing.exit_code == 2
    assert "409 (requestId)" in nothing.output
    assert "has no failed points to retry" in " ".join(nothing.output.split())
    seen = values_by_point(read_committed(_settings(service)))
    for point in POINTS:
        assert sorted(seen[point]) == sorted(set(seen[point]))
        assert len(seen[point]) == expected_count(point, start, end)


def _settings(service: Service) -> ProducerSettings:
    return load_settings(ProducerSettings, service.env)
