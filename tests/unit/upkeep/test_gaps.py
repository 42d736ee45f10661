"""Hole finding and cadence, pure: the rules the QuestDB queries apply, on plain timestamps."""

from __future__ import annotations

import pytest

from producer.upkeep.gaps import (
    Hole,
    cadence_query,
    find_holes,
    gaps_query,
    holes_from_gaps,
    iso_us,
    median_interval,
)

S = 1_000_000
T0 = 1_767_960_000 * S  # 2026-01-09T12:00:00Z


def grid(start: int, n: int, step: int) -> list[int]:
    return [start + i * step for i in range(n)]


def test_the_cadence_is_the_median_interval_so_a_hole_does_not_move_it() -> None:
    stamps = grid(T0, 60, 60 * S) + grid(T0 + 100 * 60 * S, 60, 60 * S)  # a 40-minute hole
    assert median_interval(stamps) == 60 * S
    assert median_interval(list(reversed(stamps))) == 60 * S  # order does not matter
    assert median_interval([T0, T0 + S, T0 + 2 * S]) is None  # too few intervals to trust


def test_one_hole_between_two_present_values_with_expected_and_present_counts() -> None:
    stamps = grid(T0, 10, 60 * S) + grid(T0 + 20 * 60 * S, 10, 60 * S)
    (hole,) = find_holes("A", stamps, factor=3.0)
    assert (hole.after_us, hole.before_us) == (T0 + 9 * 60 * S, T0 + 20 * 60 * S)
    assert (hole.start_us, hole.end_us) == (hole.after_us + 1, hole.before_us)
    assert hole.expected == 10  # 11 minutes apart: 10 one-minute values missing between
    assert hole.present == 0
    assert hole.to_json()["from"] == iso_us(T0 + 9 * 60 * S + 1)


def test_jitter_and_short_gaps_are_not_holes() -> None:
    jitter = [0, 2, -1, 1, 0, -2, 1, 0, 2, -1]
    stamps = [T0 + i * 10 * S + j * 100_000 for i, j in enumerate(jitter)]
    stamps.append(stamps[-1] + 25 * S)  # 2.5 cadences: not over the factor 3
    assert find_holes("A", stamps, factor=3.0) == []
    assert len(find_holes("A", stamps, factor=2.0)) == 1


def test_each_point_is_judged_by_its_own_cadence() -> None:
    cadences = {"fast": 1 * S, "slow": 900 * S}
    gaps = [("fast", T0, T0 + 10 * S), ("slow", T0, T0 + 1800 * S), ("gone", T0, T0 + 10**9)]
    holes = holes_from_gaps(gaps, cadences, factor=3.0)
    assert holes == [Hole("fast", T0, T0 + 10 * S, S)]  # 30 min is 2 cadences of the meter


def test_the_queries_compute_in_questdb_and_quote_point_names() -> None:
    query = cadence_query("point_data", T0, T0 + 3600 * S, ["it's"])
    assert "approx_percentile" in query
    assert "lag(ts) OVER (PARTITION BY source_address" in query
    assert "'it''s'" in query
    assert "'2026-01-09T12:00:00Z'" in query
    gaps = gaps_query("point_data", T0, T0 + S, None, 180 * S)
    assert "datediff('u', prev, ts) > 180000000" in gaps
    assert "source_address IN" not in gaps


@pytest.mark.parametrize("cadence", [0, -5])
def test_a_cadence_of_zero_finds_nothing(cadence: int) -> None:
    assert find_holes("A", [*grid(T0, 10, S), T0 + 100 * S], 3.0, cadence_us=cadence) == []
