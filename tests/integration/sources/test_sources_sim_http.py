"""The simulators' own HTTP surface: counts, credentials, limits and fault control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from producer.sources import HostRateLimits, PIWebApiSource, TimeWindow
from producer.sources.collect import collect
from simulators.ace import AceSimulator, AceSimulatorOptions
from simulators.data import TagCatalog
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.integration.sources.conftest import GENERATED_TAGS, Served

START = datetime(2024, 1, 1, tzinfo=UTC)
CATALOG = TagCatalog(60, GENERATED_TAGS)


@pytest.mark.parametrize("tag", ["SINUSOID", "MULTI.1", "\\\\ANY\\BA:ACTIVE.1", "SIMTAG00007"])
def test_count_endpoint_reports_what_will_be_served(pi: Served, tag: str) -> None:
    """``/_sim/count`` gives the exact count of a tag over a window, as ``expected_count`` does."""
    params = {"tag": tag, "start": "2024-01-01T00:00:00Z", "end": "2024-01-03T12:00:00Z"}
    got = httpx.get(f"{pi.url}/_sim/count", params=params).json()
    end = START + timedelta(days=2, hours=12)
    assert got["count"] == CATALOG.expected_count(tag.rsplit("\\", 1)[-1], START, end)


def test_requests_without_credentials_get_401(pi: Served) -> None:
    """No ``Authorization`` header: 401 with a challenge; any credentials get in."""
    url = f"{pi.url}/piwebapi/points"
    params = {"path": "\\\\S\\SINUSOID"}
    refused = httpx.get(url, params=params)
    assert refused.status_code == 401
    assert "Basic" in refused.headers["WWW-Authenticate"]
    assert httpx.get(url, params=params, auth=("x", "y")).status_code == 200
    bearer = {"Authorization": "Bearer whatever"}
    assert httpx.get(url, params=params, headers=bearer).status_code == 200


def test_unknown_points_are_per_item_exceptions_with_207(pi: Served) -> None:
    """``points/multiple`` answers 207 with an ``Exception`` for the unknown path only."""
    params = [("path", "\\\\S\\SINUSOID"), ("path", "\\\\S\\NOPE")]
    answer = httpx.get(f"{pi.url}/piwebapi/points/multiple", params=params, auth=("a", "b"))
    assert answer.status_code == 207
    first, second = answer.json()["Items"]
    assert first["Exception"] is None
    assert first["Object"]["Name"] == "SINUSOID"
    assert "not found" in second["Exception"]["Errors"][0]


def test_faults_are_set_and_read_over_http(pi: Served) -> None:
    """``POST /_sim/faults`` changes the plan; unknown keys are refused."""
    set_ = httpx.post(f"{pi.url}/_sim/faults", json={"latency_s": 0.01, "error_tags": ["cdt158"]})
    assert set_.json()["error_tags"] == ["CDT158"]
    assert pi.sim.faults.latency_s == 0.01
    assert httpx.post(f"{pi.url}/_sim/faults", json={"explode": True}).status_code == 400


def test_500_faults_answer_500_then_recover(pi: Served) -> None:
    """``fail_next`` answers that many 500s, then serves again."""
    pi.sim.faults.fail_next = 2
    url = f"{pi.url}/piwebapi"
    assert [httpx.get(url, auth=("a", "b")).status_code for _ in range(3)] == [500, 500, 200]


@pytest.mark.slow
@pytest.mark.anyio
async def test_workers_share_one_request_budget_per_host(
    pi_source: Callable[..., PIWebApiSource],
) -> None:
    """Two workers with one 8 req/s budget stay under a server limit of 10 req/s: no 429."""
    sim = PISimulator(PISimulatorOptions(max_requests_per_second=10))
    shared = HostRateLimits()
    span = TimeWindow(START, START + timedelta(hours=16))
    with serve_in_thread(sim.app) as server:
        settings = {
            "base_url": server.url,
            "max_count": 100,
            "max_requests_per_second": 8.0,
            "real_sleep": True,
            "rate_limits": shared,
        }
        first, second = pi_source(**settings), pi_source(**settings)
        started = time.monotonic()
        async with first, second:
            one, two = await asyncio.gather(
                collect(first.read(["SINUSOID"], span)), collect(second.read(["CDT158"], span))
            )
        elapsed = time.monotonic() - started
    assert len(one["SINUSOID"]) == len(two["CDT158"]) == 960
    assert sim.stats.get("status_429", 0) == 0
    assert elapsed > (sim.stats["requests"] - 8) / 8 * 0.9  # paced by the one shared budget


def test_pi_and_ace_simulators_serve_nothing_after_their_clock() -> None:
    """Over HTTP, both simulators answer a window reaching past their *now* with the values up
    to it, as a real historian does, and count only those."""
    now = START + timedelta(minutes=5)
    end = "2024-01-01T01:00:00Z"
    pi_sim = PISimulator(PISimulatorOptions(clock=lambda: now))
    ace_sim = AceSimulator(AceSimulatorOptions(clock=lambda: now))
    web_id = pi_sim.catalog.get("SINUSOID").web_id  # type: ignore[union-attr]
    with serve_in_thread(pi_sim.app) as pi, serve_in_thread(ace_sim.app) as ace:
        recorded = httpx.get(
            f"{pi.url}/piwebapi/streams/{web_id}/recorded",
            params={"startTime": "2024-01-01T00:00:00Z", "endTime": end, "maxCount": "1000"},
            auth=("a", "b"),
        ).json()["Items"]
        counted = httpx.get(
            f"{pi.url}/_sim/count",
            params={"tag": "SINUSOID", "start": "2024-01-01T00:00:00Z", "end": end},
        ).json()["count"]
        samples = httpx.post(
            f"{ace.url}/api/points/get_timeseries",
            params={"start_time": "2024-01-01T00:00:00Z", "end_time": end, "raw_data": "true"},
            json={"points": [{"name": "sim/sim_site/SINUSOID"}]},
            headers={"Authorization": "Bearer k"},
        ).json()["point_samples"]
    assert [item["Timestamp"] for item in recorded][-1] == "2024-01-01T00:05:00Z"
    assert len(recorded) == counted == len(samples) == 6  # 00:00 .. 00:05
