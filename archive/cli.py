"""``histfill archive``, ``histfill query`` and ``histfill verify --archive``.

Thin shells over :mod:`archive.service`: the same code runs behind the HTTP API.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from archive.answer import ndjson_lines, to_arrow_stream
from archive.errors import BadArchiveRequest
from archive.keys import Month, months
from archive.progress import Progress
from archive.query import check
from archive.service import Archive, execute, lean_memory, plan, prune_hot
from archive.verify import verify_archive
from shared.errors import HistfillError
from shared.settings import ArchiveSettings, load_settings

console = Console(stderr=True)


def _points(points: str | None, points_file: Path | None) -> list[str]:
    if (points is None) == (points_file is None):
        console.print("[bold red]error:[/] give exactly one of --points and --points-file")
        raise typer.Exit(code=2)
    if points is not None:
        return [p.strip() for p in points.split(",") if p.strip()]
    lines = Path(str(points_file)).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _when(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadArchiveRequest(field, f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def archive_command(
    connector: str | None = typer.Option(
        None, "--connector", help="PIWebApi, AceIot or Simulator (to backfill what QuestDB lacks)."
    ),
    points: str | None = typer.Option(None, "--points", help="Comma-separated point ids."),
    points_file: Annotated[
        Path | None, typer.Option("--points-file", help="One point per line.")
    ] = None,
    start_month: str = typer.Option(..., "--start-month", help="First month, YYYY-MM."),
    end_month: str = typer.Option(..., "--end-month", help="Last month, YYYY-MM (closed)."),
    backfill: bool = typer.Option(
        True, "--backfill/--no-backfill", help="Ask the producer for point-months QuestDB lacks."
    ),
    prune_only: bool = typer.Option(
        False, "--prune-only", help="Only drop hot partitions already archived (HOT_RETENTION)."
    ),
    every: float = typer.Option(5.0, "--every", help="Seconds between progress lines."),
) -> None:
    """Archive point-months from QuestDB to Parquet objects (ARCHIVE_URL), month by month.

    Re-running skips objects present and valid; a corrupt or foreign object is rewritten.
    Exit 1 when any point-month failed.
    """
    lean_memory()
    try:
        settings = load_settings(ArchiveSettings)
        archive = Archive.from_settings(settings)
    except HistfillError as exc:
        raise _fail(exc) from exc
    try:
        if prune_only:
            report = prune_hot(archive)
            for name in report.dropped:
                typer.echo(f"dropped {name}")
            for name, why in report.kept.items():
                typer.echo(f"kept {name}: {why}")
            return
        try:
            run = plan(_points(points, points_file), start_month, end_month, connector, backfill)
        except HistfillError as exc:
            raise _fail(exc) from exc
        progress = Progress(len(run.points) * len(run.months))
        cancel = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: cancel.set())
        signal.signal(signal.SIGTERM, lambda *_: cancel.set())
        last = [0.0, -1.0]

        def show(p: Progress) -> None:
            now = time.monotonic()
            pct = int(100 * p.done / max(1, p.total))
            if now - last[0] >= every or pct != last[1] or p.done == p.total:
                last[0], last[1] = now, pct
                typer.echo(p.line())

        try:
            execute(archive, run, progress, cancel, show)
        except HistfillError as exc:
            progress.error(str(exc))
            progress.finish("Failed")
        typer.echo(progress.summary())
        if progress.failed:
            raise typer.Exit(code=1)
    finally:
        archive.close()


def query_command(
    points: str = typer.Option(..., "--points", help="Comma-separated point ids."),
    start: str = typer.Option(..., "--start", help="ISO-8601 start (inclusive; UTC if no offset)."),
    end: str = typer.Option(..., "--end", help="ISO-8601 end (exclusive; UTC if no offset)."),
    limit: int | None = typer.Option(None, "--limit", help="Most rows in the answer."),
    fmt: str = typer.Option("ndjson", "--format", help="ndjson, csv or arrow (to stdout)."),
) -> None:
    """Query points over both tiers (QuestDB and the archive), time-ordered, each value once."""
    try:
        settings = load_settings(ArchiveSettings)
        archive = Archive.from_settings(settings)
    except HistfillError as exc:
        raise _fail(exc) from exc
    try:
        query = check(
            [p.strip() for p in points.split(",")],
            _when(start, "--start"),
            _when(end, "--end"),
            limit,
            archive.query.limits,
        )
        answers = archive.query.run(query)
    except HistfillError as exc:
        raise _fail(exc) from exc
    finally:
        archive.close()
    out = sys.stdout
    if fmt == "arrow":
        for chunk in to_arrow_stream(answers):
            sys.stdout.buffer.write(chunk)
    elif fmt == "csv":
        out.write("pointId,ts,value,quality,text\n")
        for line in ndjson_lines(answers):
            row = json.loads(line)
            text = "" if row["text"] is None else row["text"]
            out.write(f"{row['pointId']},{row['ts']},{row['value']},{row['quality']},{text}\n")
    else:
        for line in ndjson_lines(answers):
            out.write(line)
    console.print(f"{sum(t.num_rows for _, t in answers):,} rows")


def verify_archive_command(
    points: str | None = typer.Option(None, "--points", help="Comma-separated point ids."),
    points_file: Annotated[
        Path | None, typer.Option("--points-file", help="One point per line.")
    ] = None,
    start_month: str = typer.Option(..., "--start-month", help="First month, YYYY-MM."),
    end_month: str = typer.Option(..., "--end-month", help="Last month, YYYY-MM."),
    gap_factor: float = typer.Option(3.0, "--gap-factor", help="Gap: > this x median spacing."),
    low: float | None = typer.Option(None, "--min", help="Lowest valid value."),
    high: float | None = typer.Option(None, "--max", help="Highest valid value."),
    fail_on_gaps: bool = typer.Option(False, "--fail-on-gaps", help="Gaps fail the check too."),
) -> None:
    """Check the archive per point-month: object vs QuestDB per day, gaps, value ranges."""
    try:
        settings = load_settings(ArchiveSettings)
        archive = Archive.from_settings(settings)
        first = Month.parse(start_month, "--start-month")
        last = Month.parse(end_month, "--end-month")
    except HistfillError as exc:
        raise _fail(exc) from exc
    try:
        ok, checks = verify_archive(
            archive.archiver,
            _points(points, points_file),
            months(first, last),
            gap_factor,
            low,
            high,
            fail_on_gaps,
        )
    finally:
        archive.close()
    for c in checks:
        status = "ok" if c.ok else "MISMATCH"
        rows = "-" if c.object_rows is None else f"{c.object_rows:,}"
        typer.echo(f"{c.month} {c.point}: {status} object {rows} rows, QuestDB {c.questdb_rows:,}")
        for problem in c.problems[:10]:
            typer.echo(f"    {problem}")
        for gap in c.gaps[:5]:
            typer.echo(f"    {gap}")
    typer.echo("archive verified" if ok else "archive verification FAILED")
    if not ok:
        raise typer.Exit(code=1)
