"""The ACE simulator's schema rules and 5-minute aggregates, without I/O."""

from __future__ import annotations

from starlette.responses import Response

from simulators import ace_api
from simulators.data import TagCatalog, events

CATALOG = TagCatalog(60, 0)
T0 = 1_704_067_200_000_000
HOUR = 3_600_000_000


def test_the_get_timeseries_body_is_a_list_of_point_objects() -> None:
    """``{"points": [{"name": ..}]}`` is read; bare names and a missing list are 400s."""
    assert ace_api.point_names({"points": [{"name": "a/b/C"}, {"name": "x"}]}) == ["a/b/C", "x"]
    for bad in ({"points": ["a/b/C"]}, {"points": [{}]}, {"names": []}, ["a"]):
        answer = ace_api.point_names(bad)
        assert isinstance(answer, Response)
        assert answer.status_code == 400
        assert b"Input payload validation failed" in answer.body


def test_raw_data_defaults_to_false_and_only_booleans_pass() -> None:
    """Absent or false: aggregates; true: samples; anything else: a 400 naming raw_data."""
    assert ace_api.raw_flag(None) is False
    assert ace_api.raw_flag("false") is False
    assert ace_api.raw_flag("true") is True
    assert ace_api.raw_flag("True") is True
    bad = ace_api.raw_flag("maybe")
    assert isinstance(bad, Response)
    assert b"raw_data" in bad.body


def test_page_size_is_one_of_aces_values() -> None:
    """ACE's page_size enum: 500 passes, 700 and 600000 are 400s naming the field."""
    assert ace_api.choice("page_size", "500", ace_api.PAGE_SIZES, 10) == 500
    assert ace_api.choice("page_size", None, ace_api.PAGE_SIZES, 10) == 10
    for bad in ("700", "600000", "x"):
        answer = ace_api.choice("page_size", bad, ace_api.PAGE_SIZES, 10)
        assert isinstance(answer, Response)
        assert b"page_size" in answer.body


def test_five_minute_aggregates_are_bucket_means() -> None:
    """One sample per 5-minute bucket, at its start, valued the mean of its samples."""
    spec = CATALOG.get("SINUSOID")
    assert spec is not None
    times, values = ace_api.five_minute(spec, T0, T0 + HOUR)
    raw = events(spec, T0, T0 + HOUR)
    assert len(times) == 12
    assert ((times - T0) % 300_000_000 == 0).all()
    assert float(values[0]) == round(float(raw.values[:5].mean()), 4)


def test_aggregated_pages_continue_where_they_stopped() -> None:
    """Pages of 5 buckets over an hour of two points give each bucket once, in order."""
    names = ["sim/s/SINUSOID", "sim/s/BA:ACTIVE.1"]
    got: list[dict[str, str]] = []
    position: tuple[int, int, int] | None = (0, T0, 0)
    while position is not None:
        page, position = ace_api.aggregated_samples(
            lambda n: CATALOG.get(n.rsplit("/", 1)[-1]), names, T0, T0 + HOUR, 5, position
        )
        assert len(page) <= 5
        got.extend(page)
    assert [s["name"] for s in got] == [names[0]] * 12 + [names[1]] * 12
    assert len({(s["name"], s["time"]) for s in got}) == 24
