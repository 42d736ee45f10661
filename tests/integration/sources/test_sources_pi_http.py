"""The PI Web API client against the PI simulator over real sockets on loopback."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from producer.sources import (
    AuthError,
    BadRequest,
    PIWebApiSource,
    PointNotFound,
    PointReadError,
    SimulatorConfig,
    SimulatorSource,
    TimeWindow,
)
from producer.sources.collect import PointHistory, collect
from shared.batch import PointBatch, Quality
from simulators.data import TagCatalog
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.integration.sources.conftest import GENERATED_TAGS, Served
from tests.unit.sources.sources_fakes import RecordingSleep

pytestmark = pytest.mark.anyio
START = datetime(2024, 1, 1, tzinfo=UTC)
CATALOG = TagCatalog(60, GENERATED_TAGS)
MakePI = Callable[..., PIWebApiSource]


def window(**length: float) -> TimeWindow:
    return TimeWindow(START, START + timedelta(**length))


async def expected(tags: list[str], span: TimeWindow) -> dict[str, PointHistory]:
    """What the in-process simulator yields: the same deterministic history, no HTTP."""
    return await collect(
        SimulatorSource(SimulatorConfig(generated_tags=GENERATED_TAGS)).read(tags, span)
    )


def assert_same_history(got: PointHistory, want: PointHistory) -> None:
    assert got.complete is not None, got.failure
    assert got.complete.values == len(got) == len(want)
    assert np.array_equal(got.timestamps_us, want.timestamps_us)
    assert np.array_equal(got.values.view(np.int64), want.values.view(np.int64))  # NaN-safe
    assert np.array_equal(got.quality, want.quality)
    assert got.texts == want.texts


async def test_many_full_pages_give_exactly_the_simulator_count(
    pi: Served, pi_source: MakePI
) -> None:
    """Three days in pages of 500: each point equals the simulator's history, none lost/doubled."""
    tags = [*CATALOG.names()[:6], "SIMTAG00000", "SIMTAG00001", "SIMTAG00002"]
    span = window(days=3)
    before = pi.sim.stats.get("requests", 0)
    async with pi_source(max_count=500) as source:
        got = await collect(source.read(tags, span))
    want = await expected(tags, span)
    for tag in tags:
        assert len(got[tag]) == CATALOG.expected_count(tag, span.start, span.end)
        assert_same_history(got[tag], want[tag])
    assert pi.sim.stats["requests"] - before > 9  # it really paged


async def test_pages_cut_inside_shared_timestamps_lose_and_repeat_nothing(
    pi_source: MakePI,
) -> None:
    """maxCount=7 cuts the 1-2-3 runs of the MULTI tag at every possible place; all survive."""
    span = window(hours=6)
    async with pi_source(max_count=7) as source:
        got = await collect(source.read(["MULTI.1"], span))
    history = got["MULTI.1"]
    assert len(history) == CATALOG.expected_count("MULTI.1", span.start, span.end) == 720
    assert_same_history(history, (await expected(["MULTI.1"], span))["MULTI.1"])
    stamps, counts = np.unique(history.timestamps_us, return_counts=True)
    assert sorted(set(counts.tolist())) == [1, 2, 3]
    assert len(stamps) == 360


async def test_digital_states_and_strings_come_through_with_their_text(pi_source: MakePI) -> None:
    """Digital states keep code and name (system states flagged); string values keep text."""
    async with pi_source() as source:
        got = await collect(source.read(["BA:ACTIVE.1", "BA:BATCH.1"], window(hours=2)))
    digital = got["BA:ACTIVE.1"]
    assert set(digital.texts) == {"Inactive", "Active", "Manual", "I/O Timeout"}
    active = [i for i, t in enumerate(digital.texts) if t == "Active"]
    assert set(digital.values[active].tolist()) == {1.0}
    system = [i for i, t in enumerate(digital.texts) if t == "I/O Timeout"]
    assert np.isnan(digital.values[system]).all()
    assert {int(q) for q in digital.quality[system]} == {Quality.BAD | Quality.SYSTEM_STATE}
    assert all(t.startswith("Batch-") for t in got["BA:BATCH.1"].texts)


async def test_429_with_retry_after_is_waited_out(
    pi: Served, pi_source: MakePI, sleep: RecordingSleep
) -> None:
    """Two 429s with ``Retry-After: 1`` are waited out (1 s each) and the read completes."""
    pi.sim.faults.throttle_next = 2
    async with pi_source() as source:
        got = await collect(source.read(["SINUSOID"], window(hours=1)))
    assert len(got["SINUSOID"]) == 60
    assert sleep.waits.count(1.0) >= 2


@pytest.mark.slow
async def test_a_real_request_rate_limit_is_waited_out(pi_source: MakePI) -> None:
    """Past the server's request rate the client gets 429s, really waits, and completes."""
    sim = PISimulator(PISimulatorOptions(max_requests_per_second=10))
    with serve_in_thread(sim.app) as server:
        async with pi_source(base_url=server.url, max_count=60, real_sleep=True) as source:
            got = await collect(source.read(["SINUSOID"], window(hours=16)))
    assert len(got["SINUSOID"]) == 960
    assert sim.stats.get("status_429", 0) >= 1


async def test_a_burst_of_500s_is_retried_with_backoff(
    pi: Served, pi_source: MakePI, sleep: RecordingSleep
) -> None:
    """Three 500s in a row are retried with growing jittered waits; the read completes."""
    async with pi_source() as source:
        await source.resolve(["SINUSOID"])
        pi.sim.faults.fail_next = 3
        got = await collect(source.read(["SINUSOID"], window(hours=1)))
    assert got["SINUSOID"].complete is not None
    assert len(sleep.waits) == 3
    assert 0.5 <= sleep.waits[0] <= 1.0 < sleep.waits[2] <= 4.0


