"""The in-process Simulator source: the simulators' history page by page, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from producer.sources import PointNotFound, SimulatorConfig, SimulatorSource, Source, TimeWindow
from producer.sources.collect import collect
from simulators.data import TagCatalog

pytestmark = pytest.mark.anyio
START = datetime(2024, 1, 1, tzinfo=UTC)


async def test_every_tag_yields_its_expected_count_in_bounded_pages() -> None:
    """Each tag's values equal the catalog's count; no page exceeds ``page_size``."""
    source = SimulatorSource(SimulatorConfig(page_size=500, generated_tags=2))
    window = TimeWindow(START, START + timedelta(days=2))
    catalog = TagCatalog(60, 2)
    tags = catalog.names()
    got = await collect(source.read(tags, window))
    for tag in tags:
        history = got[tag]
        assert len(history) == catalog.expected_count(tag, window.start, window.end)
        assert history.complete is not None
        assert history.complete.values == len(history)
        assert max(len(b) for b in history.batches) <= 500
        assert (np.diff(history.timestamps_us) >= 0).all()
        assert {b.connector for b in history.batches} == {"Simulator"}


async def test_shared_timestamps_survive_page_boundaries() -> None:
    """The MULTI tag's repeated timestamps are neither lost nor doubled between pages of 4."""
    window = TimeWindow(START, START + timedelta(hours=1))
    small = await collect(SimulatorSource(SimulatorConfig(page_size=4)).read(["MULTI.1"], window))
    whole = await collect(SimulatorSource().read(["MULTI.1"], window))
    assert small["MULTI.1"].timestamps_us.tolist() == whole["MULTI.1"].timestamps_us.tolist()
    assert small["MULTI.1"].values.tolist() == whole["MULTI.1"].values.tolist()


async def test_unknown_tag_fails_alone() -> None:
    """An unknown tag is a PointNotFound failure; the other points still complete."""
    window = TimeWindow(START, START + timedelta(hours=1))
    got = await collect(SimulatorSource().read(["NOPE", "\\\\any\\SINUSOID"], window))
    failure = got["NOPE"].failure
    assert failure is not None
    assert isinstance(failure.error, PointNotFound)
    assert not failure.retriable
    assert got["\\\\any\\SINUSOID"].complete is not None
    assert len(got["\\\\any\\SINUSOID"]) == 60


async def test_digital_and_string_tags_carry_text() -> None:
    """Digital state names and string values arrive as the batch texts."""
    window = TimeWindow(START, START + timedelta(hours=2))
    got = await collect(SimulatorSource().read(["BA:ACTIVE.1", "BA:BATCH.1"], window))
    assert set(got["BA:ACTIVE.1"].texts) >= {"Inactive", "Active", "Manual", "I/O Timeout"}
    assert got["BA:BATCH.1"].texts[0].startswith("Batch-")


def test_it_is_a_source() -> None:
    """The simulator satisfies the Source protocol."""
    assert isinstance(SimulatorSource(), Source)


def test_windows_refuse_naive_and_empty_ranges() -> None:
    """Naive datetimes and empty windows are refused."""
    with pytest.raises(ValueError, match="naive"):
        TimeWindow(datetime(2024, 1, 1), datetime(2024, 1, 2))  # noqa: DTZ001 - the point
    with pytest.raises(ValueError, match="empty"):
        TimeWindow(START, START)


async def test_the_source_serves_nothing_after_its_clock() -> None:
    """A window reaching past the source's *now* yields the values up to now only, and the
    same values before now as a source whose clock is later."""
    now = START + timedelta(minutes=30, seconds=10)
    window = TimeWindow(START, START + timedelta(hours=1))
    early = await collect(SimulatorSource(clock=lambda: now).read(["SINUSOID"], window))
    late = await collect(SimulatorSource().read(["SINUSOID"], window))
    assert len(early["SINUSOID"]) == 31  # 00:00 .. 00:30
    assert early["SINUSOID"].complete is not None
    assert early["SINUSOID"].timestamps_us.tolist() == late["SINUSOID"].timestamps_us[:31].tolist()
