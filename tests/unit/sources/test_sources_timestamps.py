"""ISO-8601 timestamps as historians print them, to epoch microseconds and back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.sources.timestamps import format_time, parse_time, parse_times
from shared.batch import to_micros

JAN1 = to_micros(datetime(2024, 1, 1, tzinfo=UTC))


def test_whole_seconds_with_z_parse_to_microseconds() -> None:
    """The PI shape ``YYYY-MM-DDTHH:MM:SSZ`` parses exactly."""
    got = parse_times(["2024-01-01T00:00:00Z", "2024-02-29T23:59:59Z"])
    assert got.tolist() == [JAN1, to_micros(datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC))]


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2024-01-01T00:00:00.5Z", 500_000),
        ("2024-01-01T00:00:00.123456Z", 123_456),
        ("2024-01-01T00:00:00.1234567Z", 123_456),  # PI's 100 ns ticks: truncated
    ],
)
def test_fractional_seconds_of_any_length_parse(text: str, micros: int) -> None:
    """One to seven fractional digits keep their microseconds (a 7th digit is truncated)."""
    assert parse_times([text]).tolist() == [JAN1 + micros]


def test_mixed_lengths_and_offsets_parse_in_place() -> None:
    """A page mixing shapes (fractions, offsets, no zone = UTC) keeps each in its position."""
    got = parse_times(
        [
            "2024-01-01T00:00:01Z",
            "2024-01-01T02:00:00+02:00",
            "2024-01-01T00:00:00.25Z",
            "2024-01-01T00:00:03",
        ]
    )
    assert got.tolist() == [JAN1 + 1_000_000, JAN1, JAN1 + 250_000, JAN1 + 3_000_000]


@pytest.mark.parametrize("bad", ["2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "yesterday"])
def test_impossible_dates_are_refused(bad: str) -> None:
    """Dates that do not exist raise ``ValueError`` rather than rolling over."""
    with pytest.raises(ValueError):  # noqa: PT011 - datetime's own messages vary
        parse_times([bad])


def test_empty_page_gives_an_empty_array() -> None:
    """No timestamps, no work."""
    assert parse_times([]).shape == (0,)


@given(st.integers(-(10**15), 4 * 10**15))
def test_format_then_parse_round_trips(micros: int) -> None:
    """Formatting for a request and parsing an answer agree to the microsecond."""
    text = format_time(micros)
    assert text.endswith("Z")
    assert parse_time(text) == micros
    assert parse_times([text]).tolist() == [micros]
