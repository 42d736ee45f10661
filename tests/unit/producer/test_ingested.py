"""How much of a request is in QuestDB, and which requests the producer's /metrics exports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from producer.api.app import ProgressCollector
from producer.sources.connectors import Connectors
from producer.state.ingested import GroupOffsets, IngestTracker, reached, share, with_ingested
from producer.state.progress import Status
from producer.worker.orchestrator import Orchestrator
from shared.settings import ProducerSettings, load_settings
from tests.unit.producer.test_producer_outcomes import request


def test_a_transaction_counts_once_the_group_committed_past_every_partition_end() -> None:
    """The end is the offset after the last data message: a commit equal to it covers it."""
    assert reached({0: 10, 3: 5}, {0: 10, 3: 7, 4: 0})
    assert not reached({0: 10, 3: 5}, {0: 9, 3: 7})
    assert not reached({0: 10}, {})  # never committed there


def test_tracker_counts_values_as_the_group_commits_them() -> None:
    """Chunks count as the commits pass them; unknown until the first read; values published
    before this process wait for the log ends read at that first read."""
    tracker = IngestTracker()
    tracker.adopt("old", 1_000)
    tracker.note("r", {0: 10}, 100)
    tracker.note("r", {0: 20, 1: 4}, 50)
    assert tracker.ingested("r") is None
    tracker.settle({0: 12}, log_ends={0: 30, 1: 5})
    assert tracker.ingested("r") == 100
    assert tracker.ingested("old") == 0
    tracker.settle({0: 20, 1: 4}, log_ends={0: 90, 1: 90})  # later ends do not move "old"'s
    assert tracker.ingested("r") == 150
    assert tracker.ingested("old") == 0
    tracker.settle({0: 30, 1: 5}, log_ends={0: 90, 1: 90})
    assert tracker.ingested("old") == 1_000
    assert tracker.ingested("unknown") == 0
    fresh = IngestTracker()
    fresh.adopt("old", 5)
    fresh.settle({0: 30}, log_ends={0: 30, 2: 0})  # an empty partition waits for nothing
    assert fresh.ingested("old") == 5


def test_in_questdb_percent_scales_progress_by_the_committed_share() -> None:
    """80 % published, three quarters of the published values committed: 60 % in QuestDB."""
    assert share(750, 1_000, 80.0) == 60.0
    assert share(None, 1_000, 80.0) is None
    assert share(0, 0, 100.0) == 100.0  # every chunk skipped: already in QuestDB
    tracker = IngestTracker()
    tracker.note("r1", {0: 1}, 10)
    tracker.settle({0: 1}, {0: 2})
    doc = with_ingested(tracker, {"requestId": "r1", "valuesPublished": 20, "progress": 50.0})
    assert doc["valuesInQuestDB"] == 10
    assert doc["inQuestDBPercent"] == 25.0


def test_metrics_export_only_active_and_recently_finished_requests() -> None:
    """request_id stays bounded: a request finished over an hour ago is no longer exported;
    a Failed one carries status="Failed" for the alert."""
    settings = load_settings(ProducerSettings)
    orchestrator = Orchestrator(settings, Connectors.from_settings(settings))
    now = datetime.now(UTC)
    for rid, status, finished in [
        ("running", Status.RUNNING, None),
        ("failed-now", Status.FAILED, now - timedelta(minutes=5)),
        ("done-long-ago", Status.COMPLETED, now - timedelta(hours=2)),
    ]:
        entry = orchestrator._entry(replace(request(), request_id=rid))
        entry.progress.status = status
        entry.progress.finished_at = finished
        orchestrator.entries[rid] = entry
    registry = CollectorRegistry()
    registry.register(ProgressCollector(orchestrator))
    text = generate_latest(registry).decode()
    assert 'request_id="running"' in text
    assert (
        'histfill_backfill_request_status{connector="Simulator",request_id="failed-now",'
        'status="Failed"} 1.0' in text
    )
    assert "done-long-ago" not in text
    assert "histfill_backfill_fenced_workers_total 0.0" in text


class _Peeker:
    def __init__(self, answers: dict[tuple[str, int], tuple[int, int] | None]) -> None:
        self.answers = answers
        self.asked: list[dict[tuple[str, int], int]] = []

    def first_visible(
        self, wanted: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], tuple[int, int] | None]:
        self.asked.append(dict(wanted))
        return {k: self.answers[k] for k in wanted if k in self.answers}


def test_a_group_idle_before_markers_and_aborted_data_has_read_it_all() -> None:
    """Where the group's offset stopped short of the log end, a peek decides: nothing
    readable before the end moves it to the end, a readable message to that message; a
    moving group is not peeked at, nor is the same question asked twice."""
    peeker = _Peeker({("t", 0): None, ("t", 1): (50, 0)})
    offsets = GroupOffsets(None, "g", "t", peeker=peeker)  # type: ignore[arg-type]  # no I/O here
    ends = {0: 48, 1: 60, 2: 0, 3: 10}
    first = offsets._effective({0: 46, 1: 40, 3: 10}, ends)
    assert first == {0: 46, 1: 40, 2: 0, 3: 10}  # first sight: no peek (maybe moving)
    assert peeker.asked == []
    second = offsets._effective({0: 46, 1: 40, 3: 10}, ends)
    assert second == {0: 48, 1: 50, 2: 0, 3: 10}
    assert peeker.asked == [{("t", 0): 46, ("t", 1): 40}]
    assert offsets._effective({0: 46, 1: 40, 3: 10}, ends) == second
    assert len(peeker.asked) == 1
