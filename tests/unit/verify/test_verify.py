"""Verify's pure parts: gaps, source tallies, range checks, verdicts, the SQL, the exit code."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from producer.planning.planner import Chunk, Plan
from producer.sources.base import PointComplete, PointFailure, SourceItem, TimeWindow
from producer.sources.errors import ServerError
from producer.sources.simulator import SimulatorConfig, SimulatorSource
from producer.state import checkpoints as cp
from shared.batch import from_micros, to_micros
from simulators.data import expected_count
from verify.checks import (
    GAP_ROWS_PER_QUERY,
    SHOW_EVERY_ROW,
    Checks,
    ChunkResult,
    Gap,
    PointResult,
    PointStats,
    SourceTally,
    VerifyReport,
    assess,
    gap_thresholds,
    gaps_query,
    parse_window,
    window_gaps,
    window_query,
)
from verify.verifier import Verifier

MIN = 60_000_000
T0 = to_micros(datetime(2026, 1, 9, tzinfo=UTC))


def ts(*minutes: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.array([T0 + m * MIN for m in minutes], dtype=np.int64)


def stats(rows: int, first: int, last: int, *gaps: Gap, spacing: float = MIN) -> PointStats:
    return PointStats(rows, T0 + first * MIN, T0 + last * MIN, spacing, gaps=gaps)


def test_checks_refuse_nonsense() -> None:
    """A minimum above the maximum, a negative factor or a zero interval is refused."""
    with pytest.raises(ValueError, match="above"):
        Checks(low=5, high=1)
    with pytest.raises(ValueError, match="gap-factor"):
        Checks(gap_factor=-1)
    with pytest.raises(ValueError, match="interval"):
        Checks(interval_us=0)
    with pytest.raises(ValueError, match="finite"):
        Checks(high=float("nan"))


def test_threshold_is_the_factor_times_the_given_interval_or_else_the_spacing() -> None:
    """--interval wins over the median spacing; a factor of 0 or no spacing means no gap check."""
    assert Checks(gap_factor=3).threshold_us(MIN) == 3 * MIN
    assert Checks(gap_factor=2, interval_us=10 * MIN).threshold_us(MIN) == 20 * MIN
    assert Checks(gap_factor=0).threshold_us(MIN) is None
    assert Checks().threshold_us(None) is None


def test_a_point_without_rows_is_one_gap_over_its_window() -> None:
    """No row at all: the whole window is a gap, including its first instant."""
    (gap,) = window_gaps("P", T0, T0 + 60 * MIN, PointStats(), Checks())
    assert (gap.from_us, gap.to_us, gap.at_start) == (T0, T0 + 60 * MIN, True)
    assert gap.span == (T0, T0 + 60 * MIN)
    assert window_gaps("P", T0, T0 + 60 * MIN, PointStats(), Checks(gap_factor=0)) == []


def test_edge_gaps_appear_only_beyond_the_threshold() -> None:
    """A first row more than 3 spacings after the window start, or a last row more than 3
    before its end, leaves an edge gap; exactly 3 does not."""
    inner = Gap("P", T0 + 20 * MIN, T0 + 30 * MIN)
    gaps = window_gaps("P", T0, T0 + 60 * MIN, stats(40, 4, 57, inner), Checks())
    assert gaps == [Gap("P", T0, T0 + 4 * MIN, at_start=True), inner]
    trailing = window_gaps("P", T0, T0 + 60 * MIN, stats(40, 0, 50), Checks())
    assert trailing == [Gap("P", T0 + 50 * MIN, T0 + 60 * MIN)]
    exactly = window_gaps("P", T0, T0 + 60 * MIN, stats(55, 3, 57), Checks())
    assert exactly == []


def test_interior_gap_span_excludes_its_bounding_rows() -> None:
    """A gap between rows at minutes 5 and 9 is empty from just after 5 up to (not incl.) 9."""
    gap = Gap("P", T0 + 5 * MIN, T0 + 9 * MIN)
    assert gap.span == (T0 + 5 * MIN + 1, T0 + 9 * MIN)


def test_tally_counts_values_and_distinct_instants_across_pages() -> None:
    """Several events at one instant count once as a timestamp, even split across two pages."""
    tally = SourceTally()
    tally.add(ts(0, 1, 1, 2))
    tally.add(ts(2, 2, 3))
    tally.add(ts())
    assert (tally.values, tally.timestamps) == (7, 4)


def test_tally_counts_source_values_inside_each_gap_page_by_page() -> None:
    """Values strictly between a gap's rows count, over every page; the rows themselves do not."""
    gaps = [Gap("P", T0 + 5 * MIN, T0 + 9 * MIN), Gap("P", T0, T0 + 2 * MIN, at_start=True)]
    tally = SourceTally(gaps)
    tally.add(ts(0, 1, 2, 3, 4, 5, 6))
    tally.add(ts(7, 8, 9, 10))
    checked = tally.classify(gaps)
    assert [g.source_values for g in checked] == [3, 2]
    assert all(g.lost for g in checked)
    assert not SourceTally(gaps).classify(gaps)[0].lost


