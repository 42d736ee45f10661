"""``histfill verify``: does QuestDB hold what the historian holds? Counts, gaps, ranges per chunk.

Verify walks the backfill's own chunk grid (point groups times windows, planned exactly as a
request with the same arguments is, or the grid of ``--request-id``), so a chunk it checks is the
chunk a ``done:`` checkpoint names. For every point of a chunk, the seed's data-quality checks:

* **Record counts.** The source is read again and only *counted*, page by page (memory is one
  page whatever the window), so this works alike for PI Web API, ACE IoT and the simulator.
  QuestDB keeps one row per ``(ts, source_address)`` (its dedup keys), so the source figure that
  must match is its number of distinct timestamps; where a historian stores several events at
  one instant the table shows both.
* **Timestamp coverage.** Spans with no row longer than ``gap_factor`` times the point's spacing
  (``--interval``, or else the median spacing of its rows in that window). A gap with source
  values inside is data lost on the way (a failure); one the source has too is the historian's
  own outage: listed, and a failure only with ``fail_on_gaps``.
* **Value ranges.** Rows outside ``[min, max]``, when bounds are given.

QuestDB answers a window with grouped queries over all its points, never one per point (a
slice of :data:`POINTS_PER_QUERY` points per query keeps the URL short, fewer for dense data):
one for each point's count, first and last timestamps, median spacing (``approx_percentile`` of
``ts - lag(ts)``), min/max and rows out of range; then one for the interior gaps, found by the
same ``lag`` window function against each point's threshold. With ``--interval`` the threshold
is known beforehand and both come back in one UNIONed query. Gaps at a window's edges (before
the first row, after the last) follow from first/last here.

Each chunk's outcome goes to the state topic as a ``verified:`` record (see
:mod:`producer.state.checkpoints`). Exit code: 0 every chunk verified, 1 some did not, 2 verify
could not run (bad arguments, QuestDB or Kafka unreachable, a source refusing every point).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import structlog
import typer
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from producer.errors import RequestRejected, StateError, UnknownRequest
from producer.planning.planner import Chunk, Plan, format_timespan
from producer.planning.requests import Limits, StartBody, resolve_connector, validate
from producer.sources.base import PointFailure, Source, TimeWindow
from producer.sources.connectors import Connectors
from producer.state import checkpoints as cp
from producer.state.progress import BackfillRequest, iso
from producer.state.reader import read_state
from producer.worker.publisher import PlainPublisher
from shared.batch import PointBatch, from_micros
from shared.codec import BatchCodec
from shared.errors import ConfigError, HistfillError
from shared.kafka import base_config
from shared.qdb import QuestDBSQL, inspect_table
from shared.settings import ProducerSettings, load_settings
from verify.checks import (
    TABLE_NAME,
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

log = structlog.get_logger(__name__)
POINTS_PER_QUERY = 200
"""Points named in one QuestDB query: its ``IN (...)`` list travels in the URL of ``/exec``."""
QUERY_TIMEOUT_S = 120.0
"""How long one window query may take (QuestDB's own limit, ``query.timeout``, is 60 s)."""
ROWS_PER_QUERY = 20_000_000
"""Rows one query is expected to scan at most (~10 s on QuestDB 9.3): dense windows name fewer
points per query."""
Mark = Callable[[ChunkResult], Awaitable[None]]


class Verifier:
    """Checks a plan's chunks, ``workers`` at a time; a window's QuestDB answer serves all of
    its groups, so QuestDB is asked per window, never per point."""

    def __init__(
        self,
        source: Source,
        sql: QuestDBSQL,
        table: str,
        checks: Checks,
        *,
        workers: int = 4,
        retries: int = 0,
        backoff_s: float = 1.0,
        values_per_second: float = 1 / 60,
        mark: Mark | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.source, self.sql, self.table, self.checks = source, sql, table, checks
        self.workers = max(1, workers)
        self.retries, self.backoff_s, self._sleep = retries, backoff_s, sleep
        self.values_per_second = values_per_second
        self._mark = mark
        self._windows: dict[int, asyncio.Future[dict[str, PointStats]]] = {}
        self._waiting: dict[int, int] = {}
        self._sql_lock = threading.Lock()  # one query at a time, from whichever worker thread

    async def run(self, plan: Plan) -> VerifyReport:
        """Verify every chunk of ``plan``; errors that concern every point (QuestDB, auth) raise."""
        report = VerifyReport()
        chunks = iter(plan)

        async def worker() -> None:
            for chunk in chunks:  # one shared iterator: chunks go out in time-major order
                result = await self._chunk(plan, chunk)
                report.add(result)
                if self._mark is not None:
                    await self._mark(result)

        tasks = [asyncio.create_task(worker()) for _ in range(min(self.workers, len(plan)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._windows.clear()
            self._waiting.clear()
        log.info("verify_done", chunks=report.chunks, failed=report.chunks - report.chunks_ok)
        return report

    def _query(self, points: list[str], start_us: int, end_us: int) -> dict[str, PointStats]:
        """Stats (and gaps) of ``points`` over a window, a slice of points per query."""
        expected = (end_us - start_us) / 1e6 * self.values_per_second
        step = max(1, min(POINTS_PER_QUERY, int(ROWS_PER_QUERY // max(expected, 1.0))))
        stats: dict[str, PointStats] = {}
        with self._sql_lock:
            for i in range(0, len(points), step):
                stats.update(self._slice(points[i : i + step], start_us, end_us))
        return stats

    def _slice(self, names: list[str], start_us: int, end_us: int) -> dict[str, PointStats]:
        rows = self.sql.rows(window_query(self.table, names, start_us, end_us, self.checks))
        if self.checks.interval_us is None:  # gaps by each point's own median spacing
            thresholds = gap_thresholds(parse_window(rows), self.checks)
            if thresholds:
                rows += self.sql.rows(gaps_query(self.table, thresholds, start_us, end_us))
        return parse_window(rows)

    async def _window(self, plan: Plan, k: int) -> dict[str, PointStats]:
        """Window ``k``'s stats, queried once for all its groups and dropped after the last."""
        future = self._windows.get(k)
        if future is None:
            points = [p for group in plan.groups for p in group]
            future = asyncio.ensure_future(asyncio.to_thread(self._query, points, *plan.window(k)))
            self._windows[k], self._waiting[k] = future, len(plan.groups)
        try:
            return await asyncio.shield(future)
        finally:
            self._waiting[k] -= 1
            if not self._waiting[k]:
                del self._windows[k], self._waiting[k]

    async def _read(
        self, points: tuple[str, ...], window: TimeWindow, gaps: dict[str, list[Gap]]
    ) -> tuple[dict[str, SourceTally], dict[str, PointFailure | None]]:
        """Count ``points`` over ``window``; the failures (``None``: no outcome at all)."""
        tallies = {p: SourceTally(gaps[p]) for p in points}
        failures: dict[str, PointFailure | None] = dict.fromkeys(points)
        reader = self.source.read(points, window)
        try:
            async for item in reader:
                if isinstance(item, PointBatch):
                    tallies[item.source_address].add(item.timestamps_us)
                elif isinstance(item, PointFailure):
                    failures[item.source_address] = item
                else:
                    failures.pop(item.source_address, None)
        finally:
            closer = getattr(reader, "aclose", None)
            if closer is not None:
                await closer()
        return tallies, failures

    async def _chunk(self, plan: Plan, chunk: Chunk) -> ChunkResult:
        stats = await self._window(plan, chunk.window_index)
        empty = PointStats()
        gaps = {
            p: window_gaps(p, chunk.start_us, chunk.end_us, stats.get(p, empty), self.checks)
            for p in chunk.points
        }
        window = TimeWindow.from_micros(chunk.start_us, chunk.end_us)
        tallies, failures = await self._read(chunk.points, window, gaps)
        for attempt in range(1, self.retries + 1):
            # as the backfill does: points whose read failed retriably are read again, alone
            again = tuple(p for p, f in failures.items() if f is None or f.retriable)
            if not again:
                break
            await self._sleep(self.backoff_s * 2 ** (attempt - 1))
            retried, failures_now = await self._read(again, window, gaps)
            tallies.update(retried)
            failures = {p: f for p, f in failures.items() if p not in again} | failures_now
        errors = {
            p: "the source gave no outcome" if f is None else str(f.error)
            for p, f in failures.items()
        }
        results = []
        for p in chunk.points:
            error = errors.get(p)
            tally = tallies[p]
            checked = tuple(tally.classify(gaps[p]))
            point_stats = stats.get(p, empty)
            results.append(
                PointResult(
                    p,
                    chunk.index,
                    chunk.start_us,
                    chunk.end_us,
                    point_stats,
                    checked,
                    None if error else tally.values,
                    None if error else tally.timestamps,
                    error,
                    assess(point_stats, checked, tally.timestamps, error, self.checks),
                )
            )
        result = ChunkResult(chunk, tuple(results))
        # DEBUG: one line per chunk is hundreds of lines between a run's progress and its
        # summary; the summary (render) lists every failed point and chunk anyway.
        log.debug(
            "verify_chunk",
            chunk=chunk.index,
            chunk_start=_when(chunk.start_us),
            ok=result.ok,
            failed_points=sum(not r.ok for r in results),
        )
        return result


# -- the command ----------------------------------------------------------------------------------


def _when(micros: int) -> str:
    return iso(from_micros(micros)) or ""


def _duration(micros: int) -> str:
    seconds = micros // 1_000_000
    parts = [
        (seconds // 86_400, "d"),
        (seconds % 86_400 // 3_600, "h"),
        (seconds % 3_600 // 60, "m"),
    ]
    text = " ".join(f"{n}{unit}" for n, unit in parts if n)
    return text + (f" {seconds % 60}s" if seconds % 60 or not text else "")


def render(console: Console, report: VerifyReport, checks: Checks, title: str) -> None:
    """The point checks (every one, or only failures when there are many), the gaps, a summary."""
    rows = sorted(report.rows, key=lambda r: (r.start_us, r.chunk_index, r.point))
    table = Table(
        "window start", "point", "source", "questdb", "gaps", "range", "result", title=title
    )
    for r in rows:
        source = "-" if r.source_timestamps is None else f"{r.source_timestamps:,}"
        if r.source_values is not None and r.source_values != r.source_timestamps:
            source += f" ({r.source_values:,} values)"
        lost = sum(g.lost for g in r.gaps)
        gaps = f"{len(r.gaps)}" + (f" ({lost} lost)" if lost else "")
        low, high = r.questdb.value_min, r.questdb.value_max
        span = "-" if low is None or high is None else f"{low:g}..{high:g}"
        table.add_row(
            _when(r.start_us),
            r.point,
            source,
            f"{r.questdb.rows:,}",
            gaps + (" +" if r.questdb.gaps_truncated else ""),
            span + (f" ({r.questdb.outside:,} out)" if r.questdb.outside else ""),
            "[green]ok[/]" if r.ok else "[red]" + "; ".join(r.problems) + "[/]",
        )
    if rows:
        console.print(table)
    else:
        console.print(f"[bold]{title}[/]")
    hidden = report.checks - len(rows)
    if hidden:
        console.print(f"({hidden:,} point checks not listed: {report.checks_ok:,} passed)")
    if report.listed_gaps:
        gaps_table = Table(
            "point", "no row from", "to", "length", "source values", "verdict", title="gaps"
        )
        for g in sorted(report.listed_gaps, key=lambda g: (not g.lost, g.point, g.from_us)):
            gaps_table.add_row(
                g.point,
                _when(g.from_us) + (" (window start)" if g.at_start else ""),
                _when(g.to_us),
                _duration(g.to_us - g.from_us),
                f"{g.source_values:,}" if g.source_values is not None else "-",
                "[red]lost[/]" if g.lost else "also in source",
            )
        console.print(gaps_table)
    color = "green" if report.exit_code == 0 else "red"
    console.print(
        f"[{color}]{report.chunks_ok:,}/{report.chunks:,} chunks verified[/] "
        f"({report.checks_ok:,}/{report.checks:,} point checks); source {report.source_values:,} "
        f"values, QuestDB {report.questdb_rows:,} rows; gaps: {report.gaps:,} "
        f"({report.lost_gaps:,} with source values inside)"
        + ("" if checks.low is None and checks.high is None else f"; range {checks.range_text()}")
    )


def _points(points: str | None, points_file: Path | None) -> list[str] | None:
    if points is not None and points_file is not None:
        raise RequestRejected("pointAddresses", "give --points or --points-file, not both")
    if points is not None:
        return [p.strip() for p in points.split(",") if p.strip()]
    if points_file is not None:
        lines = points_file.read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return None


def plan_request(
    settings: ProducerSettings,
    unavailable: dict[str, str | None],
    *,
    connector: str | None,
    points: list[str] | None,
    start: str | None,
    end: str | None,
    chunk: str | None,
    request_id: str | None,
) -> BackfillRequest:
    """The request whose grid to verify: ``request_id``'s from the state topic, or one planned
    from the arguments exactly as the backfill API plans it (so chunk keys line up)."""
    given = {"--connector": connector, "--points": points, "--start": start, "--end": end}
    if request_id is not None:
        if any(v is not None for v in (*given.values(), chunk)):
            raise RequestRejected(
                "requestId",
                "--request-id verifies that request's own connector, points, "
                "window and chunks: give none of --connector/--points/--start/--end/--chunk",
            )
        record = read_state(settings).requests.get(request_id)
        if record is None:
            raise UnknownRequest(f"no request {request_id} on state topic {settings.topic_state}")
        request = BackfillRequest.from_record(record)
        resolve_connector(request.connector_type, unavailable)
        return request
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise RequestRejected("arguments", f"missing {', '.join(missing)} (or --request-id)")
    try:
        body = StartBody(
            connector_type=connector,
            point_addresses=points,
            start_time=start,
            end_time=end,
            chunk_size=chunk,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise RequestRejected("arguments", problems) from None
    return validate(body, Limits.from_settings(settings), unavailable)


def _state_topic_exists(settings: ProducerSettings) -> None:
    try:
        topics = AdminClient(base_config(settings)).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise StateError(f"cannot list Kafka topics: {exc}") from exc
    if settings.topic_state not in topics:
        raise ConfigError(
            f"state topic {settings.topic_state} does not exist: run `histfill init`, "
            "or pass --no-mark"
        )


async def run_verify(
    settings: ProducerSettings,
    connectors: Connectors,
    request: BackfillRequest,
    checks: Checks,
    *,
    table: str,
    workers: int,
    mark: bool,
    request_id: str | None,
) -> VerifyReport:
    """Verify ``request``'s grid against ``table``; with ``mark``, record each chunk's outcome."""
    publisher = PlainPublisher(settings, BatchCodec()) if mark else None

    async def put(result: ChunkResult) -> None:
        assert publisher is not None  # noqa: S101  # only installed with a publisher
        record = result.record(request.connector_type, table, request_id, datetime.now(UTC))
        key = cp.verified_key(
            request.connector_type, result.chunk.start_us, result.chunk.end_us, result.chunk.points
        )
        await asyncio.to_thread(publisher.put_state, key, cp.encode(record))

    try:
        sql_timeout = QUERY_TIMEOUT_S
        with QuestDBSQL(settings.qdb_http_url, settings.qdb_http_auth, sql_timeout) as sql:
            if await asyncio.to_thread(inspect_table, sql, table) is None:
                raise ConfigError(f"QuestDB table {table} does not exist (--table, QDB_TABLE)")
            source = connectors.get(request.connector_type)
            verifier = Verifier(
                source,
                sql,
                table,
                checks,
                workers=workers,
                retries=settings.chunk_retries,
                backoff_s=settings.retry_backoff_seconds,
                values_per_second=1.0 / settings.expected_sample_interval_seconds,
                mark=put if publisher else None,
            )
            return await verifier.run(request.plan())
    finally:
        await connectors.aclose()
        if publisher is not None:
            publisher.close()


def verify_command(
    connector: str | None = typer.Option(
        None, "--connector", help="PIWebApi, AceIot or Simulator."
    ),
    points: str | None = typer.Option(None, "--points", help="Comma-separated point addresses."),
    points_file: Annotated[
        Path | None, typer.Option("--points-file", help="One point per line.")
    ] = None,
    start: str | None = typer.Option(
        None, "--start", help="ISO-8601 start (inclusive; UTC if no offset)."
    ),
    end: str | None = typer.Option(None, "--end", help="ISO-8601 end (exclusive)."),
    chunk: str | None = typer.Option(
        None, "--chunk", help="30d, PT1H, 01:00:00 ... (default DEFAULT_CHUNK_SIZE)."
    ),
    request_id: str | None = typer.Option(
        None, "--request-id", help="Verify this backfill request's grid and attach the marks to it."
    ),
    table: str | None = typer.Option(None, "--table", help="QuestDB table (default QDB_TABLE)."),
    gap_factor: float = typer.Option(
        3.0,
        "--gap-factor",
        help="A gap is a span without rows longer than this many intervals (0: off).",
    ),
    interval: float | None = typer.Option(
        None, "--interval", help="Seconds between a point's values (default: its median spacing)."
    ),
    low: float | None = typer.Option(None, "--min", help="Lowest valid value."),
    high: float | None = typer.Option(None, "--max", help="Highest valid value."),
    fail_on_gaps: bool = typer.Option(
        False, "--fail-on-gaps", help="Fail on gaps the source has too, not only on lost data."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Chunks checked at once (default BACKFILL_WORKERS)."
    ),
    mark: bool = typer.Option(
        True, "--mark/--no-mark", help="Record each chunk's outcome on the state topic."
    ),
) -> None:
    """Compare QuestDB with the source per point and chunk: counts, gaps, value ranges.

    Exit code 0 if every chunk verified, 1 if any did not, 2 if verify could not run.
    """
    console = Console()
    try:
        settings = load_settings(ProducerSettings)
        checks = Checks(
            gap_factor,
            None if interval is None else round(interval * 1_000_000),
            low,
            high,
            fail_on_gaps,
        )
        target = table or settings.qdb_table
        if not TABLE_NAME.match(target):
            raise ConfigError(f"--table {target!r} is not a QuestDB table name")
        connectors = Connectors.from_settings(settings)
        request = plan_request(
            settings,
            connectors.unavailable(),
            connector=connector,
            points=_points(points, points_file),
            start=start,
            end=end,
            chunk=chunk,
            request_id=request_id,
        )
        if mark:
            _state_topic_exists(settings)
        report = asyncio.run(
            run_verify(
                settings,
                connectors,
                request,
                checks,
                table=target,
                workers=workers or settings.backfill_workers,
                mark=mark,
                request_id=request_id,
            )
        )
    except (HistfillError, ValueError, OSError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    span = f"{_when(request.start_us)} .. {_when(request.end_us)}"
    step = format_timespan(timedelta(microseconds=request.step_us))
    render(
        console,
        report,
        checks,
        f"verify {target}: {request.connector_type} {span}, chunks of {step}",
    )
    raise typer.Exit(code=report.exit_code)
