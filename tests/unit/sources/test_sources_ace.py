"""ACE IoT samples to columns, and the client's batching, paging and point checks."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from producer.sources import AceIotConfig, AceIotSource, HostRateLimits, TimeWindow
from producer.sources.ace_iot import parse_samples
from producer.sources.collect import collect
from producer.sources.errors import PointNotFound, ProtocolError
from shared.batch import Quality
from shared.errors import ConfigError
from tests.unit.sources.sources_fakes import RecordingSleep

pytestmark = pytest.mark.anyio
START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = TimeWindow(START, START + timedelta(hours=1))


def sample(name: str, value: Any, minute: int) -> dict[str, Any]:
    return {"name": name, "value": value, "time": f"2024-01-01T00:{minute:02d}:00Z"}


def test_numeric_strings_become_values() -> None:
    """``"45.5"`` is the number 45.5, with no text."""
    cols = parse_samples([sample("a", "45.5", 0), sample("a", "-1e3", 1)])["a"]
    assert cols.values.tolist() == [45.5, -1000.0]
    assert cols.texts is None


def test_other_text_is_kept_as_text() -> None:
    """``"active"`` is NaN with its text; numbers beside it keep their value; null is bad."""
    cols = parse_samples([sample("a", "active", 0), sample("a", "12", 1), sample("a", None, 2)])[
        "a"
    ]
    assert math.isnan(cols.values[0])
    assert cols.values[1] == 12.0
    assert cols.texts == ["active", "", ""]
    assert cols.quality.tolist() == [0, 0, Quality.BAD]


def test_samples_are_grouped_by_point_and_sorted_by_time() -> None:
    """Interleaved samples of two points come out as one time-ordered column set each."""
    page = parse_samples(
        [sample("b", "2", 5), sample("a", "1", 3), sample("b", "1", 4), sample("a", "0", 1)]
    )
    assert list(page) == ["b", "a"]
    assert page["a"].values.tolist() == [0.0, 1.0]
    assert page["b"].values.tolist() == [1.0, 2.0]
    assert (page["b"].timestamps_us[1] - page["b"].timestamps_us[0]) == 60_000_000


@pytest.mark.parametrize("bad", [{"point_samples": []}, [{"name": "a"}], [sample("a", "1", 99)]])
def test_malformed_samples_are_protocol_errors(bad: Any) -> None:
    """Samples without name/value/time or with impossible times are refused."""
    with pytest.raises(ProtocolError):
        parse_samples(bad)


class FakeAce:
    """Answers ``points/{name}`` for known names and pages ``get_timeseries`` two at a time."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.startswith("/api/points/") and request.method == "GET":
            name = path.removeprefix("/api/points/")
            return httpx.Response(200 if name in self.known else 404, json={"name": name})
        names = [p["name"] for p in json.loads(request.content)["points"]]
        cursor = int(request.url.params.get("cursor", "0"))
        samples = [sample(n, str(m), m) for n in names for m in range(3)]
        page = samples[cursor : cursor + 2]
        more = cursor + 2 < len(samples)
        body: dict[str, Any] = {"point_samples": page, "has_more": more}
        if more:
            body["next_cursor"] = str(cursor + 2)
        return httpx.Response(200, json=body)


def make(fake: FakeAce, **overrides: Any) -> AceIotSource:
    config = AceIotConfig("https://ace.test/api", SecretStr("key-1"), **overrides)
    return AceIotSource(
        config,
        transport=httpx.MockTransport(fake),
        rate_limits=HostRateLimits(),
        sleep=RecordingSleep(),
    )


async def test_pages_are_followed_to_the_end_and_points_batched_by_100() -> None:
    """150 points take two calls (100 + 50); every page is followed; each point completes."""
    names = [f"c/s/p{i}" for i in range(150)]
    fake = FakeAce(set(names))
    got = await collect(make(fake, verify_points=False).read(names, WINDOW))
    calls = [r for r in fake.requests if r.method == "POST"]
    assert [len(json.loads(r.content)["points"]) for r in calls][:1] == [100]
    assert {len(json.loads(r.content)["points"]) for r in calls} == {100, 50}
    assert all(len(got[n]) == 3 and got[n].complete is not None for n in names)
    assert calls[0].headers["Authorization"] == "Bearer key-1"
    assert calls[0].url.params["start_time"] == "2024-01-01T00:00:00Z"
    # the body ACE's schema defines (point objects) and raw samples, on every page's call
    assert json.loads(calls[0].content)["points"][0] == {"name": "c/s/p0"}
    assert all(r.url.params.get("raw_data") == "true" for r in calls)


async def test_unknown_points_fail_alone_after_a_check() -> None:
    """A name ACE does not know fails with PointNotFound; the known one is read."""
    fake = FakeAce({"c/s/known"})
    got = await collect(make(fake).read(["c/s/known", "c/s/ghost"], WINDOW))
    failure = got["c/s/ghost"].failure
    assert failure is not None
    assert isinstance(failure.error, PointNotFound)
    assert len(got["c/s/known"]) == 3
    checks = [r.url.raw_path for r in fake.requests if r.method == "GET"]
    assert b"/api/points/c%2Fs%2Fknown" in checks


def test_a_page_size_ace_does_not_offer_is_refused() -> None:
    """ACE's page_size is an enum: 500 is accepted, 700 is a configuration error."""
    assert AceIotConfig("https://ace.test/api", SecretStr("k"), page_size=500).page_size == 500
    with pytest.raises(ConfigError, match="page_size"):
        AceIotConfig("https://ace.test/api", SecretStr("k"), page_size=700)


def test_more_than_100_points_a_call_is_refused() -> None:
    """ACE takes at most 100 points a call."""
    with pytest.raises(ConfigError):
        AceIotConfig("https://ace.test/api", SecretStr("k"), points_per_request=101)
