"""Hole detection: where QuestDB lacks values a point's own cadence says it should have.

A point's cadence is the median interval between its consecutive values in the window (QuestDB
computes it: ``lag(ts)`` over the point's rows, ``approx_percentile`` of the differences), so
a 1-second tag and a 15-minute meter are each judged by their own rhythm and a few holes do not
move it. A *hole* is a gap between two consecutive values longer than ``factor`` cadences: the
window strictly between them holds no value (``present`` is 0 by construction) where about
``gap / cadence - 1`` were expected. Only gaps *between* values are holes: the stretch before a
point's first value in the window and after its last one are not (live mode may just be a poll
behind), so a hole is always bounded by data on both sides and its bounds do not move between
runs.

Both queries run in QuestDB over the window (two scans of the point's rows there), and only the
gaps come back; nothing pulls the rows themselves. The pure functions below say the same for a
list of timestamps (tests, and the rules in one place).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.batch import from_micros, to_micros
from shared.qdb import QuestDBSQL

MIN_INTERVALS = 3
"""A point needs this many intervals in the window before its cadence is trusted."""
HOUR_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class Hole:
    """No value of ``point`` strictly between ``after_us`` and ``before_us`` (both present)."""

    point: str
    after_us: int
    before_us: int
    cadence_us: int

    @property
    def start_us(self) -> int:
        """First instant of the hole's window (the backfill's inclusive start)."""
        return self.after_us + 1

    @property
    def end_us(self) -> int:
        """End of the hole's window, exclusive: the next present value."""
        return self.before_us

    @property
    def expected(self) -> int:
        """Values the cadence expects strictly inside the hole."""
        return max(0, round((self.before_us - self.after_us) / self.cadence_us) - 1)

    @property
    def present(self) -> int:
        """Values QuestDB holds inside the hole: none (it is a gap between two of them)."""
        return 0

    def to_json(self) -> dict[str, Any]:
        """The hole as the CLI's ``--json`` and the repair records spell it."""
        return {
            "point": self.point,
            "from": iso_us(self.start_us),
            "to": iso_us(self.end_us),
            "cadenceSeconds": self.cadence_us / 1e6,
            "expected": self.expected,
            "present": self.present,
        }


def iso_us(us: int) -> str:
    """``2026-01-09T12:00:00.000001Z``."""
    return from_micros(us).isoformat().replace("+00:00", "Z")


def median_interval(timestamps_us: Sequence[int]) -> int | None:
    """The median interval between consecutive distinct timestamps (sorted here), or ``None``
    with fewer than :data:`MIN_INTERVALS` intervals."""
    ordered = sorted(set(timestamps_us))
    intervals = [b - a for a, b in itertools.pairwise(ordered)]
    if len(intervals) < MIN_INTERVALS:
        return None
    return round(statistics.median(intervals))


def is_hole(gap_us: int, cadence_us: int, factor: float) -> bool:
    """Whether a gap between two consecutive values is a hole at this cadence."""
    return cadence_us > 0 and gap_us > factor * cadence_us


def find_holes(
    point: str, timestamps_us: Sequence[int], factor: float, cadence_us: int | None = None
) -> list[Hole]:
    """The holes in one point's timestamps, by its own median cadence unless one is given."""
    cadence = cadence_us if cadence_us is not None else median_interval(timestamps_us)
    if cadence is None or cadence <= 0:
        return []
    ordered = sorted(set(timestamps_us))
    return [
        Hole(point, a, b, cadence)
        for a, b in itertools.pairwise(ordered)
        if is_hole(b - a, cadence, factor)
    ]


def holes_from_gaps(
    gaps: Iterable[tuple[str, int, int]], cadences: dict[str, int], factor: float
) -> list[Hole]:
    """Holes among ``(point, after_us, before_us)`` gaps, each judged by its point's cadence;
    sorted by point and time."""
    holes = [
        Hole(point, after, before, cadences[point])
        for point, after, before in gaps
        if point in cadences and is_hole(before - after, cadences[point], factor)
    ]
    return sorted(holes, key=lambda h: (h.point, h.after_us))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _where(since_us: int, until_us: int, points: Sequence[str] | None) -> str:
    clause = f"ts >= {_literal(iso_us(since_us))} AND ts < {_literal(iso_us(until_us))}"
    if points:
        clause += f" AND source_address IN ({', '.join(_literal(p) for p in points)})"
    return clause


_LAG = "lag(ts) OVER (PARTITION BY source_address ORDER BY ts)"


def cadence_query(table: str, since_us: int, until_us: int, points: Sequence[str] | None) -> str:
    """Per point: the median interval (µs, approximate to 0.1 %) and how many intervals."""
    return (
        "SELECT source_address, approx_percentile(d, 0.5, 3), count() FROM ("  # noqa: S608
        f"SELECT source_address, datediff('u', {_LAG}, ts)::double d FROM {table} "
        f"WHERE {_where(since_us, until_us, points)}) WHERE d > 0"
    )


def gaps_query(
    table: str, since_us: int, until_us: int, points: Sequence[str] | None, min_gap_us: int
) -> str:
    """Every gap between consecutive values longer than ``min_gap_us``."""
    return (
        "SELECT source_address, prev, ts FROM ("  # noqa: S608  # names quoted by _literal
        f"SELECT source_address, ts, {_LAG} prev FROM {table} "
        f"WHERE {_where(since_us, until_us, points)}) "
        f"WHERE prev IS NOT NULL AND datediff('u', prev, ts) > {min_gap_us}"
    )


def hourly_query(table: str, point: str, start_us: int, end_us: int) -> str:
    """A point's values per UTC hour in ``[start_us, end_us)``."""
    return (
        f"SELECT ts, count() FROM {table} "  # noqa: S608  # names quoted by _literal
        f"WHERE {_where(start_us, end_us, [point])} SAMPLE BY 1h ALIGN TO CALENDAR"
    )


def _us(value: Any) -> int:
    return to_micros(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


class HoleFinder:
    """The holes of a table's points over a window, found by two queries in QuestDB."""

    def __init__(self, sql: QuestDBSQL, table: str, factor: float) -> None:
        self.sql = sql
        self.table = table
        self.factor = factor

    def cadences(
        self, since_us: int, until_us: int, points: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Each point's median interval in the window (points with too few values left out)."""
        rows = self.sql.rows(cadence_query(self.table, since_us, until_us, points))
        return {
            str(point): round(median)
            for point, median, count in rows
            if median is not None and int(count) >= MIN_INTERVALS and median > 0
        }

    def find(
        self, since_us: int, until_us: int, points: Sequence[str] | None = None
    ) -> tuple[list[Hole], dict[str, int]]:
        """The holes in ``[since_us, until_us)`` and the cadence each point was judged by."""
        cadences = self.cadences(since_us, until_us, points)
        if not cadences:
            return [], cadences
        shortest = int(self.factor * min(cadences.values()))
        rows = self.sql.rows(gaps_query(self.table, since_us, until_us, points, shortest))
        gaps = ((str(p), _us(prev), _us(ts)) for p, prev, ts in rows)
        return holes_from_gaps(gaps, cadences, self.factor), cadences

    def hourly(self, point: str, start_us: int, end_us: int) -> dict[int, int]:
        """``point``'s values per UTC hour (µs of the hour's start) in ``[start_us, end_us)``."""
        rows = self.sql.rows(hourly_query(self.table, point, start_us, end_us))
        return {_us(ts) // HOUR_US * HOUR_US: int(n) for ts, n in rows if int(n) > 0}
