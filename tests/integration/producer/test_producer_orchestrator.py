"""The orchestrator in process on the real stack: failing points, retries, cancel and pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from producer.planning.requests import StartBody
from producer.sources.base import PointBatch, PointFailure, SourceItem, TimeWindow
from producer.sources.connectors import Connectors
from producer.sources.errors import ServerError
from producer.sources.simulator import SimulatorSource
from producer.state.progress import Status
from producer.worker.orchestrator import Orchestrator
from shared.settings import ProducerSettings
from simulators.data import expected_count
from tests.helpers import wait_for
from tests.integration.producer.conftest import (
    LoopThread,
    read_committed,
    start_orchestrator,
    values_by_point,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

START, END = datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 9, 6, tzinfo=UTC)


def body(points: list[str], **changes: str) -> StartBody:
    return StartBody.model_validate(
        {
            "connectorType": "Simulator",
            "pointAddresses": points,
            "startTime": START.isoformat(),
            "endTime": END.isoformat(),
            "chunkSize": "01:00:00",
            **changes,
        }
    )


class FlakySource(SimulatorSource):
    """The simulator, except that ``flaky`` fails mid-window its first ``failures`` reads."""

    def __init__(self, flaky: str, failures: int) -> None:
        super().__init__()
        self.flaky = flaky
        self.failures_left = failures

    async def read(self, points: Sequence[str], window: TimeWindow) -> AsyncIterator[SourceItem]:
        failing = False
        async for item in super().read(points, window):
            if item.source_address != self.flaky:
                yield item
            elif failing:
                continue  # the rest of the failed point's read is lost
            elif isinstance(item, PointBatch) and self.failures_left > 0:
                self.failures_left -= 1
                failing = True
                half = len(item) // 2  # publish half its window, then fail
                yield replace(
                    item,
                    timestamps_us=item.timestamps_us[:half],
                    values=item.values[:half],
                    quality=item.quality[:half],
                )
                yield PointFailure(self.flaky, window, ServerError("simulated 503"))
            else:
                yield item


def _run(loop: LoopThread, orchestrator: Orchestrator, request: StartBody) -> str:
    progress = loop.run(orchestrator.submit(request))
    request_id = progress.request.request_id
    wait_for(lambda: orchestrator.get(request_id).status.final, timeout=60)
    return request_id


def test_unknown_point_is_recorded_and_the_others_complete(
    loop: LoopThread, producer_settings: ProducerSettings
) -> None:
    """A point the source does not know fails alone, with its error; the others are published
    exactly once despite the aborted first attempts."""
    orchestrator = start_orchestrator(loop, producer_settings)
    try:
        request_id = _run(loop, orchestrator, body(["SINUSOID", "NO.SUCH.TAG"]))
        progress = orchestrator.get(request_id)
        assert progress.status is Status.COMPLETED_WITH_ERRORS
        assert len(progress.failed) == 6
        assert {e["point"] for e in progress.errors} == {"NO.SUCH.TAG"}
        assert "no such simulated tag" in progress.errors[0]["error"]
    finally:
        loop.run(orchestrator.stop())
    stamps = values_by_point(read_committed(producer_settings))
    assert set(stamps) == {"SINUSOID"}
    assert len(stamps["SINUSOID"]) == len(set(stamps["SINUSOID"]))
    assert len(stamps["SINUSOID"]) == expected_count("SINUSOID", START, END)

    # the failures survive a restart, and a re-run retries only the failed point
    again = start_orchestrator(loop, producer_settings)
    try:
        restored = again.get(request_id)
        assert restored.status is Status.COMPLETED_WITH_ERRORS
        assert len(restored.failed) == 6
        rerun = again.get(_run(loop, again, body(["SINUSOID", "NO.SUCH.TAG"])))
        assert rerun.values_published == 0
        assert len(rerun.failed) == 6
    finally:
        loop.run(again.stop())


def test_retriable_failure_is_retried_and_published_once(
    loop: LoopThread, producer_settings: ProducerSettings
) -> None:
    """A point failing mid-window twice is retried and completes; the read_committed reader sees
    each value once (the half-published attempts were aborted)."""
    source = FlakySource("CDT158", failures=2)
    connectors = Connectors({"Simulator": lambda: source}, {"Simulator": None})
    orchestrator = start_orchestrator(loop, producer_settings, connectors)
    try:
        request_id = _run(loop, orchestrator, body(["SINUSOID", "CDT158", "SINUSOIDU"]))
        progress = orchestrator.get(request_id)
        assert progress.status is Status.COMPLETED, progress.errors
        assert source.failures_left == 0
    finally:
        loop.run(orchestrator.stop())
    stamps = values_by_point(read_committed(producer_settings))
    for point in ("SINUSOID", "CDT158", "SINUSOIDU"):
        assert sorted(stamps[point]) == sorted(set(stamps[point]))
        assert len(stamps[point]) == expected_count(point, START, END)


def test_cancel_stops_a_request_and_pause_holds_one(
    loop: LoopThread, producer_settings: ProducerSettings
) -> None:
    """Pause holds a request and resume finishes it; cancel ends one before it completes."""
    slow = producer_settings.model_copy(update={"publish_max_values_per_second": 600.0})
    orchestrator = start_orchestrator(loop, slow)
    try:
        request = body(["SINUSOID", "CDT158"], endTime="2026-01-09T12:00:00+00:00")
        paused_id = loop.run(orchestrator.submit(request)).request.request_id
        wait_for(lambda: len(orchestrator.get(paused_id).completed) >= 2, timeout=30)
        loop.run(orchestrator.pause(paused_id))
        held = len(orchestrator.get(paused_id).completed)
        assert orchestrator.get(paused_id).status is Status.PAUSED
        assert not orchestrator.get(paused_id).status.final
        loop.run(orchestrator.resume(paused_id))
        wait_for(lambda: orchestrator.get(paused_id).status.final, timeout=60)
        assert orchestrator.get(paused_id).status is Status.COMPLETED
        assert len(orchestrator.get(paused_id).completed) == 12 > held

        later = body(["SINUSOIDU"], endTime="2026-01-09T12:00:00+00:00", chunkSize="PT1H")
        cancelled_id = loop.run(orchestrator.submit(later)).request.request_id
        wait_for(lambda: len(orchestrator.get(cancelled_id).completed) >= 1, timeout=30)
        loop.run(orchestrator.cancel(cancelled_id))
        wait_for(lambda: not orchestrator.entries[cancelled_id].in_flight, timeout=30)
        cancelled = orchestrator.get(cancelled_id)
        assert cancelled.status is Status.CANCELLED
        assert len(cancelled.completed) < 12
    finally:
        loop.run(orchestrator.stop())


def test_a_chunk_redone_after_a_crash_keeps_its_request_open_until_it_is_done(
    loop: LoopThread, producer_settings: ProducerSettings
) -> None:
    """A worker whose chunk crashed hands it back only once it is done with it: the worker
    that redoes the chunk is not counted out, and the request completes with every chunk."""
    settings = producer_settings.model_copy(update={"retry_backoff_seconds": 0.5})
    orchestrator = start_orchestrator(loop, settings)
    runner = orchestrator._runner
    real_run = runner.run
    runs: dict[int, int] = {}

    async def run(pub: Any, progress: Any, chunk: Any, pending: Any, check: Any) -> None:
        runs[chunk.index] = runs.get(chunk.index, 0) + 1
        if chunk.index == 0 and runs[0] == 1:
            # the other worker is on chunk 1: crash once it is there
            await wait_async(lambda: runs.get(1, 0) >= 1)
            raise RuntimeError("injected crash")
        if chunk.index == 1:  # finish once chunk 0 is back in the queue: this worker redoes it
            await wait_async(lambda: 0 in entry().requeued)
        if chunk.index == 0:
            # redoing chunk 0, the last one: give a wrong hand-back the time to end the request
            await wait_async(lambda: progress.status.final, timeout=3.0)
        await real_run(pub, progress, chunk, pending, check)

    runner.run = run  # type: ignore[method-assign]
    try:
        request = body(["SINUSOID"], endTime="2026-01-09T02:00:00+00:00")
        request_id = loop.run(orchestrator.submit(request)).request.request_id

        def entry() -> Any:
            return orchestrator.entries[request_id]

        wait_for(lambda: orchestrator.get(request_id).status.final, timeout=60)
        done = orchestrator.get(request_id)
        assert runs == {0: 2, 1: 1}
        assert done.status is Status.COMPLETED, done.to_json()
        assert len(done.completed) == 2
        assert done.values_published == 120
    finally:
        loop.run(orchestrator.stop())
    seen = values_by_point(read_committed(settings))["SINUSOID"]
    assert len(seen) == len(set(seen)) == 120


async def wait_async(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` on the event loop until it holds or ``timeout`` passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
