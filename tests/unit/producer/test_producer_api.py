"""The HTTP API's validation, envelope, auth and docs, without Kafka (the lifespan never runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producer.api.app import create_app
from producer.sources.connectors import Connectors
from producer.worker.orchestrator import Orchestrator
from shared.settings import ProducerSettings, load_settings

TEST_ONE = {
    "connectorType": "Simulator",
    "pointAddresses": ["SINUSOID", "CDT158", "SINUSOIDU"],
    "startTime": "2026-01-09T00:00:00Z",
    "endTime": "2026-01-10T00:00:00Z",
    "chunkSize": "01:00:00",
}


@pytest.fixture
def orchestrator() -> Orchestrator:
    settings = load_settings(ProducerSettings, {"MAX_POINTS_PER_REQUEST": "4"})
    return Orchestrator(settings, Connectors.from_settings(settings))


@pytest.fixture
def client(orchestrator: Orchestrator) -> TestClient:
    return TestClient(create_app(orchestrator, api_token="s3cret"))  # noqa: S106  # a test token


def auth() -> dict[str, str]:
    return {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"endTime": "2026-01-08T00:00:00Z"}, 400, "endTime"),
        ({"pointAddresses": []}, 400, "pointAddresses"),
        ({"pointAddresses": ["A", "A"]}, 400, "pointAddresses"),
        ({"pointAddresses": ["A", "B", "C", "D", "E"]}, 400, "pointAddresses"),
        ({"chunkSize": "whenever"}, 400, "chunkSize"),
        ({"chunkSize": "00:00:10"}, 400, "chunkSize"),
        ({"connectorType": "Historian9000"}, 400, "connectorType"),
        ({"connectorType": "PIAfSdk"}, 400, "connectorType"),
        ({"connectorType": "PIWebApi"}, 400, "connectorType"),
        ({"startTime": "yesterday"}, 422, "startTime"),
        ({"pointAddresses": "SINUSOID"}, 422, "pointAddresses"),
        ({"connectorType": None}, 422, "connectorType"),
        ({"priority": "high"}, 422, "priority"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field_and_queue_nothing(
    client: TestClient,
    orchestrator: Orchestrator,
    changes: dict[str, Any],
    status: int,
    field: str,
) -> None:
    """Each bad request gets its 400/422 in the envelope, names the field, and queues nothing."""
    response = client.post("/api/backfill/start", json={**TEST_ONE, **changes}, headers=auth())
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False
    assert payload["error"]["field"] == field
    assert field in payload["error"]["message"] or status == 400
    assert orchestrator.entries == {}


def test_missing_field_is_named(client: TestClient) -> None:
    """A body without endTime is a 422 that names endTime."""
    body = {k: v for k, v in TEST_ONE.items() if k != "endTime"}
    response = client.post("/api/backfill/start", json=body, headers=auth())
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "endTime"


def test_af_sdk_refusal_explains_itself(client: TestClient) -> None:
    """PIAfSdk is refused with why (Windows/.NET only) and what to use (PIWebApi)."""
    response = client.post(
        "/api/backfill/start", json={**TEST_ONE, "connectorType": "PIAfSdk"}, headers=auth()
    )
    message = response.json()["error"]["message"]
    assert "Windows" in message
    assert "PIWebApi" in message


def test_mutating_endpoints_need_the_token(client: TestClient) -> None:
    """Without the bearer token start and cancel are 401; reads need none."""
    assert client.post("/api/backfill/start", json=TEST_ONE).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/api/backfill/start", json=TEST_ONE, headers=wrong).status_code == 401
    assert client.post("/api/backfill/request/x/cancel").status_code == 401
    assert client.post("/api/backfill/request/x/retry").status_code == 401
    assert client.get("/api/backfill/status").status_code == 200


def test_status_and_unknown_request(client: TestClient) -> None:
    """Status answers the seed's shape; an unknown request id is a 404 in the envelope."""
    data = client.get("/api/backfill/status").json()["data"]
    assert data["activeRequests"] == []
    assert data["recentRequests"] == []
    assert data["queueDepth"] == 0
    assert set(data["stats"]) >= {
        "completedRequests",
        "failedRequests",
        "totalPointsBackfilled",
        "totalBatchesPublished",
        "failedChunks",
    }
    response = client.get("/api/backfill/request/nope")
    assert response.status_code == 404
    assert response.json()["success"] is False
    retry = client.post("/api/backfill/request/nope/retry", headers=auth())
    assert retry.status_code == 404
    assert retry.json()["error"]["field"] == "requestId"


def test_estimate_is_exact_for_the_simulator(client: TestClient) -> None:
    """A dry run of the seed's Test 1 counts exactly 4,320 values in 24 chunks."""
    response = client.post("/api/backfill/estimate", json=TEST_ONE)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["totalChunks"] == 24
    assert data["estimatedValues"] == 4320
    assert data["valuesExact"] is True
    assert data["estimatedBytes"] > 0
    assert data["estimatedSeconds"] > 0


