"""The re-pull's pure parts: the diff against QuestDB, hour counts, the report's records,
summary and text, and ``since`` parsing."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from producer.upkeep.changes import (
    ROWS_PER_RECORD,
    HourChange,
    SinceError,
    change_records,
    parse_since,
    summarize,
)
from producer.upkeep.changes_cli import render
from producer.upkeep.diff import HOUR_US, Rows, diff_point, last_per_instant, no_rows
from producer.upkeep.repull import next_window

NAN = math.nan


def rows(ts: list[int], values: list[float], quality: list[int] | None = None, texts=None) -> Rows:  # type: ignore[no-untyped-def]
    return Rows(
        np.array(ts, dtype=np.int64),
        np.array(values, dtype=np.float64),
        np.array(quality or [0] * len(ts), dtype=np.uint8),
        texts,
    )


def test_identical_rows_give_nothing_to_publish() -> None:
    """Same instants, values and qualities (NaN included): nothing differs."""
    same = rows([1, 2, 3], [1.0, NAN, 3.0], [0, 17, 2])
    diff = diff_point(same, rows([1, 2, 3], [1.0, NAN, 3.0], [0, 17, 2]))
    assert len(diff.rows) == 0
    assert diff.added_count == 0
    assert diff.only_in_questdb == 0


def test_new_instants_are_added_and_different_ones_changed() -> None:
    """An instant QuestDB lacks is added; a different value or quality at a shared instant is
    changed; an equal one is left out."""
    source = rows([10, 20, 25, 30, 40], [1.0, 2.5, 9.0, 3.0, 4.0], [0, 0, 0, 2, 0])
    questdb = rows([10, 20, 30, 40], [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0])
    diff = diff_point(source, questdb)
    assert diff.rows.timestamps_us.tolist() == [20, 25, 30]
    assert diff.rows.values.tolist() == [2.5, 9.0, 3.0]
    assert diff.added.tolist() == [False, True, False]
    assert (diff.added_count, diff.changed_count) == (1, 2)


def test_an_empty_questdb_makes_everything_added() -> None:
    """Nothing in QuestDB: every source row is added (the boundaries of the search hold)."""
    diff = diff_point(rows([5, 6], [1.0, 2.0]), no_rows())
    assert diff.added.tolist() == [True, True]


def test_rows_only_in_questdb_are_counted_not_published() -> None:
    """A row the source no longer has is left alone (counted)."""
    diff = diff_point(rows([1], [1.0]), rows([1, 2, 3], [1.0, 2.0, 3.0]))
    assert len(diff.rows) == 0
    assert diff.only_in_questdb == 2


def test_texts_are_compared() -> None:
    """A digital state renamed at the same instant is a change; None and "" are equal."""
    source = rows([1, 2], [NAN, NAN], texts=["On", ""])
    questdb = rows([1, 2], [NAN, NAN], texts=["Off", ""])
    diff = diff_point(source, questdb)
    assert diff.rows.timestamps_us.tolist() == [1]
    assert diff.rows.texts == ["On"]
    assert len(diff_point(rows([1], [0.0]), rows([1], [0.0], texts=[""])).rows) == 0


def test_several_events_at_one_instant_compare_as_the_last_one() -> None:
    """QuestDB keeps the last of equal instants: the source is reduced the same way first."""
    source = rows([3, 1, 1, 2], [30.0, 10.0, 11.0, 20.0])
    reduced = last_per_instant(source)
    assert reduced.timestamps_us.tolist() == [1, 2, 3]
    assert reduced.values.tolist() == [11.0, 20.0, 30.0]
    diff = diff_point(source, rows([1, 2, 3], [11.0, 20.0, 30.0]))
    assert len(diff.rows) == 0
    diff = diff_point(source, rows([1, 2, 3], [10.0, 20.0, 30.0]))
    assert diff.rows.values.tolist() == [11.0]
    assert diff.changed_count == 1


def test_hours_count_added_and_changed_per_utc_hour() -> None:
    """Per hour with a difference: (hour start, added, changed), time-ordered."""
    h = HOUR_US
    source = rows([h + 1, h + 2, 3 * h, 3 * h + 5], [1.0, 2.0, 3.0, 4.0])
    questdb = rows([h + 2, 3 * h + 5], [0.0, 0.0])
    assert diff_point(source, questdb).hours() == [(h, 1, 1), (3 * h, 1, 1)]


def test_change_records_are_split_and_keyed_by_run() -> None:
    """A run's rows go in records of at most ROWS_PER_RECORD, keyed kind:run:part."""
    changes = [HourChange(f"P{i}", 0, 1, 0) for i in range(ROWS_PER_RECORD + 1)]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    records = change_records("repull", "r1", at, (0, HOUR_US), changes)
    assert [k for k, _ in records] == ["repull:r1:0", "repull:r1:1"]
    body = json.loads(records[1][1])
    assert body["kind"] == "repull"
    assert body["at"] == "2026-01-01T00:00:00Z"
    assert body["rows"] == [
        {"point": f"P{ROWS_PER_RECORD}", "hour": "1970-01-01T00:00:00Z", "added": 1, "changed": 0}
    ]
    assert change_records("repull", "r2", at, (0, 1), []) == []


