"""Archiving point-months: QuestDB -> Parquet object -> read back and checked.

For each point-month (only closed months: the month must have ended):

1. the object at its key, if any, is read and checked (:func:`archive.fileformat.decode`); a
   truncated, foreign or damaged object is reported and rewritten;
2. a valid object is skipped when merging QuestDB's rows of that point-month into it changes
   nothing (same checksum); otherwise (late rows, corrected values, even on days already
   dropped from QuestDB) it is rewritten with both tiers' rows merged, QuestDB winning per
   timestamp, so rows of dropped days are kept;
3. otherwise the rows are read from QuestDB (one point-month, so memory is bounded), written,
   read back, and the read-back must check and carry the same checksum and row count.

The record of an archived point-month is the object itself: its footer (rows, first/last,
checksum) is the truth, checked on every read, so there is no manifest that could disagree
with the store. QuestDB is never written here; nothing is dropped from it (see
:mod:`archive.hot_window`) until the object holding its rows verifies. A process killed at
any moment leaves every key either absent, or holding a complete object (writes are atomic):
the next run skips the complete ones and writes the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import structlog

from archive.errors import ArchiveError, BadArchiveRequest, CorruptObjectError
from archive.fileformat import ObjectMeta, checksum, decode, encode
from archive.keys import Month, object_key
from archive.merge import merge
from archive.progress import Progress
from archive.questdb_tier import QuestTier
from archive.store import ObjectStore
from shared.errors import HistfillError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What archiving one point-month did: written, rewritten, skipped or empty."""

    kind: str
    rows: int = 0
    size: int = 0
    note: str | None = None


def closed_months(months: Iterable[Month], now: datetime) -> list[Month]:
    """The months given, refusing one that has not ended yet (its data is still arriving)."""
    chosen = list(months)
    for month in chosen:
        if month.end > now:
            raise BadArchiveRequest(
                "endMonth", f"{month} has not ended yet (now {now:%Y-%m-%d}): only closed months"
            )
    return chosen


class Archiver:
    """Archives point-months from one QuestDB table into one store."""

    def __init__(self, store: ObjectStore, tier: QuestTier, prefix: str = "") -> None:
        self.store = store
        self.tier = tier
        self.prefix = prefix

    def key(self, point: str, month: Month) -> str:
        return object_key(point, month, self.prefix)

    def load(self, point: str, month: Month) -> tuple[pa.Table, ObjectMeta] | None:
        """The checked object of a point-month, None if absent; CorruptObjectError if bad."""
        key = self.key(point, month)
        data = self.store.get(key)
        if data is None:
            return None
        return decode(data, key, point, month)

    def archive_one(self, point: str, month: Month) -> Outcome:
        key = self.key(point, month)
        existing: tuple[pa.Table, ObjectMeta] | None = None
        note = None
        try:
            existing = self.load(point, month)
        except CorruptObjectError as exc:
            note = f"{month}: {exc} (rewritten)"
            log.warning("archive_object_corrupt", key=key, error=str(exc))
        table = self.tier.read(point, month.start, month.end)
        if existing is not None:
            # skip only when merging QuestDB's rows into the object changes nothing: every
            # QuestDB row (late, corrected, or on a day already dropped) is in it as it is
            merged = merge(existing[0], table)
            if merged.num_rows == existing[1].rows and checksum(merged) == existing[1].sha256:
                return Outcome("skipped")
            note = f"{month}: {key} lacked or differed from QuestDB rows: merged and rewritten"
            table = merged
        elif table.num_rows == 0:
            if note is not None:  # never replace even a damaged object with nothing
                note = note.replace("(rewritten)", "(QuestDB holds none of its rows: left as is)")
            return Outcome("empty", note=note)
        data, meta = encode(table, point, month)
        self.store.put(key, data)
        back = self.store.get(key)
        if back is None:
            raise ArchiveError(f"{key}: written but not found on read-back")
        _, checked = decode(back, key, point, month)
        if checked.sha256 != meta.sha256 or checked.rows != meta.rows:
            raise ArchiveError(f"{key}: read-back differs from what was written")
        kind = "written" if existing is None and note is None else "rewritten"
        log.debug("archive_object_written", key=key, rows=meta.rows, bytes=len(data))
        return Outcome(kind, meta.rows, len(data), note)

    def run(
        self,
        points: Iterable[str],
        months: Iterable[Month],
        progress: Progress,
        workers: int = 4,
        cancel: threading.Event | None = None,
        on_step: Callable[[Progress], None] | None = None,
    ) -> Progress:
        """Archive every point-month (month by month, points within a month concurrently)."""
        cancel = cancel or threading.Event()
        progress.start()
        todo = ((p, m) for m in months for p in points)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive") as pool:
            for point, month, outcome in _bounded(pool, todo, self._safe, workers * 2, cancel):
                if isinstance(outcome, str):
                    progress.error(f"{month}: {point}: {outcome}")
                else:
                    progress.add(outcome.kind, outcome.rows, outcome.size)
                    if outcome.note:
                        progress.note(f"{point} {outcome.note}")
                if on_step is not None:
                    on_step(progress)
        progress.finish("Cancelled" if cancel.is_set() else "Completed")
        return progress

    def _safe(self, point: str, month: Month) -> Outcome | str:
        """One point-month; an error becomes its message (the run goes on with the others)."""
        try:
            return self.archive_one(point, month)
        except HistfillError as exc:
            log.warning("archive_point_month_failed", point=point, month=str(month), error=str(exc))
            return str(exc)


def _bounded(
    pool: ThreadPoolExecutor,
    items: Iterator[tuple[str, Month]],
    work: Callable[[str, Month], Outcome | str],
    in_flight: int,
    cancel: threading.Event,
) -> Iterator[tuple[str, Month, Outcome | str]]:
    """Run ``work`` over ``items`` with at most ``in_flight`` pending, yielding as each ends."""
    pending: dict[Future[Outcome | str], tuple[str, Month]] = {}
    exhausted = False
    while pending or not exhausted:
        while not exhausted and not cancel.is_set() and len(pending) < in_flight:
            nxt = next(items, None)
            if nxt is None:
                exhausted = True
                break
            pending[pool.submit(work, *nxt)] = nxt
        if cancel.is_set():
            exhausted = True
        if not pending:
            break
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            point, month = pending.pop(future)
            yield point, month, future.result()


def utc_now() -> datetime:
    return datetime.now(UTC)
