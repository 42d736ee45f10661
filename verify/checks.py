"""The checks of ``histfill verify`` (:mod:`verify.verifier`), pure: no I/O here.

What QuestDB holds of a point in a window (:class:`PointStats`, from the one query per window
:func:`window_query` builds), what the source holds (:class:`SourceTally`, fed page by page), the
gaps between them (:func:`window_gaps`, classified by the source values found inside) and the
verdict (:func:`assess`), folded into a bounded :class:`VerifyReport`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from producer.planning.planner import Chunk
from producer.state.progress import iso
from shared.batch import Int64Array, from_micros

GAP_ROWS_PER_QUERY = 10_000
"""Interior gaps one query returns at most; past that a point's gap list is marked truncated."""
SHOW_EVERY_ROW = 50
"""Up to this many point checks, the table lists every one; past it, only the failed ones."""
MAX_LISTED = 500
"""Rows (and gaps) kept for the tables; the rest are counted, so memory stays bounded."""
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")


@dataclass(frozen=True, slots=True)
class Checks:
    """What verify checks and how strictly: gaps (0 = off), an optional value range."""

    gap_factor: float = 3.0
    interval_us: int | None = None
    low: float | None = None
    high: float | None = None
    fail_on_gaps: bool = False

    def __post_init__(self) -> None:
        for bound in (self.gap_factor, self.low, self.high):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("--gap-factor, --min and --max must be finite numbers")
        if self.gap_factor < 0 or (self.interval_us is not None and self.interval_us <= 0):
            raise ValueError("--gap-factor must be >= 0 and --interval > 0")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"--min {self.low} is above --max {self.high}")

    def threshold_us(self, spacing_us: float | None) -> float | None:
        """The longest span allowed without a row; ``None``: no gap check (off, or no spacing)."""
        base = self.interval_us if self.interval_us is not None else spacing_us
        if self.gap_factor <= 0 or base is None or base <= 0:
            return None
        return self.gap_factor * base

    def outside_sql(self) -> str:
        """SQL counting a window's rows outside ``[low, high]`` (NULL values are never outside)."""
        tests = [f"value < {self.low!r}"] if self.low is not None else []
        tests += [f"value > {self.high!r}"] if self.high is not None else []
        return f"sum(CASE WHEN {' OR '.join(tests)} THEN 1L ELSE 0L END)" if tests else "0L"

    def range_text(self) -> str:
        """``[low, high]`` with open ends shown as -inf/inf."""
        low = "-inf" if self.low is None else f"{self.low:g}"
        return f"[{low}, {'inf' if self.high is None else f'{self.high:g}'}]"


@dataclass(frozen=True, slots=True)
class Gap:
    """No row in QuestDB between the row at ``from_us`` and the row at ``to_us``.

    At a window's edge there is no row: ``at_start`` means ``from_us`` is the window start (a
    value exactly there would have filled the gap), and ``to_us`` may be the window end.
    """

    point: str
    from_us: int
    to_us: int
    at_start: bool = False
    source_values: int | None = None
    """Values the source holds inside the gap (``None`` until it was read)."""

    @property
    def span(self) -> tuple[int, int]:
        """The empty half-open span ``[lo, hi)`` in microseconds."""
        return (self.from_us if self.at_start else self.from_us + 1, self.to_us)

    @property
    def lost(self) -> bool:
        """Whether the source has values where QuestDB has none: data lost on the way."""
        return bool(self.source_values)


@dataclass(frozen=True, slots=True)
class PointStats:
    """What QuestDB holds of one point in one window."""

    rows: int = 0
    first_us: int | None = None
    last_us: int | None = None
    spacing_us: float | None = None
    value_min: float | None = None
    value_max: float | None = None
    outside: int = 0
    gaps: tuple[Gap, ...] = ()
    """Interior gaps (between two rows), in time order."""
    gaps_truncated: bool = False


def window_gaps(
    point: str, start_us: int, end_us: int, stats: PointStats, checks: Checks
) -> list[Gap]:
    """Every gap of a point in ``[start_us, end_us)``: before its first row, between rows, after
    its last; a point without rows is one gap over the whole window."""
    if checks.gap_factor <= 0:
        return []
    if stats.rows == 0 or stats.first_us is None or stats.last_us is None:
        return [Gap(point, start_us, end_us, at_start=True)]
    threshold = checks.threshold_us(stats.spacing_us)
    if threshold is None:
        return list(stats.gaps)
    lead = (
        [Gap(point, start_us, stats.first_us, True)]
        if stats.first_us - start_us > threshold
        else []
    )
    trail = [Gap(point, stats.last_us, end_us)] if end_us - stats.last_us > threshold else []
    return [*lead, *stats.gaps, *trail]


