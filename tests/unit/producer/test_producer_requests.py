"""Request validation: each broken rule is refused with the field it concerns."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from producer.errors import RequestRejected
from producer.planning.requests import MAX_RECORD_BYTES, Limits, StartBody, estimate, validate
from producer.state.progress import BackfillRequest, RequestProgress, Status
from shared.batch import to_micros
from shared.settings import ProducerSettings, load_settings

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
        ({"pointAddresses": ["A", "B", "A"]}, "pointAddresses", "duplicate points: 'A'"),
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


NOW = datetime(2026, 1, 9, 12, tzinfo=UTC)


def refusal(body_: StartBody, limits: Limits = LIMITS, now: datetime = NOW) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        validate(body_, limits, AVAILABLE, now=now)
    assert caught.value.status == 400
    return caught.value


def test_start_after_now_is_refused_and_an_end_after_now_is_accepted() -> None:
    """startTime may not pass the injected now; endTime may (the read cuts it there)."""
    late = refusal(body(startTime="2026-01-09T12:00:00.000001Z", endTime="2026-01-10T00:00:00Z"))
    assert late.field == "startTime"
    assert "after now (2026-01-09T12:00:00Z)" in late.message
    request = validate(body(), LIMITS, AVAILABLE, now=NOW)  # ends 12 h after NOW
    assert request.end_us > to_micros(NOW)
    assert validate(body(startTime="2026-01-09T12:00:00Z"), LIMITS, AVAILABLE, now=NOW)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"startTime": "1969-12-31T23:59:59Z"}, "startTime", "before 1970"),
        ({"startTime": "1900-01-01T00:00:00Z"}, "startTime", "before 1970"),
        (
            {"startTime": "2300-01-01T00:00:00Z", "endTime": "2300-01-02T00:00:00Z"},
            "startTime",
            "after now",
        ),
        ({"endTime": "9999-12-31T23:59:59Z"}, "endTime", "MAX_WINDOW_DAYS"),
        ({"startTime": "0001-01-01T00:00:00+14:00"}, "startTime", "out of range"),
        ({"endTime": "9999-12-31T23:59:59-14:00"}, "endTime", "out of range"),
        ({"chunkSize": "99999999999d"}, "chunkSize", "too long"),
        ({"chunkSize": "P" + "9" * 400 + "D"}, "chunkSize", "too long"),
    ],
)
def test_absurd_times_are_refused_naming_the_field(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    """Starts before 1970 or in the future, windows over MAX_WINDOW_DAYS and times or chunks
    that overflow are each a 400 naming the field, never an exception."""
    refused = refusal(body(**changes))
    assert refused.field == field
    assert fragment in refused.message


def test_the_window_limit_is_inclusive() -> None:
    """A window of exactly MAX_WINDOW_DAYS is accepted; a microsecond more is refused."""
    limits = replace(LIMITS, max_window_days=10)
    start = "2025-12-01T00:00:00Z"
    assert validate(body(startTime=start, endTime="2025-12-11T00:00:00Z"), limits, AVAILABLE)
    over = refusal(body(startTime=start, endTime="2025-12-11T00:00:00.000001Z"), limits)
    assert over.field == "endTime"
    assert "over the limit of 10 days (MAX_WINDOW_DAYS)" in over.message


def test_point_names_longer_than_the_limit_are_refused_by_index() -> None:
    """A name over MAX_POINT_NAME_LENGTH is refused with its index and a cut, escaped repr."""
    limits = replace(LIMITS, max_name_length=2048)
    assert validate(body(pointAddresses=["A", "B" * 2048]), limits, AVAILABLE, now=NOW)
    refused = refusal(body(pointAddresses=["A", "B" * 2049]), limits)
    assert refused.field == "pointAddresses"
    assert "pointAddresses[1] is 2,049 characters long" in refused.message
    assert "limit of 2,048 (MAX_POINT_NAME_LENGTH)" in refused.message
    assert len(refused.message) < 300  # the name is cut, not echoed


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("SIN\nUSOID", "U+000A"),
        ("SIN\tUSOID", "U+0009"),
        ("SIN\x00USOID", "U+0000"),
        ("SIN\x7fUSOID", "U+007F"),
        ("SIN\x85USOID", "U+0085"),
        ("SIN\ud800USOID", "U+D800"),
    ],
)
def test_control_characters_in_names_are_refused(name: str, code: str) -> None:
    """A name holding a control character (or a lone surrogate) is refused with its index,
    its escaped repr and the character's code point."""
    refused = refusal(body(pointAddresses=["A", "B", name]))
    assert refused.field == "pointAddresses"
    assert f"pointAddresses[2] {name!r}" in refused.message
    assert f"({code}) at position 3" in refused.message


