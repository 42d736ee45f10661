"""The chunk planner: chunk-size parsing, time-major order and exact window edges."""

from __future__ import annotations

from datetime import timedelta

import pytest

from producer.planning.planner import (
    MIN_CHUNK_US,
    ChunkSizeError,
    format_timespan,
    group_points,
    parse_chunk_size,
    plan,
    split_factor,
    transaction_values_bound,
)

HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30.00:00:00", timedelta(days=30)),
        ("1.00:00:00", timedelta(days=1)),
        ("01:00:00", timedelta(hours=1)),
        ("00:01:00", timedelta(minutes=1)),
        ("1.12:30:15.5", timedelta(days=1, hours=12, minutes=30, seconds=15.5)),
        ("P30D", timedelta(days=30)),
        ("PT1H", timedelta(hours=1)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("pt90m", timedelta(minutes=90)),
        ("30d", timedelta(days=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 15min ", timedelta(minutes=15)),
    ],
)
def test_parses_timespan_iso_and_shorthand(text: str, expected: timedelta) -> None:
    """The seed's TimeSpan strings, ISO-8601 durations and CLI shorthand all parse exactly."""
    assert parse_chunk_size(text) == expected


@pytest.mark.parametrize("text", ["", "banana", "P1M", "P1Y", "PT", "P", "25:00:00", "1.2.3", "5x"])
def test_refuses_what_is_not_a_regular_duration(text: str) -> None:
    """Garbage, months and years (irregular lengths) and out-of-range clock fields are refused."""
    with pytest.raises(ChunkSizeError):
        parse_chunk_size(text)


@pytest.mark.parametrize("text", ["00:00:59", "PT30S", "59s"])
def test_refuses_a_chunk_under_a_minute(text: str) -> None:
    """A chunk shorter than one minute is refused with a message saying so."""
    with pytest.raises(ChunkSizeError, match="minimum of one minute"):
        parse_chunk_size(text)


def test_formats_timespans_like_the_seed() -> None:
    """Durations print as .NET TimeSpan strings and parse back to themselves."""
    for delta in (timedelta(days=30), timedelta(hours=1), timedelta(days=1, seconds=1.25)):
        assert parse_chunk_size(format_timespan(delta)) == delta
    assert format_timespan(timedelta(days=30)) == "30.00:00:00"
    assert format_timespan(timedelta(hours=1)) == "01:00:00"


def test_orders_work_time_major() -> None:
    """Every group's window k comes before any group's window k+1."""
    grid = plan(0, 3 * DAY_US, DAY_US, ["a", "b", "c", "d", "e"], group_size=2)
    order = [(c.window_index, c.group_index) for c in grid]
    assert order == [(k, g) for k in range(3) for g in range(3)]
    assert [c.index for c in grid] == list(range(9))
    assert grid.chunk(4).points == ("c", "d")


def test_windows_tile_the_range_without_gap_or_overlap() -> None:
    """Windows are half-open, adjacent, and the last one is cut at the end."""
    end = 2 * DAY_US + 5 * HOUR_US
    grid = plan(0, end, DAY_US, ["p"], group_size=10)
    windows = [(c.start_us, c.end_us) for c in grid]
    assert windows == [(0, DAY_US), (DAY_US, 2 * DAY_US), (2 * DAY_US, end)]


def test_seed_test_one_is_twenty_four_chunks() -> None:
    """Three points over one day in one-hour chunks is 24 chunks of one group."""
    grid = plan(0, DAY_US, HOUR_US, ["SINUSOID", "CDT158", "SINUSOIDU"], group_size=10)
    assert grid.total_chunks == 24
    assert len(grid.groups) == 1


def test_splits_a_window_too_dense_for_the_bound() -> None:
    """A window expected to exceed the value bound is cut into equal shorter windows."""
    # 10 points at 1 value/s over 30 days = 25.9M values; bound 2M -> 13 sub-windows
    assert split_factor(30 * DAY_US, 10, 1.0, 2_000_000) == 13
    grid = plan(
        0,
        30 * DAY_US,
        30 * DAY_US,
        [f"p{i}" for i in range(10)],
        group_size=10,
        values_per_second=1.0,
        max_values_per_chunk=2_000_000,
    )
    assert grid.windows == 13
    assert grid.step_us == -(-30 * DAY_US // 13)


def test_never_splits_below_a_minute_or_when_disabled() -> None:
    """Splitting stops at one-minute windows, and a bound of 0 disables it."""
    assert split_factor(2 * MIN_CHUNK_US, 1000, 1000.0, 1) == 2
    assert split_factor(DAY_US, 1000, 1000.0, 0) == 1


def test_groups_points_in_order() -> None:
    """Points are grouped consecutively, the last group holding the rest."""
    assert group_points(["a", "b", "c"], 2) == (("a", "b"), ("c",))


def test_transaction_bound_follows_the_publish_cap_per_worker() -> None:
    """Under a cap, a chunk holds at most what one worker's share publishes in half the timeout."""
    # 1,000 values/s shared by 4 workers: 250/s each, 300 s of a 600 s timeout: 75,000 values
    assert transaction_values_bound(2_000_000, 1000.0, 4, 600.0) == 75_000
    assert transaction_values_bound(50_000, 1000.0, 4, 600.0) == 50_000  # the lower bound wins
    assert transaction_values_bound(0, 1000.0, 4, 600.0) == 75_000  # "never split" yields to it
    assert transaction_values_bound(2_000_000, 0.0, 4, 600.0) == 2_000_000  # no cap, no change
    assert transaction_values_bound(0, 0.0, 4, 600.0) == 0