def test_assess_fails_on_counts_lost_gaps_and_range_but_not_on_source_gaps() -> None:
    """A gap the source has too passes unless --fail-on-gaps; a count or range miss fails."""
    outage = Gap("P", T0, T0 + 10 * MIN, source_values=0)
    lost = Gap("P", T0, T0 + 10 * MIN, source_values=4)
    assert assess(PointStats(rows=10), [outage], 10, None, Checks()) == ()
    assert assess(PointStats(rows=10), [outage], 10, None, Checks(fail_on_gaps=True)) == (
        "1 gap(s) the source has too",
    )
    assert assess(PointStats(rows=6), [lost], 10, None, Checks()) == (
        "count 6 vs source 10 (-4)",
        "1 gap(s) with values in the source",
    )
    assert assess(PointStats(rows=12), [], 10, None, Checks()) == ("count 12 vs source 10 (+2)",)
    outside = PointStats(rows=10, outside=3)
    assert assess(outside, [], 10, None, Checks(high=1.5)) == ("3 value(s) outside [-inf, 1.5]",)
    assert assess(PointStats(), [], None, "503", Checks()) == ("source read failed: 503",)


def test_range_sql_counts_outside_rows_only_for_given_bounds() -> None:
    """No bounds: a constant 0; one or both bounds: a conditional sum."""
    assert Checks().outside_sql() == "0L"
    assert Checks(low=-1.5).outside_sql() == "sum(CASE WHEN value < -1.5 THEN 1L ELSE 0L END)"
    both = Checks(low=0, high=100).outside_sql()
    assert "value < 0 OR value > 100" in both


def test_window_query_quotes_points_and_bounds_the_window() -> None:
    """Point names are SQL-quoted, the window is half-open, and gaps come along only when a
    fixed --interval makes their threshold known beforehand."""
    query = window_query("point_data", ["A", "it's"], T0, T0 + 60 * MIN, Checks())
    assert "source_address IN ('A', 'it''s')" in query
    assert "ts >= '2026-01-09T00:00:00.000000Z' AND ts < '2026-01-09T01:00:00.000000Z'" in query
    assert "GROUP BY source_address" in query
    assert "UNION" not in query
    fixed = window_query("point_data", ["A"], T0, T0 + MIN, Checks(interval_us=MIN))
    assert "UNION ALL" in fixed
    assert "WHERE dt > 180000000.0" in fixed
    assert f"LIMIT {GAP_ROWS_PER_QUERY + 1}" in fixed
    off = window_query("t", ["A"], T0, T0 + MIN, Checks(gap_factor=0, interval_us=MIN))
    assert "UNION" not in off
    with pytest.raises(ValueError, match="table"):
        window_query("t; DROP TABLE x", ["A"], T0, T0 + MIN, Checks())


def test_gap_thresholds_follow_each_points_median_spacing() -> None:
    """Three times each point's own spacing; points with one row or none get no threshold."""
    found = {
        "A": PointStats(10, T0, T0 + 9 * MIN, spacing_us=MIN),
        "B": PointStats(5, T0, T0 + 40 * MIN, spacing_us=10 * MIN),
        "C": PointStats(1, T0, T0),
    }
    assert gap_thresholds(found, Checks()) == {"A": 3 * MIN, "B": 30 * MIN}
    query = gaps_query("t", gap_thresholds(found, Checks()), T0, T0 + 60 * MIN)
    assert "source_address IN ('A', 'B')" in query
    assert "dt > CASE source_address WHEN 'A' THEN 180000000.0 WHEN 'B' THEN 1800000000.0 END" in (
        query
    )


