"""One query over both tiers: QuestDB for what it holds, the archive for the rest.

Per point: the archive objects of every month the window touches (fetched concurrently, each
checked) and QuestDB's rows in the window are merged (:func:`archive.merge.merge`: QuestDB wins
per timestamp), so a value held by both tiers (a month archived but not yet dropped) appears
once, and the answer is time-ordered. The work one request can cause is bounded: at most
``QUERY_MAX_POINTS`` points, ``QUERY_MAX_DAYS`` days and ``QUERY_MAX_ROWS`` rows (counted as
they are read: a request over the bound stops early with a 413 naming ``limit``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from archive.archiver import Archiver
from archive.errors import BadArchiveRequest, CorruptObjectError
from archive.fileformat import empty
from archive.keys import Month, months
from archive.merge import merge
from archive.questdb_tier import QuestTier, literal

log = structlog.get_logger(__name__)

Format = Literal["json", "ndjson", "arrow"]


@dataclass(frozen=True)
class QueryLimits:
    max_points: int = 100
    max_days: int = 3700
    max_rows: int = 2_000_000


class TooManyRows(BadArchiveRequest):  # a refusal, named for the API's 413
    """The answer would exceed QUERY_MAX_ROWS."""


@dataclass(frozen=True)
class TimeseriesQuery:
    """A checked query (see :func:`check`)."""

    points: tuple[str, ...]
    start: datetime
    end: datetime
    limit: int | None = None


def _utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise BadArchiveRequest(field, "needs a UTC offset or Z (e.g. 2024-01-01T00:00:00Z)")
    return value.astimezone(UTC)


def check(
    points: list[str], start: datetime, end: datetime, limit: int | None, limits: QueryLimits
) -> TimeseriesQuery:
    """Refuse bad input with the field named: empty or too many points, naive or reversed
    dates, a window over the day bound, a limit outside 1..QUERY_MAX_ROWS."""
    if not points:
        raise BadArchiveRequest("pointIds", "name at least one point")
    if len(points) > limits.max_points:
        raise BadArchiveRequest(
            "pointIds", f"{len(points)} points; at most {limits.max_points} (QUERY_MAX_POINTS)"
        )
    if any(not p or not p.strip() for p in points):
        raise BadArchiveRequest("pointIds", "a point id must not be empty")
    if len(set(points)) != len(points):
        raise BadArchiveRequest("pointIds", "a point is named twice")
    start, end = _utc(start, "startDate"), _utc(end, "endDate")
    if start.year < 1970:
        raise BadArchiveRequest("startDate", "must be 1970-01-01 or later")
    if end <= start:
        raise BadArchiveRequest("endDate", "must be after startDate")
    if end - start > timedelta(days=limits.max_days):
        raise BadArchiveRequest(
            "endDate", f"the window spans more than {limits.max_days} days (QUERY_MAX_DAYS)"
        )
    if limit is not None and not 1 <= limit <= limits.max_rows:
        raise BadArchiveRequest("limit", f"must be between 1 and {limits.max_rows}")
    return TimeseriesQuery(tuple(points), start, end, limit)


COLD_BATCH = 8  # archive objects fetched at once per point


def _within(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    ts = table.column("ts")
    keep = pc.and_(
        pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type))
    )
    return table.filter(keep)


def window_months(start: datetime, end: datetime) -> list[Month]:
    """The months ``[start, end)`` touches."""
    last = Month.of(end - timedelta(microseconds=1))
    return months(Month.of(start), last)


class QueryService:
    """Answers :class:`TimeseriesQuery` from both tiers."""

    def __init__(self, archiver: Archiver, tier: QuestTier, limits: QueryLimits) -> None:
        self.archiver = archiver
        self.tier = tier
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="query")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _cold(self, point: str, month: Month) -> pa.Table:
        try:
            found = self.archiver.load(point, month)
        except CorruptObjectError as exc:
            # answer from QuestDB alone for that month; the archive run will rewrite the object
            log.warning("query_archive_object_corrupt", error=str(exc))
            return empty()
        return empty() if found is None else found[0]

    def point(self, point: str, start: datetime, end: datetime, budget: int) -> pa.Table:
        """One point's rows in the window, merged across tiers, at most ``budget`` + 1 rows
        kept past the bound check (the caller turns more than ``budget`` into an error)."""
        parts: list[pa.Table] = []
        held = 0
        todo = window_months(start, end)
        # months in time order, a few at a time: once more rows than the budget are held, the
        # later months cannot be in the answer, so they are not read (memory stays bounded)
        while todo and held <= budget:
            batch, todo = todo[:COLD_BATCH], todo[COLD_BATCH:]
            for table in self._pool.map(lambda m: self._cold(point, m), batch):
                if table.num_rows:
                    within = _within(table, start, end)
                    parts.append(within)
                    held += within.num_rows
        cold = pa.concat_tables(parts).combine_chunks() if parts else empty()
        hot = self.tier.read(point, start, end, limit=budget + 1)
        return merge(cold, hot)

    def known(self, point: str) -> bool:
        """QuestDB's symbol table knows the point (kept after its partitions are dropped), or
        the query found archive rows for it."""
        query = f"SELECT ts FROM {self.tier.table} WHERE source_address = {literal(point)} LIMIT 1"  # noqa: S608
        return bool(self.tier.sql.rows(query))

    def run(self, query: TimeseriesQuery) -> list[tuple[str, pa.Table]]:
        """Every point's rows; the limit applies to the total, in point order then time."""
        answers: list[tuple[str, pa.Table]] = []
        left = query.limit if query.limit is not None else self.limits.max_rows
        for point in query.points:
            table = self.point(point, query.start, query.end, max(left, 0))
            if table.num_rows == 0 and not self.known(point):
                raise BadArchiveRequest("pointIds", f"unknown point {point!r}")
            if query.limit is None and table.num_rows > left:
                raise TooManyRows(
                    "limit",
                    f"the answer has more than {self.limits.max_rows} rows (QUERY_MAX_ROWS): "
                    "narrow the window, name fewer points, or set limit",
                )
            table = table.slice(0, max(left, 0))
            left -= table.num_rows
            answers.append((point, table))
        return answers