async def test_web_exception_inside_a_200_is_retried(pi: Served, pi_source: MakePI) -> None:
    """A ``WebException`` in a 200 answer is not data: the request is retried."""
    async with pi_source() as source:
        await source.resolve(["CDT158"])
        pi.sim.faults.web_exception_next = 1
        got = await collect(source.read(["CDT158"], window(hours=1)))
    assert len(got["CDT158"]) == 60


async def test_errors_inside_a_200_fail_that_point_alone(pi: Served, pi_source: MakePI) -> None:
    """A stream whose values carry ``Errors`` fails; the other streams of the request complete."""
    pi.sim.faults.error_tags = {"CDT158"}
    async with pi_source() as source:
        got = await collect(source.read(["SINUSOID", "CDT158", "SINUSOIDU"], window(hours=1)))
    failure = got["CDT158"].failure
    assert failure is not None
    assert isinstance(failure.error, PointReadError)
    assert "Archive read failed" in str(failure.error)
    assert len(got["SINUSOID"]) == len(got["SINUSOIDU"]) == 60


async def test_an_unknown_tag_fails_alone(pi_source: MakePI) -> None:
    """An unknown tag is PointNotFound (not retriable); the others complete with full counts."""
    async with pi_source() as source:
        got = await collect(source.read(["SINUSOID", "NO.SUCH.TAG", "CDT158"], window(days=1)))
    failure = got["NO.SUCH.TAG"].failure
    assert failure is not None
    assert isinstance(failure.error, PointNotFound)
    assert not failure.retriable
    assert len(got["SINUSOID"]) == len(got["CDT158"]) == 1440


async def test_max_count_above_the_server_limit_is_a_400_naming_point_and_window(
    pi: Served, pi_source: MakePI, sleep: RecordingSleep
) -> None:
    """Asking more than 150,000 values a call gets a 400: not retried, point and window named."""
    async with pi_source(max_count=200_000, max_values_per_request=200_000) as source:
        got = await collect(source.read(["SINUSOID"], window(days=1)))
    failure = got["SINUSOID"].failure
    assert failure is not None
    assert isinstance(failure.error, BadRequest)
    text = str(failure.error)
    assert "150000" in text
    assert "points=[SINUSOID]" in text
    assert "window=[2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00)" in text
    assert sleep.waits == []


async def test_credentials_are_required_and_checked(pi_source: MakePI) -> None:
    """Without credentials, or with wrong ones, the read raises a clear AuthError (401)."""
    sim = PISimulator(PISimulatorOptions(username="pi", password="right"))  # noqa: S106 - test
    with serve_in_thread(sim.app) as server:
        async with pi_source(base_url=server.url, password=SecretStr("wrong")) as source:
            with pytest.raises(AuthError, match=r"credentials refused.*status=401"):
                await collect(source.read(["SINUSOID"], window(hours=1)))
        async with pi_source(base_url=server.url, username=None, password=None) as source:
            with pytest.raises(AuthError):
                await collect(source.read(["SINUSOID"], window(hours=1)))
        async with pi_source(base_url=server.url, username="pi", password=SecretStr("right")) as ok:
            got = await collect(ok.read(["SINUSOID"], window(hours=1)))
    assert len(got["SINUSOID"]) == 60


async def drain(source: PIWebApiSource, span: TimeWindow, keep: bool) -> tuple[int, int]:
    """Values read and the peak of traced memory above the start, keeping batches or not."""
    kept: list[PointBatch] = []
    values = 0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        async for item in source.read(["SINUSOID"], span):
            if isinstance(item, PointBatch):
                values += len(item)
                if keep:
                    kept.append(item)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return values, peak


@pytest.mark.slow
async def test_memory_stays_flat_for_a_year_of_a_one_minute_tag(pi_source: MakePI) -> None:
    """A year (525,600 values) read page by page peaks about as high as a month; a reader that
    kept the year would peak at least its arrays higher (measured too: the test can fail).

    The margins are fractions of the year's own size (17 bytes a value in arrays, 8.9 MB), not
    fixed numbers: pages of 2,000 values keep the transient memory of one page (the client's
    parsing and, in this process too, the simulator's JSON) near 1.5 MB, so its jitter between
    runs stays far below the difference a kept year makes. The month is read twice, in this
    process, and the higher peak is the control.
    """
    async with pi_source(max_count=2_000) as source:
        await source.resolve(["SINUSOID"])
        controls = [await drain(source, window(days=30), keep=False) for _ in range(2)]
        year_values, year_peak = await drain(source, window(days=365), keep=False)
        _, hoard_peak = await drain(source, window(days=365), keep=True)
    assert [v for v, _ in controls] == [43_200] * 2
    assert year_values == 525_600
    month_peak = max(peak for _, peak in controls)
    year_bytes = year_values * (8 + 8 + 1)  # the least a reader holding the year must hold
    mb = 2**20
    seen = f"traced peaks: months {[round(p / mb, 1) for _, p in controls]} MB, "
    seen += f"year {year_peak / mb:.1f} MB, year kept {hoard_peak / mb:.1f} MB, "
    seen += f"the year's arrays {year_bytes / mb:.1f} MB"
    assert year_peak < month_peak + year_bytes / 4, seen
    assert hoard_peak > year_peak + year_bytes / 2, seen  # the measure sees a kept year
