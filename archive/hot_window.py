"""The hot window: QuestDB keeps ``HOT_RETENTION`` of recent data; older day partitions go,
but only partitions whose every row is in a verified archive object.

For each day partition that ends before ``now - HOT_RETENTION``: its rows are read (one day, all
points), and for every point in it the archive object of that month must exist, pass its own
checks (footer, checksum) and hold exactly that point's rows of that day (same timestamps,
values and quality). One point missing, one row different, one object unreadable or the store
down: the partition stays, and the report says why. The partition's row count is read again
right before the drop; if it changed (a late write landed), it stays for the next pass.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from archive.archiver import Archiver
from archive.errors import ArchiveError
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


def _day_rows(tier: QuestTier, start: datetime, end: datetime) -> pa.Table:
    query = (
        "SELECT source_address, ts, value, quality FROM "  # noqa: S608  # our own literals
        f"{tier.table} WHERE ts >= {ts_literal(start)} AND ts < {ts_literal(end)}"
    )
    response = tier.export(query)
    if response.status_code != 200:
        raise ArchiveError(f"QuestDB refused the export of {start:%Y-%m-%d}: {response.text[:200]}")
    return pq.ParquetFile(io.BytesIO(response.content)).read(use_threads=False)


def _same(cold: pa.Table, hot: pa.Table) -> bool:
    """The same timestamps, values and quality (NaN equal to NaN), in time order."""
    if cold.num_rows != hot.num_rows:
        return False
    hot = hot.sort_by("ts")
    for name in ("ts", "quality"):
        a = cold.column(name).cast(pa.int64()).to_numpy()
        b = hot.column(name).cast(pa.int64()).to_numpy()
        if not np.array_equal(a, b):
            return False
    av = pc.fill_null(cold.column("value"), np.nan).to_numpy()
    bv = pc.fill_null(hot.column("value"), np.nan).to_numpy()
    return bool(np.array_equal(av, bv, equal_nan=True))


def _why_not_archived(archiver: Archiver, day: pa.Table, start: datetime) -> str | None:
    """None when every row of the day is in a verified object; else the first reason."""
    end = start + timedelta(days=1)
    month = Month.of(start)
    for point in pc.unique(day.column("source_address").cast(pa.string())).to_pylist():
        rows = day.filter(pc.equal(day.column("source_address").cast(pa.string()), point))
        try:
            found = archiver.load(point, month)
        except HistfillError as exc:  # corrupt object or store down: keep the partition
            return f"{point}: {exc}"
        if found is None:
            return f"{point}: {month} is not archived"
        ts = found[0].column("ts")
        cold = found[0].filter(
            pc.and_(
                pc.greater_equal(ts, pa.scalar(start, ts.type)),
                pc.less(ts, pa.scalar(end, ts.type)),
            )
        )
        hot = pa.table(
            {
                "ts": rows.column("ts").cast(pa.timestamp("us", tz="UTC")),
                "value": rows.column("value").cast(pa.float64()),
                "quality": rows.column("quality").cast(pa.int8()),
            }
        )
        if not _same(cold, hot):
            return (
                f"{point}: the archive holds {cold.num_rows} rows of this day, "
                f"QuestDB {hot.num_rows}"
            )
    return None


def prune(archiver: Archiver, retention: timedelta, now: datetime) -> PruneReport:
    """Drop the day partitions older than ``now - retention`` that are wholly archived."""
    tier = archiver.tier
    cutoff = now.astimezone(UTC) - retention
    report = PruneReport()
    for name, max_ts, count in _partitions(tier):
        try:
            start = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            report.kept[name] = "not a day partition"
            continue
        if start + timedelta(days=1) > cutoff or max_ts >= cutoff:
            continue  # inside the hot window
        why = _why_not_archived(archiver, _day_rows(tier, start, start + timedelta(days=1)), start)
        if why is None:
            now_count = {n: c for n, _, c in _partitions(tier)}.get(name)
            if now_count != count:
                why = f"rows changed while checking ({count} -> {now_count}); next pass"
        if why is not None:
            report.kept[name] = why
            log.info("hot_partition_kept", partition=name, reason=why)
            continue
        tier.sql.exec(f"ALTER TABLE {tier.table} DROP PARTITION LIST {literal(name)}")
        report.dropped.append(name)
        log.info("hot_partition_dropped", partition=name, rows=count)
    return report