def test_openapi_and_metrics_are_served(client: TestClient) -> None:
    """The app serves its OpenAPI document, /docs and Prometheus metrics."""
    spec = client.get("/openapi.json").json()
    assert "/api/backfill/start" in spec["paths"]
    assert "/api/backfill/request/{request_id}/cancel" in spec["paths"]
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics")
    assert "histfill_backfill_queue_depth 0.0" in metrics.text


def test_malformed_json_names_the_line_and_column(client: TestClient) -> None:
    """A body that is not JSON is a 400 on field `body` saying where, in lines and columns."""
    text = '{\n  "connectorType": "Simulator",\n  "pointAddresses": [SINUSOID]\n}'
    response = client.post(
        "/api/backfill/start",
        content=text.encode(),
        headers={**auth(), "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "body"
    assert error["message"] == (
        "request body is not valid JSON: Expecting value at line 3 column 22"
    )
    assert text.splitlines()[2][21] == "S"  # line 3, column 22 (1-based) is where it broke
    one_line = client.post(
        "/api/backfill/estimate", content=b'{"a": 1,}', headers={"content-type": "application/json"}
    )
    assert one_line.json()["error"]["message"] == (
        "request body is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1 column 9"
    )


def test_a_body_that_is_not_utf8_is_refused_as_not_json(client: TestClient) -> None:
    """Bytes that are not UTF-8 are a 400 on `body` in the envelope, not a bare detail."""
    response = client.post(
        "/api/backfill/estimate",
        content=b'{"a": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert "not UTF-8" in response.json()["error"]["message"]


def _oversized() -> bytes:
    name = "x" * 200_000
    return json.dumps({**TEST_ONE, "pointAddresses": [name]}).encode()


def test_an_oversized_body_is_a_413_before_parsing(
    client: TestClient, orchestrator: Orchestrator
) -> None:
    """A body over API_MAX_BODY_BYTES is a 413 naming the limit, whether it declares its
    length or arrives chunked, and nothing is queued."""
    limit = orchestrator.settings.api_body_limit
    assert limit == 4 * (2048 + 16) + 64 * 1024
    raw = _oversized()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    headers = {**auth(), "content-type": "application/json"}
    declared = client.post("/api/backfill/start", content=raw, headers=headers)
    chunked = client.post("/api/backfill/start", content=chunks(), headers=headers)
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    for response in (declared, chunked):
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["field"] == "body"
        assert f"limit of {limit:,} bytes (API_MAX_BODY_BYTES)" in error["message"]
    assert orchestrator.entries == {}
    small = client.post(
        "/api/backfill/estimate", content=json.dumps(TEST_ONE).encode(), headers=headers
    )
    assert small.status_code == 200


@pytest.mark.parametrize("path", ["/api/backfill/start", "/api/backfill/estimate"])
@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        (
            {"startTime": "2300-01-01T00:00:00Z", "endTime": "2300-01-02T00:00:00Z"},
            400,
            "startTime",
        ),
        ({"startTime": "1969-07-20T20:17:00Z"}, 400, "startTime"),
        ({"endTime": "9999-12-31T23:59:59Z"}, 400, "endTime"),
        ({"startTime": "0001-01-01T00:00:00+14:00"}, 400, "startTime"),
        ({"endTime": "9999-12-31T23:59:59-14:00"}, 400, "endTime"),
        ({"startTime": 1e20}, 422, "startTime"),
        ({"startTime": "0000-01-01T00:00:00Z"}, 422, "startTime"),
        ({"chunkSize": "99999999999d"}, 400, "chunkSize"),
        ({"pointAddresses": ["x" * 2049]}, 400, "pointAddresses"),
        ({"pointAddresses": ["A\u0000B"]}, 400, "pointAddresses"),
        ({"pointAddresses": ["A\ud800B"]}, 400, "pointAddresses"),
    ],
)
def test_absurd_values_are_4xx_on_both_endpoints(
    client: TestClient,
    orchestrator: Orchestrator,
    path: str,
    changes: dict[str, Any],
    status: int,
    field: str,
) -> None:
    """Far-future, pre-1970, overflowing and otherwise absurd values are a 400/422 naming the
    field on start and on estimate alike, never a 500."""
    raw = json.dumps({**TEST_ONE, **changes}).encode()  # ASCII: a lone surrogate as \ud800
    headers = {**auth(), "content-type": "application/json"}
    response = client.post(path, content=raw, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert orchestrator.entries == {}


def test_unknown_paths_answer_in_the_envelope(client: TestClient) -> None:
    """A 404 or 405 from routing uses the envelope too."""
    missing = client.get("/api/backfill/nothing")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    wrong = client.get("/api/backfill/start")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["message"] == "Method Not Allowed"
