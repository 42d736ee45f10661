"""The ACE simulator as any ACE client sees it, and proof that histfill's client asks raw data.

Expected shapes are written from ACE's Swagger schema as its public clients document it
(``aceiot-models`` / ``aceiot-models-cli``, ``@sixb/connector-ace-iot``: the point and site
fields, the ``{"page", "pages", "per_page", "total", "items"}`` envelope, ``page_size`` and
``per_page`` enums, ``raw_data`` defaulting to false = 5-minute buckets, the ``get_timeseries``
body ``{"points": [{"name": ..}]}``), not from histfill's own client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from producer.sources import AceIotSource, TimeWindow
from producer.sources.collect import collect
from tests.integration.sources.conftest import Served

START = "2024-01-01T00:00:00Z"
HOUR_LATER = "2024-01-01T01:00:00Z"
SINUSOID = "sim/sim_site/SINUSOID"
POINT_KEYS = {
    "id", "name", "client", "site", "client_id", "site_id", "point_type", "collect_enabled",
    "collect_interval", "marker_tags", "kv_tags", "bacnet_data", "collect_config", "created",
    "updated",
}  # fmt: skip
SITE_KEYS = {
    "id", "name", "client", "nice_name", "address", "geo_location", "latitude", "longitude",
    "mqtt_prefix", "archived",
}  # fmt: skip
PAGE_KEYS = {"page", "pages", "per_page", "total", "items"}
SAMPLE_KEYS = {"name", "value", "time"}


@pytest.fixture
def http(ace: Served) -> Iterator[httpx.Client]:
    """A plain HTTP client of the ACE simulator with a bearer key."""
    headers = {"Authorization": "Bearer any-key"}
    with httpx.Client(base_url=f"{ace.url}/api", headers=headers) as client:
        yield client


def window(**more: str) -> dict[str, str]:
    return {"start_time": START, "end_time": HOUR_LATER, **more}


def test_sites_and_a_site(http: httpx.Client) -> None:
    """``GET sites`` pages the sites in ACE's envelope; ``GET sites/{site}`` answers one."""
    listed = http.get("sites", params={"per_page": 10}).json()
    assert set(listed) == PAGE_KEYS
    (site,) = listed["items"]
    assert set(site) >= SITE_KEYS
    assert http.get(f"sites/{site['name']}").json() == site
    assert http.get("sites/nowhere").status_code == 404
    assert http.get("sites", params={"per_page": 7}).status_code == 400


def test_points_carry_aces_fields(http: httpx.Client) -> None:
    """A point and a site's points have the fields ACE's schema gives a point."""
    point = http.get(f"points/{SINUSOID}").json()
    assert set(point) >= POINT_KEYS
    assert point["collect_interval"] == 60
    assert point["collect_enabled"] is True
    assert isinstance(point["marker_tags"], list)
    assert isinstance(point["kv_tags"], dict)
    page = http.get("sites/sim_site/points", params={"per_page": 2}).json()
    assert set(page) == PAGE_KEYS
    assert len(page["items"]) == 2
    assert set(page["items"][0]) >= POINT_KEYS


def test_without_raw_data_every_timeseries_endpoint_answers_five_minute_buckets(
    http: httpx.Client,
) -> None:
    """ACE's default is aggregates: 12 buckets an hour for a one-minute point, 60 with raw_data."""
    body = {"points": [{"name": SINUSOID}]}
    answers = {
        "get_timeseries": lambda **q: http.post("points/get_timeseries", params=q, json=body),
        "point": lambda **q: http.get(f"points/{SINUSOID}/timeseries", params=q),
    }
    for ask in answers.values():
        aggregated = ask(**window()).json()["point_samples"]
        assert len(aggregated) == 12
        assert set(aggregated[0]) == SAMPLE_KEYS
        assert [s["time"][14:16] for s in aggregated[:3]] == ["00", "05", "10"]
        assert len(ask(**window(raw_data="false")).json()["point_samples"]) == 12
        assert len(ask(**window(raw_data="true")).json()["point_samples"]) == 60
    site = http.get("sites/sim_site/timeseries", params=window()).json()["point_samples"]
    assert sum(s["name"] == SINUSOID for s in site) == 12


def test_paginated_site_timeseries_takes_only_aces_page_sizes(http: httpx.Client) -> None:
    """``page_size`` must be one of ACE's values: 700 is a 400 naming it; 500 pages."""
    url = "sites/sim_site/timeseries/paginated"
    refused = http.get(url, params=window(page_size="700", raw_data="true"))
    assert refused.status_code == 400
    assert "page_size" in refused.json()["errors"]
    page = http.get(url, params=window(page_size="500", raw_data="true")).json()
    assert len(page["point_samples"]) == 500
    assert page["has_more"] is True
    assert page["next_cursor"]


def test_get_timeseries_accepts_exactly_the_schemas_body(http: httpx.Client) -> None:
    """Point objects are read; bare names (another client's form) get Flask-RESTX's 400."""
    ok = http.post("points/get_timeseries", params=window(), json={"points": [{"name": SINUSOID}]})
    assert ok.status_code == 200
    bare = http.post("points/get_timeseries", params=window(), json={"points": [SINUSOID]})
    assert bare.status_code == 400
    assert bare.json()["message"] == "Input payload validation failed"
    assert "points.0" in bare.json()["errors"]


@pytest.mark.anyio
async def test_the_client_asks_for_raw_data_on_every_timeseries_call(
    ace: Served, ace_source: Callable[..., AceIotSource]
) -> None:
    """Point reads and site reads get every one-minute sample: the simulator saw no request
    without ``raw_data=true`` (it would have answered one value in five)."""
    span = TimeWindow(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC))
    before = dict(ace.sim.stats)
    async with ace_source() as source:
        points = await collect(source.read([SINUSOID, "sim/sim_site/CDT158"], span))
        site = await collect(source.read_site("sim_site", span))
    assert len(points[SINUSOID]) == 60
    assert len(points["sim/sim_site/CDT158"]) == 60
    assert len(site[SINUSOID]) == 60
    after = ace.sim.stats
    assert after.get("timeseries_aggregated", 0) == before.get("timeseries_aggregated", 0)
    assert after["timeseries_raw"] > before.get("timeseries_raw", 0)


def test_a_day_of_aggregates_pages_without_loss(http: httpx.Client) -> None:
    """Aggregated pages of 100 walk a day of a site: every point's 288 buckets once each."""
    params = {"start_time": START, "end_time": "2024-01-02T00:00:00Z", "page_size": "100"}
    seen: dict[str, set[str]] = {}
    cursor: str | None = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        page = http.get("sites/sim_site/timeseries/paginated", params=query).json()
        for sample in page["point_samples"]:
            times = seen.setdefault(sample["name"], set())
            assert sample["time"] not in times
            times.add(sample["time"])
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert {len(times) for times in seen.values()} == {288}
    assert timedelta(days=1) // timedelta(minutes=5) == 288
