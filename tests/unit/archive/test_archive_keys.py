"""Object keys and months: the documented layout, reversible point ids, month arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archive.errors import BadArchiveRequest
from archive.keys import Month, decode_point, encode_point, months, object_key, parse_key


@pytest.mark.parametrize(
    "point",
    [
        "\\\\SIMPI\\SINUSOID",
        "SINUSOID",
        "sim/sim_site/SINUSOID",
        "BA:ACTIVE.1",
        "a b%c",
        "température",
        ".",
        "..",
        "~x?y#z&=",
    ],
)
def test_point_ids_round_trip_and_are_key_safe(point: str) -> None:
    """Every point id encodes to [A-Za-z0-9._%-] only and decodes back to itself."""
    encoded = encode_point(point)
    assert decode_point(encoded) == point
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%-")
    assert encoded not in {".", ".."}


def test_pi_path_encoding_is_the_documented_one() -> None:
    """The README's example: backslashes become %5C."""
    assert encode_point("\\\\SIMPI\\SINUSOID") == "%5C%5CSIMPI%5CSINUSOID"


def test_distinct_points_get_distinct_keys() -> None:
    """A literal '%5C' in an id and a backslash never share a key (the % is encoded too)."""
    assert encode_point("%5C") != encode_point("\\")


def test_key_layout_zero_pads_the_month() -> None:
    """timeseries/{year}/{month}/{point-id}.parquet, month zero-padded, under the prefix."""
    assert object_key("P-1", Month(2024, 1)) == "timeseries/2024/01/P-1.parquet"
    assert object_key("P-1", Month(2024, 12), "a/b/") == "a/b/timeseries/2024/12/P-1.parquet"
    assert parse_key("timeseries/2024/01/%5CX.parquet") == ("\\X", Month(2024, 1))


def test_month_bounds_and_ranges() -> None:
    """A month's end is the next month's start; ranges include both ends, across years."""
    assert Month(2023, 12).end == datetime(2024, 1, 1, tzinfo=UTC)
    assert Month(2024, 2).start == datetime(2024, 2, 1, tzinfo=UTC)
    got = months(Month(2023, 11), Month(2024, 2))
    assert [str(m) for m in got] == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert months(Month(2024, 3), Month(2024, 2)) == []


@pytest.mark.parametrize("text", ["2024-13", "2024-1", "24-01", "1969-12", "x"])
def test_bad_months_name_the_field(text: str) -> None:
    """A bad month is refused with the field named."""
    with pytest.raises(BadArchiveRequest, match="startMonth"):
        Month.parse(text, "startMonth")


def test_overlong_key_is_refused() -> None:
    """A key over S3's 1024 bytes is refused up front, naming pointIds."""
    with pytest.raises(BadArchiveRequest, match="pointIds"):
        object_key("\\" * 400, Month(2024, 1))
