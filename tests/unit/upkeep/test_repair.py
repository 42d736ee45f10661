"""The repair's pure rules: what a finished request says about its hole, which holes are asked
again, user requests before repairs, a real hole at the simulated source, bad settings."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from producer.main import build_app
from producer.sources.base import TimeWindow
from producer.sources.connectors import Connectors
from producer.sources.simulator import SimulatorConfig, SimulatorSource, gap_micros
from producer.state.progress import Status
from producer.upkeep.gaps import Hole
from producer.upkeep.repair import (
    EMPTY,
    FAILED,
    REPAIRED,
    handled_intervals,
    new_holes,
    outcome,
    repair_key,
)
from producer.worker.orchestrator import Orchestrator, _Entry
from shared.batch import PointBatch, to_micros
from shared.errors import ConfigError
from shared.settings import ProducerSettings, load_settings
from tests.unit.producer.test_producer_outcomes import progress_of, request

S = 1_000_000
T0 = 1_767_960_000 * S


def _record(point: str, start: int, end: int, status: str) -> dict[str, object]:
    return {"connector": "Simulator", "point": point, "startUs": start, "endUs": end,
            "status": status}  # fmt: skip


def test_a_finished_request_says_repaired_empty_or_failed() -> None:
    progress = progress_of(request(points=("A",), hours=1))
    assert outcome(progress) is None  # still queued
    progress.status = Status.COMPLETED
    assert outcome(progress) == (EMPTY, 0)  # read, and the source had nothing there
    progress.values_published = 42
    assert outcome(progress) == (REPAIRED, 42)
    progress.status = Status.COMPLETED_WITH_ERRORS
    assert outcome(progress) == (FAILED, 42)
    progress.status, progress.values_published, progress.skipped_chunks = Status.COMPLETED, 0, 1
    assert outcome(progress) == ("covered", 0)  # checkpointed before: not evidence of empty


def test_a_confirmed_empty_hole_is_never_asked_again_a_failed_one_is() -> None:
    empty = Hole("A", T0, T0 + 600 * S, 60 * S)
    failed = Hole("B", T0, T0 + 600 * S, 60 * S)
    fresh = Hole("A", T0 + 3600 * S, T0 + 4200 * S, 60 * S)
    records = [
        _record("A", empty.start_us, empty.end_us, EMPTY),
        _record("B", failed.start_us, failed.end_us, FAILED),
        {**_record("A", fresh.start_us, fresh.end_us, EMPTY), "connector": "PIWebApi"},
    ]
    handled = handled_intervals(records, "Simulator")
    assert new_holes([fresh, empty, failed], handled, cap=10) == [failed, fresh]
    assert new_holes([fresh, empty, failed], handled, cap=1) == [failed]  # oldest first
    assert repair_key("Simulator", "A", 1, 2) == repair_key("Simulator", "A", 1, 2)
    assert repair_key("Simulator", "A", 1, 2) != repair_key("Simulator", "B", 1, 2)


def test_a_user_request_is_dispatched_before_a_repair_queued_earlier() -> None:
    settings = load_settings(ProducerSettings)
    orchestrator = Orchestrator(settings, Connectors.from_settings(settings))
    repair = dataclasses.replace(request(points=("A",)), request_id="rep", origin="repair")
    user = dataclasses.replace(request(points=("B",)), request_id="usr")
    for req in (repair, user):  # the repair was queued first
        progress = progress_of(req)
        progress.status = Status.RUNNING
        orchestrator.entries[req.request_id] = _Entry(progress, req.plan())
    picked = orchestrator._next_chunk()
    assert picked is not None
    assert picked[0].progress.request.request_id == "usr"
    assert repair.to_record(Status.QUEUED)["origin"] == "repair"
    assert "origin" not in user.to_record(Status.QUEUED)  # user records are as before


def test_the_simulator_has_no_values_in_a_configured_gap() -> None:
    start = datetime(2026, 1, 9, 12, tzinfo=UTC)
    gap = f"SINUSOID@{start + timedelta(minutes=10):%Y-%m-%dT%H:%M:%S}Z/" + (
        f"{start + timedelta(minutes=20):%Y-%m-%dT%H:%M:%S}Z"
    )
    source = SimulatorSource(SimulatorConfig(gaps=gap_micros(gap)))
    window = TimeWindow.from_micros(to_micros(start), to_micros(start + timedelta(hours=1)))

    async def read(point: str) -> list[int]:
        stamps: list[int] = []
        async for item in source.read([point], window):
            if isinstance(item, PointBatch):
                stamps.extend(item.timestamps_us.tolist())
        return stamps

    stamps = asyncio.run(read("SINUSOID"))
    assert len(stamps) == 50  # 60 minutes less the 10 of the gap
    lo, hi = to_micros(start + timedelta(minutes=10)), to_micros(start + timedelta(minutes=20))
    assert not [t for t in stamps if lo <= t < hi]
    assert len(asyncio.run(read("CDT158"))) == 60  # other tags keep theirs


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REPAIR_LOOKBACK", "a week"),
        ("REPAIR_LOOKBACK", "0d"),
        ("REPAIR_INTERVAL_SECONDS", "0"),
        ("REPAIR_MAX_HOLES_PER_RUN", "0"),
        ("REPAIR_HOLE_FACTOR", "1"),
        ("REPAIR_ENABLED", "maybe"),
        ("SIMULATOR_GAPS", "SINUSOID@2026-01-01T01:00:00/2026-01-01T00:00:00"),
        ("SIMULATOR_GAPS", "SINUSOID 2026-01-01"),
    ],
)
def test_a_bad_repair_setting_stops_the_service_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(ProducerSettings, {variable: value})


def test_the_repair_without_live_points_stops_the_service_naming_it() -> None:
    settings = load_settings(ProducerSettings, {"REPAIR_ENABLED": "true"})
    with pytest.raises(ConfigError, match=r"REPAIR_ENABLED.*LIVE_CONNECTOR"):
        build_app(settings)