def test_parse_window_splits_stats_and_gaps_per_point() -> None:
    """``s`` rows become stats, ``g`` rows that point's interior gaps, in order."""
    rows = [
        ["s", "A", 10, T0, T0 + 20 * MIN, 6.0e7, 1.0, 9.0, 2],
        ["s", "B", 1, T0, T0, None, None, None, 0],
        ["g", "A", 5 * MIN, T0 + MIN, T0 + 6 * MIN, 6.0e7, None, None, None],
        ["g", "A", 4 * MIN, T0 + 10 * MIN, T0 + 14 * MIN, 6.0e7, None, None, None],
    ]
    parsed = parse_window(rows)
    assert parsed["A"].rows == 10
    assert parsed["A"].outside == 2
    assert parsed["A"].gaps == (
        Gap("A", T0 + MIN, T0 + 6 * MIN),
        Gap("A", T0 + 10 * MIN, T0 + 14 * MIN),
    )
    assert parsed["B"] == PointStats(1, T0, T0)
    assert not parsed["A"].gaps_truncated


def test_parse_window_marks_gaps_truncated_past_the_limit() -> None:
    """One gap row more than the limit: the gap lists are flagged incomplete."""
    rows: list[list[Any]] = [["s", "A", 2, T0, T0 + MIN, 1.0, 0.0, 0.0, 0]]
    gap = ["g", "A", MIN, T0, T0 + MIN, 1.0, None, None, None]
    parsed = parse_window(rows + [gap] * (GAP_ROWS_PER_QUERY + 1))
    assert parsed["A"].gaps_truncated
    assert len(parsed["A"].gaps) == GAP_ROWS_PER_QUERY


def _result(point: str, ok: bool, index: int = 0) -> PointResult:
    problems = () if ok else ("count 1 vs source 2 (-1)",)
    return PointResult(point, index, T0, T0 + MIN, PointStats(rows=1), (), 2, 2, None, problems)


def _chunk(index: int, *results: PointResult) -> ChunkResult:
    points = tuple(r.point for r in results)
    return ChunkResult(Chunk(index, index, 0, T0, T0 + MIN, points), results)


def test_report_exit_code_is_1_on_any_failed_point() -> None:
    """Exit 0 only when every point check passed."""
    report = VerifyReport()
    report.add(_chunk(0, _result("A", True), _result("B", True)))
    assert report.exit_code == 0
    report.add(_chunk(1, _result("A", True), _result("B", False)))
    assert report.exit_code == 1
    assert (report.chunks, report.chunks_ok, report.checks, report.checks_ok) == (2, 1, 4, 3)


def test_report_keeps_every_row_while_few_then_only_failures() -> None:
    """Passing rows are listed up to SHOW_EVERY_ROW checks; beyond, only failures stay."""
    report = VerifyReport()
    report.add(_chunk(0, _result("A", True), _result("B", False)))
    assert len(report.rows) == 2
    for i in range(SHOW_EVERY_ROW):
        report.add(_chunk(i + 1, _result("A", True)))
    report.add(_chunk(99, _result("A", True)))
    assert [r.point for r in report.rows] == ["B"]


def test_report_lists_lost_gaps_first() -> None:
    """Gaps with source values inside come before the source's own gaps."""
    report = VerifyReport()
    outage = Gap("A", T0, T0 + MIN, source_values=0)
    lost = Gap("B", T0, T0 + MIN, source_values=3)
    point = PointResult("A", 0, T0, T0 + MIN, PointStats(), (outage, lost), 3, 3, None, ())
    report.add(ChunkResult(Chunk(0, 0, 0, T0, T0 + MIN, ("A",)), (point,)))
    assert report.listed_gaps == [lost, outage]
    assert (report.gaps, report.lost_gaps) == (2, 1)


def test_chunk_record_is_the_verified_state_record() -> None:
    """The record says ok, whose request, the chunk and each failed point's problems."""
    result = _chunk(3, _result("A", True, 3), _result("B", False, 3))
    record = result.record("Simulator", "point_data", "r1", datetime(2026, 1, 10, tzinfo=UTC))
    assert record["ok"] is False
    assert record["requestId"] == "r1"
    assert record["chunkIndex"] == 3
    assert record["problems"] == {"B": ["count 1 vs source 2 (-1)"]}
    assert record["verifiedAt"] == "2026-01-10T00:00:00Z"


