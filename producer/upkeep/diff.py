"""What the source holds that QuestDB does not: the pure comparison behind the trailing re-pull.

QuestDB keeps one row per ``(ts, source_address)`` (its DEDUP UPSERT KEYS): a later write at the
same instant replaces the row. So the source is first reduced the same way (the last event of
each instant is what QuestDB would keep), and then, per instant:

* *added*: the source has the instant, QuestDB has no row there (late-buffered data, a value
  back-dated by an interface, a hole the live poll missed);
* *changed*: both have it, with a different value, quality or text (an operator's edit, a
  corrected meter, an annotation): values compare as numbers, with NaN equal to NaN (a digital
  system state has no number; QuestDB stores it as null and gives it back as NaN).

Rows QuestDB holds that the source no longer has are left alone (a historian deletion is rare
and not something to mirror silently); they are counted as ``only_in_questdb``.

Everything is numpy over whole columns: a point-window is a few sorts and searches, never a
Python loop per value (texts, for the few points that carry them, are compared as arrays of
objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.batch import Float64Array, Int64Array, UInt8Array

HOUR_US = 3_600_000_000
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, eq=False)
class Rows:
    """One point's rows over a window, as parallel columns (``texts`` ``None``: no texts)."""

    timestamps_us: Int64Array
    values: Float64Array
    quality: UInt8Array
    texts: tuple[str, ...] | list[str] | None = None

    def __len__(self) -> int:
        return len(self.timestamps_us)


def no_rows() -> Rows:
    """A point without rows."""
    return Rows(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.uint8), None)


@dataclass(frozen=True, slots=True, eq=False)
class PointDiff:
    """The rows to publish for one point: ``rows`` (the source's, last per instant) and, parallel
    to them, whether each is ``added`` (else changed)."""

    rows: Rows
    added: BoolArray
    only_in_questdb: int

    @property
    def added_count(self) -> int:
        return int(np.count_nonzero(self.added))

    @property
    def changed_count(self) -> int:
        return len(self.rows) - self.added_count

    def hours(self) -> list[tuple[int, int, int]]:
        """``(hour_start_us, added, changed)`` per UTC hour with a difference, in time order."""
        if len(self.rows) == 0:
            return []
        hour = self.rows.timestamps_us // HOUR_US
        keys, inverse = np.unique(hour, return_inverse=True)
        added = np.bincount(inverse, weights=self.added, minlength=len(keys)).astype(np.int64)
        total = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
        return [
            (int(k) * HOUR_US, int(a), int(t - a))
            for k, a, t in zip(keys.tolist(), added.tolist(), total.tolist(), strict=True)
        ]


def last_per_instant(rows: Rows) -> Rows:
    """The rows sorted by time with one per instant, the last of equal instants: what QuestDB
    keeps after upserting them in this order."""
    n = len(rows)
    if n == 0:
        return rows
    ts = rows.timestamps_us
    order = np.argsort(ts, kind="stable")  # equal instants keep their arrival order
    sorted_ts = ts[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = sorted_ts[1:] != sorted_ts[:-1]
    pick = order[last]
    if len(pick) == n and np.array_equal(pick, np.arange(n)):
        return rows  # already sorted and unique: the common case, no copies
    texts = None if rows.texts is None else [rows.texts[i] for i in pick.tolist()]
    return Rows(ts[pick], rows.values[pick], rows.quality[pick], texts)


def _texts(rows: Rows) -> npt.NDArray[np.object_]:
    out = np.empty(len(rows), dtype=object)
    out[:] = "" if rows.texts is None else [t or "" for t in rows.texts]
    return out


def diff_point(source: Rows, questdb: Rows) -> PointDiff:
    """The source rows QuestDB lacks or holds differently (see the module docstring).
    ``questdb`` must be time-sorted and unique per instant (the table guarantees it)."""
    src = last_per_instant(source)
    n = len(src)
    db_ts = questdb.timestamps_us
    pos = np.searchsorted(db_ts, src.timestamps_us)
    inside = pos < len(db_ts)
    found = np.zeros(n, dtype=bool)
    found[inside] = db_ts[pos[inside]] == src.timestamps_us[inside]
    at = pos[found]
    differs = np.zeros(n, dtype=bool)
    if len(at):
        a, b = src.values[found], questdb.values[at]
        value_differs = (a != b) & ~(np.isnan(a) & np.isnan(b))
        quality_differs = src.quality[found] != questdb.quality[at]
        differs[found] = value_differs | quality_differs
        if src.texts is not None or questdb.texts is not None:
            differs[found] |= _texts(src)[found] != _texts(questdb)[at]
    publish = ~found | differs
    only_in_questdb = len(db_ts) - int(np.count_nonzero(found))
    idx = np.flatnonzero(publish)
    if len(idx) == n:
        rows = src
    else:
        texts = None if src.texts is None else [src.texts[i] for i in idx.tolist()]
        rows = Rows(src.timestamps_us[idx], src.values[idx], src.quality[idx], texts)
    return PointDiff(rows, ~found[idx], only_in_questdb)
