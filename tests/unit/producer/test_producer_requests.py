"""Request validation: each broken rule is refused with the field it concerns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from producer.errors import RequestRejected
from producer.progress import BackfillRequest, RequestProgress, Status
from producer.requests import Limits, StartBody, estimate, validate

LIMITS = Limits(
    max_points=5,
    group_size=10,
    default_chunk="30.00:00:00",
    max_values_per_chunk=2_000_000,
    values_per_second=1 / 60,
)
AVAILABLE = {"Simulator": None, "PIWebApi": None, "AceIot": "set ACE_API_URL and ACE_API_KEY"}


def body(**changes: Any) -> StartBody:
    fields: dict[str, Any] = {
        "connectorType": "Simulator",
        "pointAddresses": ["SINUSOID", "CDT158", "SINUSOIDU"],
        "startTime": "2026-01-09T00:00:00Z",
        "endTime": "2026-01-10T00:00:00Z",
        "chunkSize": "01:00:00",
    }
    fields.update(changes)
    return StartBody.model_validate(fields)


def test_accepts_the_seeds_test_one() -> None:
    """The seed's Test 1 body validates into 24 one-hour chunks of one group."""
    request = validate(body(), LIMITS, AVAILABLE, request_id="r1")
    assert request.request_id == "r1"
    assert request.chunk_us == 3_600_000_000
    assert request.plan().total_chunks == 24
    assert request.chunk_size == "01:00:00"


def test_defaults_the_chunk_size_and_connector_case() -> None:
    """A missing chunkSize takes the default; connector names match case-insensitively."""
    request = validate(body(chunkSize=None, connectorType="simulator"), LIMITS, AVAILABLE)
    assert request.chunk_size == "30.00:00:00"
    assert request.connector_type == "Simulator"


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"endTime": "2026-01-08T00:00:00Z"}, "endTime", "not after"),
        ({"endTime": "2026-01-09T00:00:00Z"}, "endTime", "not after"),
        ({"pointAddresses": []}, "pointAddresses", "no points"),
        ({"pointAddresses": ["A", " "]}, "pointAddresses", "empty"),
        ({"pointAddresses": ["A", "B", "A"]}, "pointAddresses", "duplicate points: A"),
        ({"pointAddresses": list("ABCDEF")}, "pointAddresses", "limit of 5"),
        ({"chunkSize": "soon"}, "chunkSize", "unparseable"),
        ({"chunkSize": "00:00:30"}, "chunkSize", "one minute"),
        ({"connectorType": "Teradata"}, "connectorType", "unknown connector"),
        ({"connectorType": "AceIot"}, "connectorType", "ACE_API_URL"),
        ({"connectorType": "PIAfSdk"}, "connectorType", "Windows-only .NET"),
    ],
)
def test_refuses_bad_requests_naming_the_field(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    """Each rule a request breaks is refused with a 400 naming the field."""
    with pytest.raises(RequestRejected) as caught:
        validate(body(**changes), LIMITS, AVAILABLE)
    assert caught.value.field == field
    assert caught.value.status == 400
    assert fragment in caught.value.message


def test_af_sdk_points_to_the_web_api() -> None:
    """PIAfSdk is refused with the reason and the connector to use instead."""
    with pytest.raises(RequestRejected, match="PIWebApi"):
        validate(body(connectorType="PIAfSdk"), LIMITS, AVAILABLE)


def test_request_records_round_trip() -> None:
    """A request survives the trip through its state record unchanged."""
    request = validate(body(), LIMITS, AVAILABLE, now=datetime(2026, 1, 10, tzinfo=UTC))
    record = request.to_record(Status.QUEUED)
    assert record["status"] == "Queued"
    assert BackfillRequest.from_record(record) == request


def test_estimate_reports_chunks_values_bytes_and_time() -> None:
    """A dry run answers chunks, values, bytes and seconds at the given rate."""
    request = validate(body(), LIMITS, AVAILABLE)
    answer = estimate(request, 4320, exact=True, values_per_second=1000.0)
    assert answer["totalChunks"] == 24
    assert answer["estimatedValues"] == 4320
    assert answer["estimatedBytes"] == 4320 * 18
    assert answer["estimatedSeconds"] == 4.32


def test_progress_counts_rate_and_eta_from_an_injected_clock() -> None:
    """Percent, rate and ETA follow the chunks done and the injected clock."""
    now = [100.0]
    request = validate(body(), LIMITS, AVAILABLE)
    progress = RequestProgress(request, 24, clock=lambda: now[0])
    progress.start_run()
    assert progress.eta_s is None
    progress.chunk_skipped(0)
    for index in (1, 2, 3, 4, 5):
        progress.chunk_committed(180, 3)
        progress.chunk_completed(index)
    now[0] = 110.0
    assert progress.percent == 25.0
    assert progress.rate == 90.0
    assert progress.eta_s == 36.0  # 10 s for 5 worked chunks, 18 chunks left
    progress.chunk_failed(6, [{"point": "CDT158", "error": "boom"}])
    assert progress.final_status() is Status.COMPLETED_WITH_ERRORS
    progress.finish(progress.final_status())
    now[0] = 500.0
    view = progress.to_json()
    assert view["elapsedSeconds"] == 10.0
    assert view["completedChunks"] == 6
    assert view["skippedChunks"] == 1
    assert view["failedChunks"] == 1
    assert view["pointsProcessed"] == 900
    assert view["errors"] == [{"point": "CDT158", "error": "boom"}]
