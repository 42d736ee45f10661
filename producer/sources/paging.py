"""Continuing a time range that the historian cut short, without losing or repeating an event.

PI answers a recorded-values request with at most ``maxCount`` events and says nothing when it
stopped early: a page holding exactly ``maxCount`` events may be complete or cut. The only way on
is to ask again from the last timestamp seen. That timestamp may carry several events, some of
which did not fit, so the next request starts *at* it (inclusive) and skips the events at it that
were already delivered::

    page 1 (maxCount=5):  t1 t2 t3 T T          full: next starts at T, skipping 2
    page 2 (maxCount=5):  T T T t4 t5           drop the first 2 (seen), keep T t4 t5

These are pure functions of the page's timestamps, unit-tested on the edges without I/O. The
read window is half-open: events at or after ``end_us`` are dropped (the request's end is
inclusive, PI's ``boundaryType=Inside``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from producer.sources.errors import PagingError, ProtocolError
from shared.batch import Int64Array


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where the next request of one point starts: ``start_us`` inclusive, the first ``skip``
    events at exactly ``start_us`` already delivered."""

    start_us: int
    skip: int = 0


@dataclass(frozen=True, slots=True)
class PageStep:
    """What to keep of a page (``[keep_from, keep_to)``) and where to go next (``None``: done)."""

    keep_from: int
    keep_to: int
    next: PageCursor | None

    @property
    def kept(self) -> int:
        """How many events of the page are new and inside the window."""
        return self.keep_to - self.keep_from


def step(cursor: PageCursor, page_ts: Int64Array, requested: int, end_us: int) -> PageStep:
    """Interpret a page asked for with ``cursor`` and ``maxCount=requested``.

    Raises :class:`ProtocolError` if the page is not in time order or starts before the cursor,
    and :class:`PagingError` if a full page is one single timestamp (asking again from it could
    never get further: more than ``requested`` events share that instant).
    """
    n = len(page_ts)
    if requested < 1:
        raise ValueError(f"requested must be >= 1, got {requested}")
    if n > requested:
        raise ProtocolError(f"page holds {n} events, more than maxCount={requested}")
    if n and (int(page_ts[0]) < cursor.start_us or bool(np.any(np.diff(page_ts) < 0))):
        raise ProtocolError("page is not in ascending time order from the requested start")
    at_start = int(np.searchsorted(page_ts, cursor.start_us, side="right"))
    keep_from = min(cursor.skip, at_start)
    keep_to = max(keep_from, int(np.searchsorted(page_ts, end_us, side="left")))
    if n < requested:
        return PageStep(keep_from, keep_to, None)  # not full: nothing more up to the end
    last = int(page_ts[-1])
    if last >= end_us:
        return PageStep(keep_from, keep_to, None)  # whatever follows is outside the window
    run = n - int(np.searchsorted(page_ts, last, side="left"))
    if run == n:
        raise PagingError(
            f"{n} or more events share the timestamp {last} (epoch us); raise maxCount to "
            "page past it"
        )
    # ``last`` is after the cursor (else the run would be the whole page), so every event at
    # ``last`` that this page holds is now delivered: the next page starts at ``last`` and skips
    # that many, and gets the events at ``last`` that did not fit
    return PageStep(keep_from, keep_to, PageCursor(last, run))