class SourceTally:
    """One point's count from the source, fed page by page; nothing of a page is kept."""

    def __init__(self, gaps: Sequence[Gap] = ()) -> None:
        self.values = 0
        self.timestamps = 0
        self._last: int | None = None
        self._lo = np.array([g.span[0] for g in gaps], dtype=np.int64)
        self._hi = np.array([g.span[1] for g in gaps], dtype=np.int64)
        self.in_gaps = np.zeros(len(gaps), dtype=np.int64)

    def add(self, timestamps_us: Int64Array) -> None:
        """Count one page (timestamps in time order, continuing the previous page)."""
        n = len(timestamps_us)
        if not n:
            return
        self.values += n
        # distinct instants: a page may start at the instant the previous page ended on
        self.timestamps += int(np.count_nonzero(np.diff(timestamps_us))) + 1
        if self._last is not None and int(timestamps_us[0]) == self._last:
            self.timestamps -= 1
        self._last = int(timestamps_us[-1])
        if len(self._lo):
            inside = np.searchsorted(timestamps_us, self._hi) - np.searchsorted(
                timestamps_us, self._lo
            )
            self.in_gaps += inside

    def classify(self, gaps: Sequence[Gap]) -> list[Gap]:
        """The gaps this tally was built with, each with the source values found inside."""
        return [replace(g, source_values=int(n)) for g, n in zip(gaps, self.in_gaps, strict=True)]


@dataclass(frozen=True, slots=True)
class PointResult:
    """One point in one chunk: both sides' figures and what failed (nothing: verified)."""

    point: str
    chunk_index: int
    start_us: int
    end_us: int
    questdb: PointStats
    gaps: tuple[Gap, ...]
    source_values: int | None
    source_timestamps: int | None
    error: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def assess(
    stats: PointStats,
    gaps: Sequence[Gap],
    source_timestamps: int | None,
    error: str | None,
    checks: Checks,
) -> tuple[str, ...]:
    """Why a point's chunk did not verify (empty: it did)."""
    if error is not None:
        return (f"source read failed: {error}",)
    problems = []
    if source_timestamps is not None and stats.rows != source_timestamps:
        diff = stats.rows - source_timestamps
        problems.append(f"count {stats.rows:,} vs source {source_timestamps:,} ({diff:+,})")
    lost = sum(g.lost for g in gaps)
    if lost:
        problems.append(f"{lost} gap(s) with values in the source")
    if checks.fail_on_gaps and len(gaps) > lost:
        problems.append(f"{len(gaps) - lost} gap(s) the source has too")
    if stats.outside:
        problems.append(f"{stats.outside:,} value(s) outside {checks.range_text()}")
    return tuple(problems)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """Every point of one chunk."""

    chunk: Chunk
    points: tuple[PointResult, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)

    def record(
        self, connector: str, table: str, request_id: str | None, now: datetime
    ) -> dict[str, Any]:
        """The chunk's ``verified:`` state record."""
        return {
            "kind": "verified",
            "ok": self.ok,
            "requestId": request_id,
            "chunkIndex": self.chunk.index,
            "connector": connector,
            "points": list(self.chunk.points),
            "startUs": self.chunk.start_us,
            "endUs": self.chunk.end_us,
            "table": table,
            "sourceValues": sum(p.source_values or 0 for p in self.points),
            "questdbRows": sum(p.questdb.rows for p in self.points),
            "problems": {p.point: list(p.problems) for p in self.points if p.problems},
            "verifiedAt": iso(now),
        }


