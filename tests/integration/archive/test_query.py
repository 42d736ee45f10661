"""POST /api/timeseries/query over both tiers: merged, time-ordered, each value once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from archive.api import create_app
from archive.hot_window import prune
from archive.keys import Month
from archive.progress import Progress
from archive.service import Archive, execute, plan
from simulators.data import expected_count
from tests.helpers import wait_for
from tests.integration.archive.conftest import CATALOG, Seed

pytestmark = pytest.mark.stack

JAN, FEB = Month(2024, 1), Month(2024, 2)
START = datetime(2024, 1, 15, tzinfo=UTC)
END = datetime(2024, 2, 20, tzinfo=UTC)


@pytest.fixture
def two_tiers(archive: Archive, seed: Seed) -> Archive:
    """SINUSOID and CDT158, Jan-Feb 2024: both months archived, QuestDB keeps Feb 10 on."""
    seed(["SINUSOID", "CDT158"], JAN.start, FEB.end)
    chosen = plan(["SINUSOID", "CDT158"], "2024-01", "2024-02", None, backfill=False)
    assert execute(archive, chosen, Progress(4)).failed == 0
    report = prune(archive.archiver, timedelta(days=10), datetime(2024, 2, 20, tzinfo=UTC))
    assert len(report.dropped) == 40  # Jan 1 .. Feb 9
    wait_for(lambda: archive.tier.count("SINUSOID", JAN.start, FEB.end) == 20 * 1440, 60)
    return archive


@pytest.fixture
def client(two_tiers: Archive) -> Iterator[TestClient]:
    with TestClient(create_app(two_tiers)) as test_client:
        yield test_client


@pytest.fixture
def bare_client(archive: Archive) -> Iterator[TestClient]:
    """The API over an empty table and bucket (for input checks)."""
    with TestClient(create_app(archive)) as test_client:
        yield test_client


def _want(point: str) -> int:
    return expected_count(point, START, END, generated_tags=CATALOG.generated_tags)


def test_answer_spans_both_tiers_once_in_time_order(client: TestClient) -> None:
    """Archive-only days, days in both tiers, each timestamp once, ordered; JSON format."""
    body = {
        "pointIds": ["SINUSOID", "CDT158"],
        "startDate": START.isoformat(),
        "endDate": END.isoformat(),
    }
    response = client.post("/api/timeseries/query", json=body)
    assert response.status_code == 200, response.text
    series = response.json()["data"]["series"]
    for item in series:
        assert item["count"] == _want(item["pointId"]) == 36 * 1440
        stamps = [datetime.fromisoformat(s) for s in item["timestamps"]]
        assert stamps[0] == START
        assert stamps[-1] == END - timedelta(minutes=1)
        assert all(a < b for a, b in pairwise(stamps))


def test_arrow_stream_and_limit(client: TestClient) -> None:
    """The Arrow IPC format carries the same rows; limit cuts the answer in time order."""
    body = {
        "pointIds": ["SINUSOID"],
        "startDate": START.isoformat(),
        "endDate": END.isoformat(),
        "format": "arrow",
    }
    response = client.post("/api/timeseries/query", json=body)
    assert response.status_code == 200
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.num_rows == 36 * 1440
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    assert bool(np.all(np.diff(ts) > 0))
    limited = client.post(
        "/api/timeseries/query", json={**body, "format": "ndjson", "limit": 5}
    ).text.splitlines()
    assert len(limited) == 5
    assert '"ts":"2024-01-15T00:00:00.000000Z"' in limited[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pointIds": []}, "pointIds"),
        ({"pointIds": ["NOPE"]}, "pointIds"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"endDate": "2024-01-01T00:00:00Z"}, "endDate"),
        ({"startDate": "2024-01-01T00:00:00"}, "startDate"),
        ({"limit": 0}, "limit"),
        ({"format": "xml"}, "format"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_queries_get_a_400_naming_the_field(
    bare_client: TestClient, change: dict[str, object], field: str
) -> None:
    """Bad input: 400 with the field named, before any work."""
    body = {
        "pointIds": ["SINUSOID"],
        "startDate": START.isoformat(),
        "endDate": END.isoformat(),
        **change,
    }
    response = bare_client.post("/api/timeseries/query", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_too_many_rows_is_a_413(two_tiers: Archive) -> None:
    """Over QUERY_MAX_ROWS without a limit: 413 naming limit."""
    two_tiers.query.limits = type(two_tiers.query.limits)(max_rows=1000)
    with TestClient(create_app(two_tiers)) as client:
        body = {
            "pointIds": ["SINUSOID"],
            "startDate": START.isoformat(),
            "endDate": END.isoformat(),
        }
        response = client.post("/api/timeseries/query", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "limit"


def test_archive_run_through_the_api(client: TestClient, two_tiers: Archive) -> None:
    """Start, watch and finish a run over HTTP; bad months get a 400 naming the field."""
    bad = client.post(
        "/api/archive/start",
        json={"pointIds": ["SINUSOID"], "startMonth": "2024-13", "endMonth": "2024-02"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "startMonth"
    started = client.post(
        "/api/archive/start",
        json={
            "pointIds": ["SINUSOID", "CDT158"],
            "startMonth": "2024-01",
            "endMonth": "2024-02",
            "backfill": False,
        },
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["data"]["runId"]

    def finished() -> bool:
        data = client.get(f"/api/archive/run/{run_id}").json()["data"]
        return bool(data["status"] == "Completed")

    wait_for(finished, 60)
    data = client.get(f"/api/archive/run/{run_id}").json()["data"]
    assert (data["skipped"], data["errorCount"], data["donePointMonths"]) == (4, 0, 4)
    assert client.post(f"/api/archive/run/{run_id}/cancel").status_code == 200
    assert client.get("/api/archive/run/nope").status_code == 400


def test_cancel_stops_a_run_after_the_point_months_in_hand(bare_client: TestClient) -> None:
    """A long run cancelled over HTTP ends Cancelled with point-months left undone."""
    points = [f"P{i:04d}" for i in range(300)]
    started = bare_client.post(
        "/api/archive/start",
        json={
            "pointIds": points,
            "startMonth": "2022-01",
            "endMonth": "2023-12",
            "backfill": False,
        },
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["data"]["runId"]
    assert bare_client.post(f"/api/archive/run/{run_id}/cancel").status_code == 200

    def cancelled() -> bool:
        data = bare_client.get(f"/api/archive/run/{run_id}").json()["data"]
        return bool(data["status"] == "Cancelled")

    wait_for(cancelled, 60)
    data = bare_client.get(f"/api/archive/run/{run_id}").json()["data"]
    assert data["donePointMonths"] < data["totalPointMonths"] == 300 * 24
    listed = bare_client.get("/api/archive/status").json()["data"]["runs"]
    assert [r["runId"] for r in listed] == [run_id]
