"""Requests the producer service refuses at the door, over real HTTP to ``python -m producer``
on the real stack: each gets its 4xx naming the field, and nothing is queued or saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from producer.api import cli
from producer.state.reader import read_state
from shared.settings import ProducerSettings, load_settings
from tests.integration.producer.conftest import Service

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TEST_ONE = {
    "connectorType": "Simulator",
    "pointAddresses": ["SINUSOID", "CDT158", "SINUSOIDU"],
    "startTime": "2026-01-09T00:00:00Z",
    "endTime": "2026-01-10T00:00:00Z",
    "chunkSize": "01:00:00",
}
MAX_POINTS = 50
BODY_LIMIT = MAX_POINTS * (2048 + 16) + 64 * 1024  # API_MAX_BODY_BYTES unset: derived
MALFORMED = '{\n  "connectorType": "Simulator",\n  "pointAddresses": [SINUSOID]\n}'


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _refusals() -> list[tuple[str, dict[str, Any], int, str, str]]:
    """(path, changes to Test 1, status, field, a fragment of the message)."""
    now = datetime.now(UTC)
    future = {"startTime": _stamp(now + timedelta(days=1)), "endTime": _stamp(now + timedelta(2))}
    bare_pi = {"connectorType": "PIWebApi", "pointAddresses": ["\\\\PISRV\\CDT158", "SINUSOID"]}
    start, estimate = "/api/backfill/start", "/api/backfill/estimate"
    return [
        (start, future, 400, "startTime", "is after now"),
        (estimate, future, 400, "startTime", "is after now"),
        (start, {"startTime": "1969-12-31T23:00:00Z"}, 400, "startTime", "before 1970"),
        (
            start,
            {"startTime": "2300-01-01T00:00:00Z", "endTime": "2300-01-02T00:00:00Z"},
            400,
            "startTime",
            "is after now",
        ),
        (start, {"endTime": "9999-12-31T23:59:59Z"}, 400, "endTime", "(MAX_WINDOW_DAYS)"),
        (start, {"startTime": "0001-01-01T00:00:00+14:00"}, 400, "startTime", "out of range"),
        (start, {"startTime": 1e20}, 422, "startTime", "after 9999"),
        (start, {"chunkSize": "99999999999d"}, 400, "chunkSize", "too long"),
        (
            estimate,
            {"startTime": "1970-01-01T00:00:00Z", "chunkSize": "1m"},
            400,
            "chunkSize",
            "(MAX_CHUNKS_PER_REQUEST)",
        ),
        (
            start,
            {"pointAddresses": ["SINUSOID", "X" * 3000]},
            400,
            "pointAddresses",
            "pointAddresses[1] is 3,000 characters long, over the limit of 2,048",
        ),
        (
            start,
            {"pointAddresses": ["SINUSOID", "SIN\tUSOID"]},
            400,
            "pointAddresses",
            "pointAddresses[1] 'SIN\\tUSOID' contains a control character (U+0009)",
        ),
        (
            start,
            {"pointAddresses": [f"P{i}" for i in range(MAX_POINTS + 1)]},
            400,
            "pointAddresses",
            "51 points exceed the limit of 50 per request (MAX_POINTS_PER_REQUEST)",
        ),
        (
            start,
            bare_pi,
            400,
            "pointAddresses",
            "pointAddresses[1] 'SINUSOID' is a bare tag name and PI_DEFAULT_SERVER is not set",
        ),
        (estimate, bare_pi, 400, "pointAddresses", "PI_DEFAULT_SERVER"),
    ]


def _assert_refused(response: httpx.Response, status: int, field: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False
    assert payload["error"]["field"] == field, payload
    assert fragment in payload["error"]["message"], payload


def _ten_megabyte_name() -> bytes:
    return json.dumps({**TEST_ONE, "pointAddresses": ["X" * 10_000_000]}).encode()


def test_bad_requests_are_refused_at_the_door(service: Service) -> None:
    """Future or pre-1970 starts, over-long windows, long or control-character names, too many
    points, bare PI tags without PI_DEFAULT_SERVER, oversized and malformed bodies: each a
    4xx naming the field, on start and estimate, through the CLI too; nothing is queued."""
    service.start(
        MAX_POINTS_PER_REQUEST=str(MAX_POINTS),
        PI_WEB_API_URL="http://127.0.0.1:9/piwebapi",  # configured, never reached
    )
    for path, changes, status, field, fragment in _refusals():
        response = service.post(path, {**TEST_ONE, **changes})
        _assert_refused(response, status, field, fragment)

    json_headers = {"content-type": "application/json"}
    url = f"{service.url}/api/backfill/start"
    malformed = httpx.post(url, content=MALFORMED.encode(), headers=json_headers, timeout=30)
    _assert_refused(
        malformed,
        400,
        "body",
        "request body is not valid JSON: Expecting value at line 3 column 22",
    )

    huge = _ten_megabyte_name()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(huge), 65_536):
            yield huge[i : i + 65_536]

    too_big = f"request body is larger than the limit of {BODY_LIMIT:,} bytes (API_MAX_BODY_BYTES)"
    declared = httpx.post(url, content=huge, headers=json_headers, timeout=30)
    _assert_refused(declared, 413, "body", too_big)
    chunked = httpx.post(url, content=chunks(), headers=json_headers, timeout=30)
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    _assert_refused(chunked, 413, "body", too_big)

    result = CliRunner().invoke(
        cli.app,
        [
            "start",
            *("--connector", "PIWebApi", "--points", "SINUSOID"),
            *("--start", "2026-01-09T00:00:00Z", "--end", "2026-01-10T00:00:00Z"),
            *("--url", service.url),
        ],
    )
    assert result.exit_code == 2, result.output
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert "error 400 (pointAddresses):" in printed
    assert "pointAddresses[0] 'SINUSOID' is a bare tag name and PI_DEFAULT_SERVER is not set" in (
        printed
    )

    assert service.post("/api/backfill/estimate", TEST_ONE).status_code == 200  # still serving
    status = service.get("/api/backfill/status?all=true")
    assert status["activeRequests"] == []
    assert status["queueDepth"] == 0
    assert read_state(load_settings(ProducerSettings, service.env)).requests == {}