def test_the_point_count_is_checked_before_the_names() -> None:
    """Too many points are refused as such, before any name is looked at."""
    refused = refusal(body(pointAddresses=["", "\n", "A", "A", "B", "C"]))
    assert "6 points exceed the limit of 5" in refused.message


def test_bare_pi_tags_need_a_default_server() -> None:
    """For PIWebApi without PI_DEFAULT_SERVER a bare tag is refused, naming the setting and
    the tag; full \\\\SERVER\\TAG paths are accepted, and with the setting bare tags are too."""
    paths = ["\\\\PISRV\\SINUSOID", "CDT158"]
    refused = refusal(body(connectorType="PIWebApi", pointAddresses=paths))
    assert refused.field == "pointAddresses"
    assert "pointAddresses[1] 'CDT158' is a bare tag name" in refused.message
    assert "PI_DEFAULT_SERVER is not set" in refused.message
    full = body(connectorType="PIWebApi", pointAddresses=["\\\\PISRV\\SINUSOID"])
    assert validate(full, LIMITS, AVAILABLE, now=NOW)
    served = replace(LIMITS, pi_default_server="PISRV")
    assert validate(body(connectorType="PIWebApi"), served, AVAILABLE, now=NOW)
    assert validate(body(pointAddresses=["SINUSOID"]), LIMITS, AVAILABLE, now=NOW)


def test_a_request_too_big_for_its_state_record_is_refused() -> None:
    """Points whose names would not fit the request's state record in one Kafka message are
    refused up front (they made a 503 after the request had been accepted)."""
    limits = replace(LIMITS, max_points=10_000)
    points = [f"{i:05d}" + "x" * 1995 for i in range(4000)]  # 8 MB of names
    refused = refusal(body(pointAddresses=points), limits)
    assert refused.field == "pointAddresses"
    assert "4,000 point addresses make a request record of" in refused.message
    assert f"over the {MAX_RECORD_BYTES:,}" in refused.message
    assert validate(body(pointAddresses=points[:3000]), limits, AVAILABLE, now=NOW)


def test_limits_follow_the_settings() -> None:
    """The service's limits are its settings, the body limit derived from them when unset."""
    settings = load_settings(
        ProducerSettings,
        {
            "MAX_POINTS_PER_REQUEST": "7",
            "MAX_POINT_NAME_LENGTH": "100",
            "MAX_WINDOW_DAYS": "30",
            "PI_DEFAULT_SERVER": "PISRV",
        },
    )
    limits = Limits.from_settings(settings)
    assert (limits.max_points, limits.max_name_length) == (7, 100)
    assert (limits.max_window_days, limits.pi_default_server) == (30, "PISRV")
    assert limits.max_chunks == 1_000_000
    assert settings.api_body_limit == 7 * (100 + 16) + 64 * 1024
    explicit = load_settings(ProducerSettings, {"API_MAX_BODY_BYTES": "5000"})
    assert explicit.api_body_limit == 5000


def test_a_plan_over_the_chunk_limit_is_refused() -> None:
    """A plan of more than MAX_CHUNKS_PER_REQUEST chunks (windows x groups) is refused on
    chunkSize with its arithmetic; exactly the limit is accepted."""
    limits = replace(LIMITS, max_chunks=48, group_size=2)  # 3 points: 2 groups
    assert validate(body(), limits, AVAILABLE, now=NOW).plan().total_chunks == 48
    refused = refusal(body(chunkSize="00:30:00"), limits)
    assert refused.field == "chunkSize"
    assert "the plan has 96 chunks (48 windows x 2 point groups), over the limit of 48" in (
        refused.message
    )
    assert "(MAX_CHUNKS_PER_REQUEST)" in refused.message


def test_a_low_publish_cap_splits_chunks_to_commit_inside_the_transaction_timeout() -> None:
    """A 30-day chunk of 10 one-minute points (432,000 values) under a 1,000 values/s cap
    shared by 4 workers would keep its transaction open 1,728 s, past the 600 s timeout: the
    plan cuts it so each piece expects at most 75,000 values (300 s at 250 values/s)."""
    settings = load_settings(
        ProducerSettings,
        {"PUBLISH_MAX_VALUES_PER_SECOND": "1000", "BACKFILL_WORKERS": "4"},
    )
    limits = Limits.from_settings(settings)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    request = validate(
        body(
            pointAddresses=[f"P{i}" for i in range(10)],
            startTime="2026-01-01T00:00:00Z",
            endTime="2026-01-31T00:00:00Z",
            chunkSize="30d",
        ),
        replace(limits, max_points=10),
        AVAILABLE,
        now=now,
    )
    expected_per_chunk = 10 * request.step_us / 1e6 / 60
    worker_rate = 1000 / 4
    assert expected_per_chunk <= 75_000
    assert expected_per_chunk / worker_rate <= 0.5 * 600
    assert request.plan().windows == 6
