"""The hot window: QuestDB keeps ``HOT_RETENTION`` of recent data; older day partitions go,
but only partitions whose every row is in a verified archive object.

For each day partition that ends before ``now - HOT_RETENTION``, month by month and point by
point (one point-month in memory at a time): the archive object of that point-month must
exist, pass its own checks (footer, checksum) and hold every one of that point's rows of each
of those days (same timestamps, values and quality). One point missing, one row different, one
object unreadable or the store down: the partition stays, and the report says why. The
partition's row count is read again right before the drop; if it changed (a late write
landed), it stays for the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from archive.archiver import Archiver
from archive.keys import Month
from archive.questdb_tier import QuestTier, literal, ts_literal
from shared.errors import HistfillError

log = structlog.get_logger(__name__)


@dataclass
class PruneReport:
    dropped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # partition -> why it stays


def _partitions(tier: QuestTier) -> list[tuple[str, datetime, int]]:
    rows = tier.sql.rows(
        f"SELECT name, maxTimestamp, numRows FROM table_partitions({literal(tier.table)})"  # noqa: S608
    )
    out = []
    for name, max_ts, count in rows:
        if max_ts is None:
            continue
        out.append((name, datetime.fromisoformat(max_ts.replace("Z", "+00:00")), int(count)))
    return out


def _points_in(tier: QuestTier, start: datetime, end: datetime) -> list[str]:
    query = (
        f"SELECT DISTINCT source_address FROM {tier.table} "  # noqa: S608  # our own literals
        f"WHERE ts >= {ts_literal(start)} AND ts < {ts_literal(end)}"
    )
    return [str(row[0]) for row in tier.sql.rows(query)]


def _columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    value = np.asarray(pc.fill_null(table.column("value"), np.nan).to_numpy(), dtype=np.float64)
    quality = pc.fill_null(table.column("quality"), 0).cast(pa.int64()).to_numpy()
    return ts, value, quality


def _day_mismatch(
    cold: tuple[np.ndarray, ...], hot: tuple[np.ndarray, ...], day_us: tuple[int, int]
) -> str | None:
    """None when every QuestDB row of the day is in the object with the same value and
    quality (NaN equal to NaN). The object may hold more: rows of a day dropped before and
    partly written again (late data) are in the object and not in QuestDB."""
    lo, hi = day_us
    a0, a1 = np.searchsorted(cold[0], [lo, hi])
    b0, b1 = np.searchsorted(hot[0], [lo, hi])
    cold_ts, hot_ts = cold[0][a0:a1], hot[0][b0:b1]
    at = np.searchsorted(cold_ts, hot_ts)
    inside = at < len(cold_ts)
    found = inside.copy()
    found[inside] = cold_ts[at[inside]] == hot_ts[inside]
    if not bool(found.all()):
        return f"{int((~found).sum())} of QuestDB's {len(hot_ts)} rows of this day are not archived"
    at = at + a0
    values_same = np.array_equal(cold[1][at], hot[1][b0:b1], equal_nan=True)
    if not values_same or not np.array_equal(cold[2][at], hot[2][b0:b1]):
        return "rows differ between the archive and QuestDB"
    return None


def _unarchived_days(archiver: Archiver, month: Month, days: list[datetime]) -> dict[datetime, str]:
    """Days (of one month) not wholly in verified objects, with why. One point at a time:
    its object is loaded once and its QuestDB rows of those days read once."""
    tier = archiver.tier
    lo, hi = min(days), max(days) + timedelta(days=1)
    bad: dict[datetime, str] = {}
    bounds = {d: (_us(d), _us(d + timedelta(days=1))) for d in days}
    for point in _points_in(tier, lo, hi):
        hot = _columns(tier.read(point, lo, hi))
        present = [d for d in days if _rows_in(hot[0], bounds[d]) > 0]
        try:
            found = archiver.load(point, month)
        except HistfillError as exc:  # corrupt object or store down: keep its days
            bad.update({d: f"{point}: {exc}" for d in present if d not in bad})
            continue
        if found is None:
            bad.update({d: f"{point}: {month} is not archived" for d in present if d not in bad})
            continue
        cold = _columns(found[0])
        for day in days:
            why = _day_mismatch(cold, hot, bounds[day])
            if why is not None and day not in bad:
                bad[day] = f"{point}: {why}"
    return bad


def _rows_in(ts: np.ndarray, bounds: tuple[int, int]) -> int:
    lo, hi = np.searchsorted(ts, bounds)
    return int(hi - lo)


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def prune(archiver: Archiver, retention: timedelta, now: datetime) -> PruneReport:
    """Drop the day partitions older than ``now - retention`` that are wholly archived."""
    tier = archiver.tier
    cutoff = now.astimezone(UTC) - retention
    report = PruneReport()
    by_month: dict[Month, dict[datetime, tuple[str, int]]] = {}
    for name, max_ts, count in _partitions(tier):
        try:
            start = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            report.kept[name] = "not a day partition"
            continue
        if start + timedelta(days=1) > cutoff or max_ts >= cutoff:
            continue  # inside the hot window
        by_month.setdefault(Month.of(start), {})[start] = (name, count)
    for month, days in sorted(by_month.items()):
        bad = _unarchived_days(archiver, month, sorted(days))
        counts = {n: c for n, _, c in _partitions(tier)}
        for day, (name, count) in sorted(days.items()):
            why = bad.get(day)
            if why is None and counts.get(name) != count:
                why = f"rows changed while checking ({count} -> {counts.get(name)}); next pass"
            if why is not None:
                report.kept[name] = why
                log.info("hot_partition_kept", partition=name, reason=why)
                continue
            tier.sql.exec(f"ALTER TABLE {tier.table} DROP PARTITION LIST {literal(name)}")
            report.dropped.append(name)
            log.info("hot_partition_dropped", partition=name, rows=count)
    return report
