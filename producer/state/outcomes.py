"""What happened to each point of each chunk of a request: the counts the status reports.

A chunk is a time window times a group of up to ``POINTS_PER_REQUEST`` points, and its points
fare differently: one unknown tag fails while the nine others of its group publish. Counting
only whole chunks made a request with one bad point of many read as all-failed, so every chunk
outcome is also counted per *point-chunk* (one point over one chunk's window):

* completed: this request published the point's whole window;
* skipped: the point already held the window (an earlier run or request) and nothing was read;
* failed: the point could not be read after its retries (its error is kept per point);
* partial: the window reached past the moment of the read and only the part before it was
  recorded (:func:`producer.state.checkpoints.recordable_end`); a rerun fills the rest.

A point is *completed* for the request when every one of its chunks is completed or skipped
(each point is in exactly one group, so it has one chunk per time window). Pure bookkeeping:
no I/O, unit-tested.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

MAX_FAILED_POINTS_SHOWN = 100
"""Failed points listed in a request's JSON (all are kept, for a retry)."""
MAX_ERROR_SUMMARY = 300
"""Characters of a point's error shown beside it."""


def summarize(error: str) -> str:
    """A point's error, cut to a length a status page can show."""
    text = " ".join(error.split())
    return text if len(text) <= MAX_ERROR_SUMMARY else text[: MAX_ERROR_SUMMARY - 1] + "…"


@dataclass
class PointChunkTally:
    """Per point-chunk outcome counts of one request, and its failed points with their error."""

    windows: int
    """Chunks per point: the request's number of time windows."""
    completed: int = 0
    skipped: int = 0
    failed: int = 0
    partial: int = 0
    done_per_point: Counter[str] = field(default_factory=Counter)
    failed_points: dict[str, str] = field(default_factory=dict)
    failed_chunk: dict[str, int] = field(default_factory=dict)
    """Point -> the chunk whose error :attr:`failed_points` keeps: the earliest one, so the
    error shown is the same live (chunks end in any order) and restored (in plan order)."""

    def record(
        self,
        points: Iterable[str],
        *,
        skipped: int = 0,
        failed: Mapping[str, str] | None = None,
        partial: Collection[str] = (),
        chunk: int = 0,
    ) -> None:
        """One chunk's outcome over its ``points``.

        ``failed`` points (with their error) and ``partial`` ones are counted as such; of the
        others, ``skipped`` were already present and the rest were published by this request.
        ``chunk`` is the chunk's index: a point failing in several keeps its earliest error.
        """
        failed = failed or {}
        rest = [p for p in points if p not in failed and p not in partial]
        failed_here = [p for p in points if p in failed]
        skipped = max(0, min(skipped, len(rest)))
        self.skipped += skipped
        self.completed += len(rest) - skipped
        self.failed += len(failed_here)
        self.partial += sum(1 for p in points if p in partial and p not in failed)
        self.done_per_point.update(rest)
        for point in failed_here:
            if point not in self.failed_points or chunk < self.failed_chunk[point]:
                self.failed_points[point] = summarize(failed[point])
                self.failed_chunk[point] = chunk

    @property
    def points_completed(self) -> int:
        """Points whose every chunk is completed or skipped."""
        return sum(1 for n in self.done_per_point.values() if n >= self.windows)

    def failed_points_shown(self) -> dict[str, str]:
        """The first :data:`MAX_FAILED_POINTS_SHOWN` failed points and their error."""
        by_chunk = sorted(self.failed_points.items(), key=lambda kv: self.failed_chunk[kv[0]])
        shown = by_chunk[:MAX_FAILED_POINTS_SHOWN]
        return dict(shown)
