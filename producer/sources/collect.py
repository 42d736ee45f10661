"""Gather a whole read into one history per point: for checks, tests and small windows only.

A read streams page by page so that memory stays bounded; :func:`collect` undoes that on purpose
(it keeps everything), which is what a completeness check wants: every point's values side by
side with how the read said it ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field

import numpy as np

from producer.sources.base import PointComplete, PointFailure, SourceItem
from shared.batch import Float64Array, Int64Array, PointBatch, UInt8Array


@dataclass(eq=False)
class PointHistory:
    """Everything one read yielded for one point."""

    source_address: str
    batches: list[PointBatch] = field(default_factory=list)
    complete: PointComplete | None = None
    failure: PointFailure | None = None

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)

    @property
    def timestamps_us(self) -> Int64Array:
        """All timestamps, in the order yielded."""
        return np.concatenate([b.timestamps_us for b in self.batches] or [np.zeros(0, np.int64)])

    @property
    def values(self) -> Float64Array:
        """All values, in the order yielded."""
        return np.concatenate([b.values for b in self.batches] or [np.zeros(0, np.float64)])

    @property
    def quality(self) -> UInt8Array:
        """All quality flags, in the order yielded."""
        return np.concatenate([b.quality for b in self.batches] or [np.zeros(0, np.uint8)])

    @property
    def texts(self) -> list[str]:
        """All texts (``""`` where a batch had none), in the order yielded."""
        out: list[str] = []
        for batch in self.batches:
            out.extend(batch.texts if batch.texts is not None else [""] * len(batch))
        return out


async def collect(items: AsyncIterable[SourceItem]) -> dict[str, PointHistory]:
    """Drain a read into a :class:`PointHistory` per point, in order of first appearance."""
    out: dict[str, PointHistory] = {}
    async for item in items:
        history = out.setdefault(item.source_address, PointHistory(item.source_address))
        if isinstance(item, PointBatch):
            history.batches.append(item)
        elif isinstance(item, PointComplete):
            history.complete = item
        else:
            history.failure = item
    return out
