"""The built-in source of ``make run``: the simulators' deterministic history, in process.

It yields exactly what :class:`~producer.sources.pi_web_api.PIWebApiSource` reads from the PI
simulator (same values, quality and texts; connector ``"Simulator"``), without HTTP, so a demo
needs no historian and no server. Addresses may be bare tags, ``\\\\server\\tag`` paths or ACE
``client/site/tag`` names: the last segment names the tag. Like a historian it has no values
after now: windows are cut at its injectable clock (:meth:`simulators.data.TagCatalog.until`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from producer.sources import paging
from producer.sources.base import Columns, PointComplete, PointFailure, SourceItem, TimeWindow
from producer.sources.errors import PointNotFound
from shared.batch import to_micros
from shared.settings import parse_gaps
from simulators.data import Clock, TagCatalog, events


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The simulated tags (as ``histfill simulate`` options) and the page size."""

    interval_s: float = 60.0
    generated_tags: int = 0
    page_size: int = 100_000
    gaps: tuple[tuple[str, int, int], ...] = ()
    """``(tag, start_us, end_us)``: windows the tag has no values in (``SIMULATOR_GAPS``), a
    hole at the source as a historian down for a while has."""


def gap_micros(text: str) -> tuple[tuple[str, int, int], ...]:
    """``SIMULATOR_GAPS`` as ``(tag, start_us, end_us)`` triples."""
    return tuple(
        (tag, to_micros(start), to_micros(end))
        for tag, windows in parse_gaps(text).items()
        for start, end in windows
    )


def tag_of(address: str) -> str:
    """The tag an address names: its last ``\\`` or ``/`` segment."""
    return address.rsplit("\\", 1)[-1].rsplit("/", 1)[-1]


class SimulatorSource:
    """Generates history page by page (a :class:`~producer.sources.base.Source`)."""

    connector = "Simulator"

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        if self.config.page_size < 1:
            raise ValueError("page_size must be positive")
        self.catalog = TagCatalog(self.config.interval_s, self.config.generated_tags, clock)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        """Stream each point's window in pages of ``page_size`` values."""
        for address in dict.fromkeys(points):
            spec = self.catalog.get(tag_of(address))
            if spec is None:
                error = PointNotFound("no such simulated tag", points=[address], window=window)
                yield PointFailure(address, window, error)
                continue
            cursor: paging.PageCursor | None = paging.PageCursor(window.start_us)
            total = 0
            while cursor is not None:
                end_us = self.catalog.until(window.end_us)  # each page sees only what exists now
                page = events(spec, cursor.start_us, end_us, self.config.page_size + cursor.skip)
                step = paging.step(
                    cursor, page.timestamps_us, self.config.page_size + cursor.skip, end_us
                )
                if step.kept:
                    columns = Columns(page.timestamps_us, page.values, page.quality, page.texts)
                    page_rows = columns.slice(step.keep_from, step.keep_to)
                    kept = self._outside_gaps(spec.name, page_rows)
                    total += len(kept)
                    if len(kept):
                        yield kept.to_batch(address, self.connector, spec.units)
                cursor = step.next
                await asyncio.sleep(0)  # let other tasks run between pages
            yield PointComplete(address, window, total)

    def _outside_gaps(self, tag: str, columns: Columns) -> Columns:
        """The rows not inside one of the tag's configured gaps."""
        keep: Any = None
        for gap_tag, start_us, end_us in self.config.gaps:
            if gap_tag == tag:
                ts = columns.timestamps_us
                inside = (ts >= start_us) & (ts < end_us)
                keep = ~inside if keep is None else keep & ~inside
        if keep is None or keep.all():
            return columns
        texts = columns.texts
        return Columns(
            columns.timestamps_us[keep],
            columns.values[keep],
            columns.quality[keep],
            None if texts is None else [t for t, k in zip(texts, keep, strict=True) if k],
        )
