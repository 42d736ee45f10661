"""The archive's part of ``make run``: archive the month the main job backfilled, verify it,
and answer one query from both tiers (the archive object and QuestDB's rows, merged)."""

from __future__ import annotations

from rich.console import Console

from archive.keys import Month
from archive.progress import Progress
from archive.query import check
from archive.service import Archive, execute, plan
from archive.verify import verify_archive
from shared.errors import HistfillError
from shared.settings import ArchiveSettings, load_settings


def archive_demo(console: Console, points: list[str], month: Month) -> bool:
    """True when every point-month archived, verified, and the query saw each value once."""
    console.rule(f"[bold]archive: {len(points)} points x {month} -> Parquet objects")
    settings = load_settings(ArchiveSettings)
    archive = Archive.from_settings(settings)
    try:
        run = plan(points, str(month), str(month), None, backfill=False)
        progress = execute(archive, run, Progress(len(points)))
        console.print(progress.summary())
        ok, checks = verify_archive(archive.archiver, points, [month])
        bad = [c for c in checks if not c.ok]
        console.print(
            f"histfill verify --archive: {len(checks) - len(bad)}/{len(checks)} point-months ok"
        )
        point = points[0]
        query = check([point], month.start, month.end, None, archive.query.limits)
        answer = archive.query.run(query)[0][1]
        found = archive.archiver.load(point, month)
        cold = found[1].rows if found else 0
        hot = archive.tier.count(point, month.start, month.end)
        ts = answer.column("ts").cast("int64").to_numpy()
        once = len(set(ts.tolist())) == len(ts)
        console.print(
            f"query {point} {month}: archive object {cold:,} rows, QuestDB {hot:,} rows -> "
            f"answer {answer.num_rows:,} rows, time-ordered, "
            f"{'each timestamp once' if once else 'DUPLICATES'}"
        )
        console.print(
            f"  the same from the shell: histfill query --points {point} "
            f"--start {month.start:%Y-%m-%d} --end {month.end:%Y-%m-%d} --format csv | head"
        )
        return ok and progress.failed == 0 and once and answer.num_rows == max(cold, hot)
    except HistfillError as exc:
        console.print(f"[bold red]archive step failed:[/] {exc}")
        return False
    finally:
        archive.close()
