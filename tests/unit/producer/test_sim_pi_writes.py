"""The PI simulator's writes (``POST streams/{webId}/recorded`` and ``.../value``): the body
shapes and update options PI documents, and reads that page through written values exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from simulators.pi import PISimulator, PISimulatorOptions
from simulators.webid import point_web_id

T0 = "2024-01-01T00:00:00Z"
WEB_ID = point_web_id("SIMPI", "SIMTAG00001")


@pytest.fixture
def client() -> TestClient:
    sim = PISimulator(
        PISimulatorOptions(generated_tags=2), now=lambda: datetime(2024, 1, 2, tzinfo=UTC)
    )
    return TestClient(sim.app, headers={"Authorization": "Negotiate x"})


def _read(client: TestClient, start: str, end: str, max_count: int = 1000) -> list[Any]:
    params: dict[str, Any] = {"startTime": start, "endTime": end, "maxCount": max_count}
    answer = client.get(f"/piwebapi/streams/{WEB_ID}/recorded", params=params)
    assert answer.status_code == 200, answer.text
    return [(i["Timestamp"], i["Value"], i["Good"]) for i in answer.json()["Items"]]


def test_replace_changes_a_value_and_adds_a_late_one(client: TestClient) -> None:
    """``Replace`` (the default) changes the event at an instant and adds one where none was;
    ``POST .../value`` writes one timed value; both answer 204 and reads serve them."""
    body = [
        {"Timestamp": "2024-01-01T00:01:00Z", "Value": 1.5},
        {"Timestamp": "2024-01-01T00:01:30Z", "Value": 2.25, "Good": False},
    ]
    assert client.post(f"/piwebapi/streams/{WEB_ID}/recorded", json=body).status_code == 204
    one = {"Timestamp": "2024-01-01T00:02:00Z", "Value": 7}
    assert client.post(f"/piwebapi/streams/{WEB_ID}/value", json=one).status_code == 204
    got = _read(client, T0, "2024-01-01T00:02:00Z")
    assert [g[0] for g in got] == [
        T0, "2024-01-01T00:01:00Z", "2024-01-01T00:01:30Z", "2024-01-01T00:02:00Z"
    ]  # fmt: skip
    assert [g[1:] for g in got[1:]] == [(1.5, True), (2.25, False), (7.0, True)]


def test_pages_through_written_values_lose_and_repeat_nothing(client: TestClient) -> None:
    """Pages of maxCount from the last timestamp, ascending or descending, see every event once,
    written ones included and removed ones gone."""
    late = [{"Timestamp": f"2024-01-01T00:0{m}:30Z", "Value": m} for m in range(6)]
    client.post(f"/piwebapi/streams/{WEB_ID}/recorded", json=late)
    remove = [{"Timestamp": "2024-01-01T00:03:00Z", "Value": 0}]
    client.post(f"/piwebapi/streams/{WEB_ID}/recorded?updateOption=Remove", json=remove)
    whole = _read(client, T0, "2024-01-01T00:09:00Z")
    assert len(whole) == 10 + 6 - 1
    seen: list[Any] = []
    start = T0
    while True:
        page = _read(client, start, "2024-01-01T00:09:00Z", max_count=4)
        seen.extend(p for p in page if not seen or p[0] > seen[-1][0])
        if len(page) < 4:
            break
        start = page[-1][0]
    assert seen == whole
    backwards = _read(client, "2024-01-01T00:09:00Z", T0, max_count=4)
    assert backwards == whole[::-1][:4]


def test_no_replace_and_replace_only(client: TestClient) -> None:
    """``NoReplace`` adds only where nothing is; ``ReplaceOnly`` changes only what is there."""
    url = f"/piwebapi/streams/{WEB_ID}/recorded"
    both = [
        {"Timestamp": "2024-01-01T00:01:00Z", "Value": 5},
        {"Timestamp": "2024-01-01T00:01:10Z", "Value": 6},
    ]
    client.post(f"{url}?updateOption=NoReplace", json=both)
    got = _read(client, "2024-01-01T00:01:00Z", "2024-01-01T00:01:10Z")
    assert got[0][1] != 5
    assert got[1][1] == 6
    only = [{**both[0], "Value": 8}, {"Timestamp": "2024-01-01T00:01:20Z", "Value": 9}]
    client.post(f"{url}?updateOption=ReplaceOnly", json=only)
    got = _read(client, "2024-01-01T00:01:00Z", "2024-01-01T00:01:20Z")
    assert [g[1] for g in got] == [8, 6]


def test_refusals_name_the_problem(client: TestClient) -> None:
    """A malformed body or option is a 400; a digital tag is a 409; an unknown WebID a 404."""
    url = f"/piwebapi/streams/{WEB_ID}/recorded"
    assert client.post(url, content=b"{x").status_code == 400
    not_array = client.post(url, json={"Value": 1})
    assert not_array.status_code == 400
    assert "array" in not_array.json()["Errors"][0]
    assert client.post(url, json=[{"Value": "high"}]).status_code == 400
    assert client.post(f"{url}?updateOption=Sideways", json=[{"Value": 1}]).status_code == 400
    digital = point_web_id("SIMPI", "BA:ACTIVE.1")
    assert client.post(f"/piwebapi/streams/{digital}/value", json={"Value": 1}).status_code == 409
    assert client.post("/piwebapi/streams/nope/value", json={"Value": 1}).status_code == 404