def test_state_view_folds_the_latest_verification() -> None:
    """A later failing verification replaces a pass; a tombstone forgets it."""
    key = cp.verified_key("Simulator", 0, 10, ("A", "B"))
    assert key.startswith("verified:Simulator:0:10:")
    view = cp.StateView()
    view.apply(key, cp.encode({"kind": "verified", "ok": True}))
    assert view.is_verified("Simulator", 0, 10, ("A", "B"))
    assert not view.is_verified("Simulator", 0, 10, ("A",))
    view.apply(key, cp.encode({"kind": "verified", "ok": False}))
    assert not view.is_verified("Simulator", 0, 10, ("A", "B"))
    view.apply(key, None)
    assert view.verified == {}


class FakeSQL:
    """Answers window queries as if QuestDB held the simulator's history, and counts them."""

    def __init__(self, missing: int = 0) -> None:
        self.queries: list[str] = []
        self.missing = missing

    def rows(self, query: str) -> list[list[Any]]:
        self.queries.append(query)
        if "'g' kind" in query and "'s' kind" not in query:
            return []  # the gaps query: this history has none
        bounds = re.search(r"ts >= '([^']+)' AND ts < '([^']+)'", query)
        names = re.search(r"IN \(([^)]*)\)", query)
        assert bounds is not None
        assert names is not None
        start, end = (datetime.fromisoformat(b) for b in bounds.groups())
        out = []
        for name in re.findall(r"'([^']*)'", names.group(1)):
            n = expected_count(name, start, end, generated_tags=25) - self.missing
            out.append(["s", name, n, to_micros(start), to_micros(end) - MIN, 6e7, 0.0, 1.0, 0])
        return out


class Flaky(SimulatorSource):
    """The simulator, except that SINUSOIDU's first read yields its values, then fails (503)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        async for item in super().read(points, window):
            failing = isinstance(item, PointComplete) and item.source_address == "SINUSOIDU"
            if failing and self.failures:
                self.failures -= 1
                yield PointFailure(item.source_address, window, ServerError("503"))
                continue
            yield item


def _plan(points: Sequence[str], group: int, windows: int) -> Plan:
    groups = tuple(tuple(points[i : i + group]) for i in range(0, len(points), group))
    return Plan(T0, T0 + windows * 60 * MIN, 60 * MIN, groups)


def test_verifier_sends_one_query_per_window_whatever_the_groups() -> None:
    """25 points in 3 groups over 2 windows: 2 QuestDB queries per window (stats, then gaps
    by each point's spacing), 6 chunks, all verified."""
    points = [f"SIMTAG{i:05d}" for i in range(25)]
    sql = FakeSQL()
    source = SimulatorSource(SimulatorConfig(generated_tags=25))
    verifier = Verifier(source, sql, "t", Checks(), workers=3)  # type: ignore[arg-type]
    report = asyncio.run(verifier.run(_plan(points, 10, 2)))
    assert len(sql.queries) == 4
    assert sum("GROUP BY source_address" in q for q in sql.queries) == 2
    assert (report.chunks, report.chunks_ok, report.checks) == (6, 6, 50)
    assert report.source_values == 25 * 120


def test_verifier_reports_a_count_mismatch() -> None:
    """QuestDB one row short per point and window: every check fails with exit code 1."""
    verifier = Verifier(SimulatorSource(), FakeSQL(missing=1), "t", Checks())  # type: ignore[arg-type]
    report = asyncio.run(verifier.run(_plan(["SINUSOID"], 10, 1)))
    assert report.exit_code == 1
    assert report.rows[0].problems == ("count 59 vs source 60 (-1)",)


def test_verifier_retries_a_point_whose_read_failed_retriably() -> None:
    """A retriable failure is read again, counted afresh, and verifies; without retries it
    fails."""
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    plan = _plan(["SINUSOID", "SINUSOIDU"], 10, 1)
    retried = Verifier(Flaky(), FakeSQL(), "t", Checks(), retries=2, backoff_s=0.5, sleep=nap)  # type: ignore[arg-type]
    assert asyncio.run(retried.run(plan)).exit_code == 0
    assert naps == [0.5]
    once = Verifier(Flaky(), FakeSQL(), "t", Checks(), retries=0)  # type: ignore[arg-type]
    report = asyncio.run(once.run(plan))
    assert [r.problems for r in report.rows if not r.ok] == [("source read failed: 503",)]
    assert report.rows[1].source_values is None
    assert from_micros(report.rows[0].start_us) == datetime(2026, 1, 9, tzinfo=UTC)