def test_summary_sums_runs_per_point_hour_and_filters() -> None:
    """Runs within [since, until) are summed per point and hour, split by kind; a point filter
    keeps that point alone."""
    at = datetime(2026, 1, 2, tzinfo=UTC)
    hour = "2026-01-01T23:00:00Z"
    records = [
        {"kind": "repull", "run": "a", "at": "2026-01-02T00:00:00Z",
         "rows": [{"point": "A", "hour": hour, "added": 2, "changed": 1},
                  {"point": "B", "hour": hour, "added": 0, "changed": 4}]},
        {"kind": "repair", "run": "b", "at": "2026-01-02T01:00:00Z",
         "rows": [{"point": "A", "hour": hour, "added": 5, "changed": 0}]},
        {"kind": "repull", "run": "c", "at": "2025-12-01T00:00:00Z",
         "rows": [{"point": "A", "hour": hour, "added": 100, "changed": 0}]},
    ]  # fmt: skip
    data = summarize(records, at, at + timedelta(days=1), None)
    assert data["totals"] == {"added": 7, "changed": 5}
    assert data["runs"] == 2
    first = data["rows"][0]
    assert (first["point"], first["added"], first["changed"]) == ("A", 7, 1)
    assert first["by"] == {
        "repull": {"added": 2, "changed": 1},
        "repair": {"added": 5, "changed": 0},
    }
    only_b = summarize(records, at, at + timedelta(days=1), "B")
    assert only_b["totals"] == {"added": 0, "changed": 4}
    assert only_b["points"] == 1


def test_render_is_plain_aligned_text() -> None:
    """The CLI's text has no markup: a header line, a column line, one line per point-hour."""
    at = datetime(2026, 1, 2, tzinfo=UTC)
    records = [
        {"kind": "repull", "run": "a", "at": "2026-01-02T00:00:00Z",
         "rows": [{"point": "A", "hour": "2026-01-01T23:00:00Z", "added": 1200, "changed": 1}]},
    ]  # fmt: skip
    text = render(summarize(records, at, at + timedelta(hours=1), None))
    lines = text.splitlines()
    assert lines[0].endswith("1,200 values added, 1 changed, 1 points, 1 runs")
    assert lines[2].split() == ["A", "2026-01-01T23:00:00Z", "1,200", "1", "repull"]
    assert "[" not in text
    empty = render(summarize([], at, at + timedelta(hours=1), None))
    assert empty.count("\n") == 0


def test_since_is_a_duration_or_a_zoned_time() -> None:
    """``1d``/``12h``/``30m`` back from now, or ISO-8601 with a zone; anything else refused."""
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-01-01T00:00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ("yesterday", "2026-01-01T00:00:00", "-1d"):
        with pytest.raises(SinceError):
            parse_since(bad, now)


def test_the_window_trails_now_and_reaches_back_to_the_last_run() -> None:
    """A run reads ``[now - lag - window, now - lag)``; after missed runs it starts where the
    last run ended, so nothing between two runs goes unread (up to CATCH_UP_WINDOWS windows);
    a recent last run changes nothing."""
    h = HOUR_US
    assert next_window(10 * h, 60, 2 * h, None) == (8 * h - 60, 10 * h - 60)
    assert next_window(10 * h, 0, 2 * h, 9 * h) == (8 * h, 10 * h)
    assert next_window(10 * h, 0, 2 * h, 5 * h) == (5 * h, 10 * h)
    assert next_window(100 * h, 0, 2 * h, 5 * h) == (100 * h - 24 * h, 100 * h)  # capped
