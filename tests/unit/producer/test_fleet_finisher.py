"""How the fleet's finisher ends a request once every task has an outcome (no Kafka here)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from producer.fleet.coordinator import FleetOrchestrator
from producer.sources.connectors import Connectors
from producer.state import checkpoints as cp
from producer.state.progress import Status, iso
from shared.settings import ProducerSettings, load_settings
from tests.unit.producer.test_producer_outcomes import request


def _member() -> tuple[FleetOrchestrator, list[dict[str, Any]]]:
    settings = load_settings(ProducerSettings)
    member = FleetOrchestrator(settings, Connectors.from_settings(settings))
    saved: list[dict[str, Any]] = []

    async def put(key: str, record: dict[str, Any] | None) -> None:
        assert record is not None
        saved.append(record)

    async def caught_up(timeout_s: float = 30.0) -> None:
        return None

    member._put = put  # type: ignore[method-assign]
    member.tailer.catch_up = caught_up  # type: ignore[method-assign]
    return member, saved


def _tasks(member: FleetOrchestrator, outcomes: list[str]) -> None:
    for index, outcome in enumerate(outcomes):
        task = {"kind": "task", "requestId": "r1", "chunkIndex": index, "outcome": outcome}
        member.view.apply(cp.task_key("r1", index), cp.encode(task))


def test_tasks_ended_cancelled_finish_the_request_cancelled() -> None:
    """The member that cancelled wrote ``Cancelled``; another member whose view still says
    ``Running`` sees every task ended (the later ones ``cancelled``) and must not judge the
    unread chunks as cut at the read moment (``Partial``)."""
    member, saved = _member()
    req = request(hours=2)
    record = req.to_record(Status.RUNNING)
    member.view.requests["r1"] = record
    _tasks(member, ["skipped", "cancelled"])
    asyncio.run(member._finish_request(record))
    assert [r["status"] for r in saved] == ["Cancelled"]


def test_a_request_already_final_in_the_view_is_left_as_it_is() -> None:
    """The record passed in is from before the catch-up: the view's newer final record wins."""
    member, saved = _member()
    req = request(hours=2)
    stale = req.to_record(Status.RUNNING)
    member.view.requests["r1"] = req.to_record(Status.CANCELLED)
    _tasks(member, ["skipped", "skipped"])
    asyncio.run(member._finish_request(stale))
    assert saved == []


def test_tasks_all_done_finish_the_request_completed() -> None:
    """The ordinary end: every chunk's points hold their window, the request is Completed."""
    member, saved = _member()
    req = request(hours=2)
    record = req.to_record(Status.RUNNING)
    member.view.requests["r1"] = record
    for chunk in req.plan():
        done = {
            "requestId": "r1",
            "chunkIndex": chunk.index,
            "connector": "Simulator",
            "points": list(chunk.points),
            "startUs": chunk.start_us,
            "endUs": chunk.end_us,
            "values": 10,
            "batches": 1,
        }
        member.view.apply(
            cp.done_key("Simulator", chunk.start_us, chunk.end_us, chunk.points), cp.encode(done)
        )
    _tasks(member, ["committed", "committed"])
    asyncio.run(member._finish_request(record))
    assert [r["status"] for r in saved] == ["Completed"]


def test_sync_waits_for_a_request_whose_commit_markers_lag() -> None:
    """Kafka acknowledges a commit before its markers reach the partitions: the first catch-up
    can end before the record of a request another member just accepted. ``sync`` keeps
    catching up until it is there (a cancel through another member was a 404 before)."""
    member, _ = _member()
    record = request().to_record(Status.QUEUED)
    calls = []

    async def lagging(timeout_s: float = 30.0) -> None:
        calls.append(timeout_s)
        if len(calls) == 3:  # the markers are written by the third catch-up
            member.view.requests["r1"] = record

    member.tailer.catch_up = lagging  # type: ignore[method-assign]
    asyncio.run(member.sync("r1"))
    assert member.get("r1").request.request_id == "r1"
    assert len(calls) == 3


def test_sync_gives_up_on_an_unknown_id_after_its_wait() -> None:
    """An id nobody accepted is unknown once the wait is over (the API answers 404)."""
    member, _ = _member()
    asyncio.run(member.sync("nobody", timeout_s=0.3))
    assert "nobody" not in member.view.requests


def test_a_running_request_shows_the_fleets_rate_and_eta() -> None:
    """Rate and ETA of a request the fleet runs come from every member's values and finished
    tasks since its first task, not from this member's own work (they read 0 / none before)."""
    member, _ = _member()
    now = datetime.now(UTC)
    member._now = lambda: now
    req = request(hours=4)  # four one-hour chunks
    record = req.to_record(Status.RUNNING, startedAt=iso(now - timedelta(seconds=100)))
    member.view.requests["r1"] = record
    first = req.plan().chunk(0)
    done = {
        "requestId": "r1",
        "chunkIndex": 0,
        "connector": "Simulator",
        "points": list(first.points),
        "startUs": first.start_us,
        "endUs": first.end_us,
        "values": 1_000,
        "batches": 1,
    }
    member.view.apply(
        cp.done_key("Simulator", first.start_us, first.end_us, first.points), cp.encode(done)
    )
    _tasks(member, ["committed"])
    shown = member.get("r1").to_json()
    assert shown["valuesPublished"] == 1_000
    assert 9.0 <= shown["valuesPerSecond"] <= 10.0
    assert 290 <= shown["etaSeconds"] <= 310  # 100 s per chunk, three to go