@dataclass
class VerifyReport:
    """Totals of a run, and the rows and gaps kept to show (bounded by :data:`MAX_LISTED`)."""

    chunks: int = 0
    chunks_ok: int = 0
    checks: int = 0
    checks_ok: int = 0
    source_values: int = 0
    questdb_rows: int = 0
    gaps: int = 0
    lost_gaps: int = 0
    rows: list[PointResult] = field(default_factory=list)
    """Every point check while there are few (:data:`SHOW_EVERY_ROW`), then the failed ones."""
    _lost: list[Gap] = field(default_factory=list)
    _other: list[Gap] = field(default_factory=list)

    def add(self, result: ChunkResult) -> None:
        """Fold one chunk in, keeping at most :data:`MAX_LISTED` rows and gaps of each kind."""
        self.chunks += 1
        self.chunks_ok += result.ok
        for point in result.points:
            self.checks += 1
            self.checks_ok += point.ok
            self.source_values += point.source_values or 0
            self.questdb_rows += point.questdb.rows
            self.gaps += len(point.gaps)
            self.lost_gaps += sum(g.lost for g in point.gaps)
            if not point.ok or self.checks <= SHOW_EVERY_ROW:
                self.rows.append(point)
            for gap in point.gaps:
                kept = self._lost if gap.lost else self._other
                if len(kept) < MAX_LISTED:
                    kept.append(gap)
        if self.checks > SHOW_EVERY_ROW:
            self.rows = [r for r in self.rows if not r.ok][:MAX_LISTED]

    @property
    def listed_gaps(self) -> list[Gap]:
        """The gaps kept to show: those with source values inside (data lost) first."""
        return [*self._lost, *self._other][:MAX_LISTED]

    @property
    def exit_code(self) -> int:
        """0 if every point of every chunk verified, else 1."""
        return 0 if self.checks_ok == self.checks else 1


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(micros: int) -> str:
    # only here, at the QuestDB boundary, do timestamps become text
    return from_micros(micros).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _deltas(table: str, points: Sequence[str], start_us: int, end_us: int) -> str:
    """The window's rows of ``points`` with ``dt``, the time since the point's previous row."""
    if not TABLE_NAME.match(table):
        raise ValueError(f"not a table name: {table!r}")
    names = ", ".join(_literal(p) for p in points)
    return (
        "SELECT source_address, value, cast(ts AS long) t, "  # noqa: S608  # names quoted, table checked
        "cast(ts AS long) - lag(cast(ts AS long)) "
        "OVER (PARTITION BY source_address ORDER BY ts) dt "
        f"FROM {table} WHERE ts >= '{_ts(start_us)}' AND ts < '{_ts(end_us)}' "
        f"AND source_address IN ({names})"
    )


def _gap_rows(deltas: str, beyond: str) -> str:
    return (
        "SELECT * FROM (SELECT 'g' kind, source_address, dt, t - dt, t, "  # noqa: S608  # ours
        f"null, null, null, null FROM ({deltas}) WHERE dt > {beyond} "
        f"ORDER BY source_address, t LIMIT {GAP_ROWS_PER_QUERY + 1})"
    )


def window_query(
    table: str, points: Sequence[str], start_us: int, end_us: int, checks: Checks
) -> str:
    """The window's ``s`` rows (per point: count, first/last, median spacing, min/max, rows out
    of range), and with a fixed ``--interval`` its ``g`` rows (interior gaps) too."""
    deltas = _deltas(table, points, start_us, end_us)
    query = (
        "SELECT 's' kind, source_address, count() n, min(t) t0, max(t) t1, "  # noqa: S608  # ours
        "approx_percentile(dt, 0.5, 3) spacing, min(value) vmin, max(value) vmax, "
        f"{checks.outside_sql()} outside FROM ({deltas}) GROUP BY source_address"
    )
    threshold = checks.threshold_us(None)
    if threshold is None:
        return query
    return f"{query} UNION ALL {_gap_rows(deltas, repr(threshold))}"


def gap_thresholds(stats: dict[str, PointStats], checks: Checks) -> dict[str, float]:
    """Each point's gap threshold from its median spacing (points with fewer than 2 rows have
    no spacing, hence no interior gap)."""
    found = {p: checks.threshold_us(s.spacing_us) for p, s in stats.items() if s.rows > 1}
    return {p: limit for p, limit in found.items() if limit is not None}


def gaps_query(table: str, thresholds: dict[str, float], start_us: int, end_us: int) -> str:
    """The window's ``g`` rows: interior gaps longer than each point's own threshold.

    A second query, because the threshold follows from the first one's median spacing: joining
    the two in one statement took QuestDB 9.3 minutes on 4M rows, this CASE takes seconds.
    """
    cases = " ".join(f"WHEN {_literal(p)} THEN {v!r}" for p, v in thresholds.items())
    deltas = _deltas(table, list(thresholds), start_us, end_us)
    return _gap_rows(deltas, f"CASE source_address {cases} END")


def parse_window(rows: Sequence[Sequence[Any]]) -> dict[str, PointStats]:
    """The stats per point from a :func:`window_query` answer (points without rows are absent)."""
    stats: dict[str, PointStats] = {}
    gaps: dict[str, list[Gap]] = {}
    gap_rows = 0
    for kind, point, n, t0, t1, spacing, vmin, vmax, outside in rows:
        if kind == "s":
            stats[point] = PointStats(int(n), int(t0), int(t1), spacing, vmin, vmax, int(outside))
        elif gap_rows < GAP_ROWS_PER_QUERY:
            gap_rows += 1
            gaps.setdefault(point, []).append(Gap(point, int(t0), int(t1)))
    truncated = len(rows) - len(stats) > GAP_ROWS_PER_QUERY
    return {
        point: replace(s, gaps=tuple(gaps.get(point, ())), gaps_truncated=truncated)
        for point, s in stats.items()
    }
