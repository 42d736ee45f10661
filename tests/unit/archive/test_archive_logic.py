"""Pure archive logic: tier merge, progress line, query and run input checks, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from archive.errors import BadArchiveRequest
from archive.fileformat import conform
from archive.merge import merge
from archive.progress import Progress
from archive.query import QueryLimits, check, window_months
from archive.service import plan
from shared.settings import parse_retention

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def rows(minutes: list[int], value: float) -> pa.Table:
    ts = [T0 + timedelta(minutes=m) for m in minutes]
    n = len(ts)
    return conform(
        pa.table(
            {
                "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "value": [value] * n,
                "quality": pa.array([0] * n, pa.int8()),
                "connector": ["Simulator"] * n,
            }
        )
    )


def test_merge_keeps_each_timestamp_once_hot_wins() -> None:
    """Overlapping tiers: every timestamp once, in order, QuestDB's value where both hold it."""
    merged = merge(rows([0, 1, 2, 3], 1.0), rows([2, 3, 4], 2.0))
    minutes = (merged.column("ts").cast(pa.int64()).to_numpy() - int(T0.timestamp() * 1e6)) // 60e6
    assert minutes.tolist() == [0, 1, 2, 3, 4]
    assert merged.column("value").to_pylist() == [1.0, 1.0, 2.0, 2.0, 2.0]


def test_merge_with_an_empty_tier() -> None:
    """One empty side gives the other unchanged."""
    assert merge(rows([], 0), rows([1], 2.0)).num_rows == 1
    assert merge(rows([1, 2], 1.0), rows([], 0)).num_rows == 2


def test_progress_line_has_the_documents_fields() -> None:
    """Point-months done, rate per hour, ETA, values, bytes, skipped and errors."""
    clock = iter([0.0, 3600.0, 3600.0, 3600.0, 3600.0, 3600.0, 3600.0])
    progress = Progress(10, clock=lambda: next(clock, 3600.0))
    progress.start()
    progress.add("written", 43_200, 1_000_000)
    progress.add("skipped")
    progress.error("2024-01: P: store down")
    line = progress.line()
    assert "30.0% (3/10 point-months)" in line
    assert "Rate: 3.0 point-months/hour" in line
    assert "ETA: 2h 20m" in line
    assert "Data points: 43,200" in line
    assert "Data written: 1.00 MB" in line
    assert "Skipped: 1" in line
    assert "Errors: 1" in line
    assert "2024-01: P: store down" in progress.summary()


@pytest.mark.parametrize(
    ("points", "start", "end", "limit", "field"),
    [
        ([], T0, T0 + timedelta(days=1), None, "pointIds"),
        (["a"] * 3, T0, T0 + timedelta(days=1), None, "pointIds"),
        (["a", "b", "c"], T0, T0 + timedelta(days=1), None, "pointIds"),
        (["a"], T0, T0, None, "endDate"),
        (["a"], T0.replace(tzinfo=None), T0 + timedelta(days=1), None, "startDate"),
        (["a"], T0, T0 + timedelta(days=11), None, "endDate"),
        (["a"], T0, T0 + timedelta(days=1), 0, "limit"),
    ],
)
def test_bad_queries_name_the_field(
    points: list[str], start: datetime, end: datetime, limit: int | None, field: str
) -> None:
    """Each bad query input is refused with the offending field named."""
    with pytest.raises(BadArchiveRequest) as caught:
        check(points, start, end, limit, QueryLimits(max_points=2, max_days=10, max_rows=100))
    assert caught.value.field == field


def test_window_months_end_is_exclusive() -> None:
    """A window ending at a month's first instant does not touch that month."""
    got = window_months(datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    assert [str(m) for m in got] == ["2024-01", "2024-02"]


def test_run_plan_refuses_open_months_and_bad_input() -> None:
    """Only closed months; end before start; no points; backfill without a connector."""
    now = datetime(2024, 6, 15, tzinfo=UTC)
    with pytest.raises(BadArchiveRequest, match="endMonth"):
        plan(["a"], "2024-05", "2024-06", None, False, now)
    with pytest.raises(BadArchiveRequest, match="endMonth"):
        plan(["a"], "2024-05", "2024-04", None, False, now)
    with pytest.raises(BadArchiveRequest, match="pointIds"):
        plan([" "], "2024-01", "2024-02", None, False, now)
    with pytest.raises(BadArchiveRequest, match="connectorType"):
        plan(["a"], "2024-01", "2024-02", None, True, now)
    assert len(plan(["a", "b"], "2023-11", "2024-05", "X", True, now).months) == 7


def test_retention_parsing() -> None:
    """30d, 12h, 2w are durations; anything else is refused."""
    assert parse_retention("30d") == 30 * 86400
    assert parse_retention("12h") == 12 * 3600
    assert parse_retention("2w") == 14 * 86400
    for bad in ("0d", "30", "d30", "1y"):
        with pytest.raises(ValueError, match="duration"):
            parse_retention(bad)
    assert np.isfinite(parse_retention("1d"))
