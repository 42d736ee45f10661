"""Archive runs against the real QuestDB and S3Proxy: write, read back, skip, rewrite, verify."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archive.fileformat import encode
from archive.keys import Month
from archive.progress import Progress
from archive.service import Archive, execute, plan
from archive.verify import verify_archive
from tests.integration.archive.conftest import Seed

pytestmark = pytest.mark.stack

JAN, FEB = Month(2024, 1), Month(2024, 2)
POINTS = ["SINUSOID", "BA:ACTIVE.1", "SIMTAG00007"]


def run(
    archive: Archive, points: list[str], first: str = "2024-01", last: str = "2024-02"
) -> Progress:
    chosen = plan(points, first, last, None, backfill=False)
    progress = Progress(len(chosen.points) * len(chosen.months))
    return execute(archive, chosen, progress)


def test_every_point_month_is_written_checked_and_skipped_on_rerun(
    archive: Archive, seed: Seed
) -> None:
    """Each point-month lands at its documented key with QuestDB's rows; a re-run skips all."""
    seed(POINTS, JAN.start, FEB.end)
    first = run(archive, POINTS)
    assert first.failed == 0, first.errors
    assert first.written == 6
    keys = archive.store.list("timeseries/")
    assert "timeseries/2024/01/BA%3AACTIVE.1.parquet" in keys
    assert len(keys) == 6
    for month in (JAN, FEB):
        for point in POINTS:
            found = archive.archiver.load(point, month)
            assert found is not None
            assert found[1].rows == archive.tier.count(point, month.start, month.end) > 0
    again = run(archive, POINTS)
    assert (again.skipped, again.written, again.failed) == (6, 0, 0)
    assert again.bytes_written == 0


def test_truncated_and_foreign_objects_are_reported_and_rewritten(
    archive: Archive, seed: Seed
) -> None:
    """A cut-off object and another point's object at a key are detected, noted, replaced."""
    seed(POINTS[:2], JAN.start, JAN.end)
    run(archive, POINTS[:2], "2024-01", "2024-01")
    key_a = archive.archiver.key(POINTS[0], JAN)
    key_b = archive.archiver.key(POINTS[1], JAN)
    good_a = archive.store.get(key_a)
    assert good_a is not None
    archive.store.put(key_a, good_a[: len(good_a) // 3])
    archive.store.put(key_b, good_a)  # POINTS[0]'s object under POINTS[1]'s key
    again = run(archive, POINTS[:2], "2024-01", "2024-01")
    assert again.rewritten == 2
    assert again.failed == 0
    notes = "\n".join(again.notes)
    assert key_a in notes
    assert key_b in notes
    assert "foreign" in notes
    for point in POINTS[:2]:
        found = archive.archiver.load(point, JAN)
        assert found is not None
        assert found[1].rows == archive.tier.count(point, JAN.start, JAN.end)


def test_rows_arriving_after_archiving_are_merged_in(archive: Archive, seed: Seed) -> None:
    """QuestDB holding more rows than the object (late data): the object is rewritten with
    both tiers' rows, each timestamp once."""
    seed(["SINUSOID"], JAN.start, datetime(2024, 1, 10, tzinfo=UTC))
    run(archive, ["SINUSOID"], "2024-01", "2024-01")
    seed(["SINUSOID"], datetime(2024, 1, 10, tzinfo=UTC), JAN.end)
    again = run(archive, ["SINUSOID"], "2024-01", "2024-01")
    assert again.rewritten == 1
    found = archive.archiver.load("SINUSOID", JAN)
    assert found is not None
    assert found[1].rows == 31 * 1440


def test_verify_archive_passes_then_flags_a_short_object(archive: Archive, seed: Seed) -> None:
    """verify --archive: per point-month and day, object vs QuestDB; a short object fails."""
    seed(["SINUSOID"], JAN.start, JAN.end)
    run(archive, ["SINUSOID"], "2024-01", "2024-01")
    ok, checks = verify_archive(archive.archiver, ["SINUSOID"], [JAN])
    assert ok, [c.problems for c in checks]
    found = archive.archiver.load("SINUSOID", JAN)
    assert found is not None
    short, _ = encode(found[0].slice(0, 1000), "SINUSOID", JAN)
    archive.store.put(archive.archiver.key("SINUSOID", JAN), short)
    ok, checks = verify_archive(archive.archiver, ["SINUSOID"], [JAN])
    assert not ok
    assert any("QuestDB 1440" in p for p in checks[0].problems)
    ok, checks = verify_archive(archive.archiver, ["SINUSOID"], [JAN], low=0.0, high=10.0)
    assert any("values beyond 10.0" in p for p in checks[0].problems)


def test_make_run_archive_step(
    archive: Archive, seed: Seed, archive_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run`'s archive step: archives the month, verifies it, answers across both tiers."""
    from rich.console import Console  # noqa: PLC0415

    from archive.demo import archive_demo  # noqa: PLC0415

    seed(POINTS, JAN.start, JAN.end)
    for name, value in archive_env.items():
        monkeypatch.setenv(name, value)
    console = Console(record=True, width=200)
    assert archive_demo(console, POINTS, JAN)
    text = console.export_text()
    assert "3/3 point-months ok" in text
    assert "answer 44,640 rows, time-ordered, each timestamp once" in text
