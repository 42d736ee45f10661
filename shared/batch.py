"""The in-memory form of one point's slice of history: columnar, as it travels on the wire.

A batch holds parallel numpy arrays rather than one object per value, because everything
downstream (the packed Avro columns, QuestDB's dataframe path, Redis "latest" lookups) is
columnar and a per-value object would cost a Python allocation per value on the hot path.

Timestamps are integer microseconds since the Unix epoch, UTC: that is the Avro wire unit
(``timestamp-micros``). Converting to datetimes happens only at the edges that need them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]


class Quality(enum.IntFlag):
    """Per-value quality flags, one byte each; 0 means good.

    PI Web API reports ``Good``/``Questionable``/``Substituted``/``Annotated`` per value and marks
    system digital states (``"Pt Created"``, ``"Shutdown"``, ...) with ``IsSystem``; ACE IoT has no
    quality, so its values are ``GOOD``.
    """

    GOOD = 0
    BAD = 1
    QUESTIONABLE = 2
    SUBSTITUTED = 4
    ANNOTATED = 8
    SYSTEM_STATE = 16


@dataclass(frozen=True, slots=True, eq=False)
class PointBatch:
    """One point's values over a stretch of time, as parallel arrays of equal length.

    ``texts`` is ``None`` for purely numeric slices (the common case, which keeps the wire small);
    otherwise it is parallel to ``values`` with ``""`` where a value has no text (digital-state
    names, string tags).
    """

    source_address: str
    connector: str
    timestamps_us: Int64Array
    values: Float64Array
    quality: UInt8Array
    texts: tuple[str, ...] | None = None
    request_id: str | None = None
    chunk_index: int | None = None
    unit: str | None = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.timestamps_us)
        if len(self.values) != n or len(self.quality) != n:
            raise ValueError(
                f"parallel arrays differ in length for {self.source_address!r}: "
                f"timestamps={n} values={len(self.values)} quality={len(self.quality)}"
            )
        if self.texts is not None and len(self.texts) != n:
            raise ValueError(
                f"texts has {len(self.texts)} entries for {n} values ({self.source_address!r})"
            )

    def __len__(self) -> int:
        return len(self.timestamps_us)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PointBatch):
            return NotImplemented
        return (
            self.source_address == other.source_address
            and self.connector == other.connector
            and self.request_id == other.request_id
            and self.chunk_index == other.chunk_index
            and self.unit == other.unit
            and self.texts == other.texts
            and np.array_equal(self.timestamps_us, other.timestamps_us)
            # NaN is a legitimate reading (PI "No Data" digital states map to NaN): compare bitwise
            and np.array_equal(self.values.view(np.int64), other.values.view(np.int64))
            and np.array_equal(self.quality, other.quality)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable numpy contents: not hashable

    @classmethod
    def from_columns(
        cls,
        source_address: str,
        connector: str,
        timestamps_us: npt.ArrayLike,
        values: npt.ArrayLike,
        quality: npt.ArrayLike | None = None,
        texts: tuple[str, ...] | list[str] | None = None,
        **meta: object,
    ) -> PointBatch:
        """Build a batch from any array-likes, coercing dtypes once (quality defaults to good)."""
        ts = np.ascontiguousarray(timestamps_us, dtype=np.int64)
        vals = np.ascontiguousarray(values, dtype=np.float64)
        q = (
            np.zeros(len(ts), dtype=np.uint8)
            if quality is None
            else np.ascontiguousarray(quality, dtype=np.uint8)
        )
        return cls(
            source_address,
            connector,
            ts,
            vals,
            q,
            None if texts is None else tuple(texts),
            **meta,  # type: ignore[arg-type]
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """UTC-aware datetime -> integer microseconds since the epoch (naive datetimes refused)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: histfill works in timezone-aware UTC")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Integer microseconds since the epoch -> UTC-aware datetime."""
    return datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(
        microsecond=micros % 1_000_000
    )
