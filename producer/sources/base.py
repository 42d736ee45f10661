"""The source interface: points + a time window in, columnar slices and per-point outcomes out.

A :class:`Source` streams a window page by page, so memory is bounded by a page whatever the
window. One read yields, in any interleaving across points but in time order within a point:

* :class:`~shared.batch.PointBatch` -- a slice of one point's values;
* :class:`PointComplete` -- that point's window is fully read (with the number of values);
* :class:`PointFailure` -- that point could not be read; errors are data, so one bad point does
  not stop the others.

Every point of a read ends with exactly one ``PointComplete`` or one ``PointFailure``. Errors that
concern every point alike (bad credentials, a refused configuration) are raised instead.

Windows are half-open, ``[start, end)``: adjacent chunks never share a value, however many
events a historian stores at the boundary instant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from shared.batch import Float64Array, Int64Array, PointBatch, UInt8Array, from_micros, to_micros
from shared.errors import SourceError


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``[start, end)`` in timezone-aware UTC; naive datetimes are refused."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None:
                raise ValueError(f"naive datetime {moment!r}: windows are timezone-aware UTC")
        if self.end <= self.start:
            raise ValueError(f"empty window: end {self.end} is not after start {self.start}")

    @classmethod
    def from_micros(cls, start_us: int, end_us: int) -> TimeWindow:
        """A window from epoch microseconds."""
        return cls(from_micros(start_us), from_micros(end_us))

    @property
    def start_us(self) -> int:
        """Start in epoch microseconds."""
        return to_micros(self.start)

    @property
    def end_us(self) -> int:
        """End (exclusive) in epoch microseconds."""
        return to_micros(self.end)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True, slots=True)
class PointFailure:
    """A point whose window could not be read (the rest of the read goes on)."""

    source_address: str
    window: TimeWindow
    error: SourceError

    @property
    def retriable(self) -> bool:
        """Whether reading this point again later may succeed."""
        return self.error.retriable


@dataclass(frozen=True, slots=True)
class PointComplete:
    """A point whose window was read to the end; ``values`` is how many values were yielded."""

    source_address: str
    window: TimeWindow
    values: int


SourceItem = PointBatch | PointComplete | PointFailure


@runtime_checkable
class Source(Protocol):
    """A historian client (or simulator) that streams windows of history."""

    connector: str

    def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        """Stream ``points`` over ``window`` (an async generator: iterate it, or ``aclose`` it)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """A page of one point's values as parallel arrays, before it becomes a batch."""

    timestamps_us: Int64Array
    values: Float64Array
    quality: UInt8Array
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.timestamps_us)

    def slice(self, start: int, stop: int) -> Columns:
        """Rows ``[start, stop)`` (views, no copies)."""
        return Columns(
            self.timestamps_us[start:stop],
            self.values[start:stop],
            self.quality[start:stop],
            None if self.texts is None else self.texts[start:stop],
        )

    def to_batch(self, source_address: str, connector: str, unit: str | None = None) -> PointBatch:
        """The batch for these rows; ``texts`` is dropped when no row has any."""
        texts = self.texts
        has_text = texts is not None and any(texts)
        return PointBatch(
            source_address,
            connector,
            np.ascontiguousarray(self.timestamps_us),
            np.ascontiguousarray(self.values),
            np.ascontiguousarray(self.quality),
            tuple(texts) if has_text and texts is not None else None,
            unit=unit or None,
        )
