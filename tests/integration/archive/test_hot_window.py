"""The hot window: old QuestDB partitions go only when every row is in a verified object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archive.hot_window import prune
from archive.keys import Month
from archive.progress import Progress
from archive.service import Archive, execute, plan
from shared.qdb import QuestDBSQL
from tests.helpers import wait_for
from tests.integration.archive.conftest import Seed, write_points

pytestmark = pytest.mark.stack

JAN = Month(2024, 1)
NOW = datetime(2024, 2, 20, tzinfo=UTC)
RETENTION = timedelta(days=30)  # cutoff 2024-01-21: days 01-01 .. 01-20 are out of the window


def archive_month(archive: Archive, points: list[str]) -> None:
    chosen = plan(points, "2024-01", "2024-01", None, backfill=False)
    progress = execute(archive, chosen, Progress(len(points)))
    assert progress.failed == 0, progress.errors


def partitions(qdb: QuestDBSQL, table: str) -> set[str]:
    return {r[0] for r in qdb.rows(f"SELECT name FROM table_partitions('{table}')")}


def test_unarchived_partitions_are_never_dropped(
    archive: Archive, seed: Seed, qdb: QuestDBSQL
) -> None:
    """One point of two archived: nothing goes. Both archived: the old days go, the rest stay,
    and the dropped rows are still answered by the archive."""
    table = archive.settings.qdb_table
    seed(["SINUSOID", "CDT158"], JAN.start, JAN.end)
    archive_month(archive, ["SINUSOID"])
    report = prune(archive.archiver, RETENTION, NOW)
    assert report.dropped == []
    assert "CDT158: 2024-01 is not archived" in report.kept["2024-01-05"]
    assert len(partitions(qdb, table)) == 31

    archive_month(archive, ["CDT158"])
    report = prune(archive.archiver, RETENTION, NOW)
    assert sorted(report.dropped) == [f"2024-01-{d:02d}" for d in range(1, 21)]
    wait_for(lambda: len(partitions(qdb, table)) == 11, 60)
    for point in ("SINUSOID", "CDT158"):
        assert archive.tier.count(point, JAN.start, JAN.end) == 11 * 1440
        found = archive.archiver.load(point, JAN)
        assert found is not None
        assert found[1].rows == 31 * 1440


def test_a_row_missing_from_the_object_or_a_corrupt_object_keeps_the_partition(
    archive: Archive, seed: Seed, qdb: QuestDBSQL
) -> None:
    """A late row QuestDB holds but the object lacks, or an unreadable object: the day stays."""
    table = archive.settings.qdb_table
    seed(["SINUSOID"], JAN.start, datetime(2024, 1, 3, tzinfo=UTC))
    archive_month(archive, ["SINUSOID"])
    # a second point lands on 01-02 after the archive run
    write_points(
        table, ["CDT158"], datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 2, 1, tzinfo=UTC)
    )
    wait_for(lambda: archive.tier.count("CDT158", JAN.start, JAN.end) == 60, 60)
    key = archive.archiver.key("SINUSOID", JAN)
    good = archive.store.get(key)
    assert good is not None
    report = prune(archive.archiver, RETENTION, NOW)
    assert report.dropped == ["2024-01-01"]
    assert "CDT158" in report.kept["2024-01-02"]

    archive_month(archive, ["CDT158"])
    archive.store.put(key, good[:100])
    report = prune(archive.archiver, RETENTION, NOW)
    assert report.dropped == []
    assert key in report.kept["2024-01-02"]
    wait_for(lambda: partitions(qdb, table) == {"2024-01-02"}, 60)


def test_a_late_row_on_a_dropped_day_is_merged_into_the_object(
    archive: Archive, seed: Seed, qdb: QuestDBSQL
) -> None:
    """After days were dropped, a late row lands on one of them: the next run rewrites the
    object with it (keeping the dropped days' rows), and the next prune can drop the day."""
    from questdb import Sender, TimestampMicros  # noqa: PLC0415

    table = archive.settings.qdb_table
    seed(["SINUSOID"], JAN.start, JAN.end)
    archive_month(archive, ["SINUSOID"])
    assert len(prune(archive.archiver, RETENTION, NOW).dropped) == 20
    wait_for(lambda: len(partitions(qdb, table)) == 11, 60)
    late = datetime(2024, 1, 5, 0, 0, 30, tzinfo=UTC)
    with Sender.from_conf("http::addr=127.0.0.1:9000;") as sender:
        sender.row(
            table,
            symbols={"source_address": "SINUSOID", "connector": "Simulator"},
            columns={"value": 123.0, "quality": 0},
            at=TimestampMicros(int(late.timestamp() * 1_000_000)),
        )
    wait_for(lambda: archive.tier.count("SINUSOID", JAN.start, JAN.end) == 11 * 1440 + 1, 60)
    chosen = plan(["SINUSOID"], "2024-01", "2024-01", None, backfill=False)
    rerun = execute(archive, chosen, Progress(1))
    assert rerun.rewritten == 1
    found = archive.archiver.load("SINUSOID", JAN)
    assert found is not None
    assert found[1].rows == 31 * 1440 + 1
    stamps, vals = found[0].column("ts").to_pylist(), found[0].column("value").to_pylist()
    values = dict(zip(stamps, vals, strict=True))
    assert values[late] == 123.0
    report = prune(archive.archiver, RETENTION, NOW)
    assert report.dropped == ["2024-01-05"], report.kept
    again = execute(archive, chosen, Progress(1))
    assert again.skipped == 1
