"""``histfill verify --archive``: data-quality checks of the archive, per point-month.

For each point-month: the object must exist when QuestDB has rows of it, and pass its own
checks (footer, checksum); per day, the object must hold at least QuestDB's rows (days QuestDB
no longer holds, dropped by the hot window, are not compared; a day holding fewer in QuestDB
than in the object, dropped and partly written again, is listed without failing); gaps (spans
without a row longer than ``gap_factor`` x the median spacing) are listed; values outside
``[low, high]`` are counted. Count mismatches, missing or corrupt objects and out-of-range
values fail the check; gaps fail it only with ``fail_on_gaps`` (the source may have them too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from archive.archiver import Archiver
from archive.keys import Month
from shared.errors import HistfillError

DAY_US = 86_400_000_000


@dataclass
class MonthCheck:
    point: str
    month: Month
    object_rows: int | None
    questdb_rows: int
    problems: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_point_month(
    archiver: Archiver,
    point: str,
    month: Month,
    gap_factor: float = 3.0,
    low: float | None = None,
    high: float | None = None,
) -> MonthCheck:
    days = archiver.tier.day_counts(point, month.start, month.end)
    result = MonthCheck(point, month, None, sum(days.values()))
    try:
        found = archiver.load(point, month)
    except HistfillError as exc:
        result.problems.append(str(exc))
        return result
    if found is None:
        if result.questdb_rows:
            result.problems.append(f"not archived ({result.questdb_rows} rows in QuestDB)")
        return result
    table, meta = found
    result.object_rows = meta.rows
    ts = table.column("ts").cast("int64").to_numpy()
    per_day = dict(zip(*np.unique(ts // DAY_US, return_counts=True), strict=True))
    for day, count in sorted(days.items()):
        held = int(per_day.get(day, 0))
        date = np.datetime64(day * DAY_US, "us").astype("datetime64[D]")
        if held < count:
            result.problems.append(f"{date}: object {held} rows, QuestDB {count}")
        elif held > count:  # the day was dropped by the hot window and partly written again
            result.gaps.append(f"{date}: object {held} rows, QuestDB only {count}")
    if gap_factor > 0 and len(ts) > 2:
        steps = np.diff(ts)
        limit = float(np.median(steps)) * gap_factor
        for i in np.nonzero(steps > limit)[0][:20]:
            a = np.datetime64(int(ts[i]), "us")
            b = np.datetime64(int(ts[i + 1]), "us")
            result.gaps.append(f"gap {a}Z .. {b}Z")
    values = table.column("value")
    for bound, outside in ((low, pc.less), (high, pc.greater)):
        if bound is not None:
            n = int(pc.sum(outside(values, bound)).as_py() or 0)
            if n:
                result.problems.append(f"{n} values beyond {bound}")
    return result


def verify_archive(
    archiver: Archiver,
    points: Iterable[str],
    months: Iterable[Month],
    gap_factor: float = 3.0,
    low: float | None = None,
    high: float | None = None,
    fail_on_gaps: bool = False,
) -> tuple[bool, list[MonthCheck]]:
    checks = [
        check_point_month(archiver, p, m, gap_factor, low, high) for m in months for p in points
    ]
    ok = all(c.ok and (not fail_on_gaps or not c.gaps) for c in checks)
    return ok, checks
