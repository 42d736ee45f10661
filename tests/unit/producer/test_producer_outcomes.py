"""Chunk and point-chunk outcomes, the status they lead to, and their rebuild from state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producer.api.status import RECENT_FINISHED_MAX, recent, retry_body
from producer.errors import RequestRejected
from producer.state import checkpoints as cp
from producer.state.outcomes import MAX_FAILED_POINTS_SHOWN, PointChunkTally
from producer.state.progress import BackfillRequest, RequestProgress, Status
from producer.state.restore import restore_outcomes
from shared.batch import to_micros

HOUR_US = 3_600_000_000
START = datetime(2026, 1, 9, tzinfo=UTC)


def request(
    points: tuple[str, ...] = ("A", "B", "C"), hours: int = 2, group: int = 10
) -> BackfillRequest:
    start = to_micros(START)
    return BackfillRequest(
        request_id="r1",
        connector_type="Simulator",
        points=points,
        start_us=start,
        end_us=start + hours * HOUR_US,
        chunk_size="01:00:00",
        chunk_us=HOUR_US,
        step_us=HOUR_US,
        group_size=group,
        queued_at=START,
    )


def progress_of(req: BackfillRequest) -> RequestProgress:
    return RequestProgress(req, req.plan().total_chunks, clock=lambda: 0.0)


def _error(point: str, index: int = 0, text: str = "boom") -> dict[str, object]:
    return {"chunkIndex": index, "point": point, "error": text}


def test_tally_counts_each_point_of_a_chunk() -> None:
    """Failed and partial points count as such; of the rest, ``skipped`` were present."""
    tally = PointChunkTally(windows=2)
    tally.record(["A", "B", "C", "D"], skipped=1, failed={"C": "no such tag"}, partial=["D"])
    assert (tally.completed, tally.skipped, tally.failed, tally.partial) == (1, 1, 1, 1)
    assert tally.failed_points == {"C": "no such tag"}
    assert tally.points_completed == 0  # one window of two
    tally.record(["A", "B", "C", "D"], skipped=4)
    assert tally.points_completed == 2  # A and B hold both windows; C failed, D was cut


def test_failed_points_are_listed_bounded_with_short_errors() -> None:
    """Every failed point is kept (for a retry); the JSON shows a bounded list, errors cut."""
    tally = PointChunkTally(windows=1)
    points = [f"P{i}" for i in range(MAX_FAILED_POINTS_SHOWN + 5)]
    tally.record(points, failed=dict.fromkeys(points, "x" * 1000))
    assert len(tally.failed_points) == MAX_FAILED_POINTS_SHOWN + 5
    shown = tally.failed_points_shown()
    assert len(shown) == MAX_FAILED_POINTS_SHOWN
    assert all(len(error) <= 300 for error in shown.values())


def test_a_point_failing_in_several_chunks_shows_the_earliest_chunks_error() -> None:
    """Chunks end in any order live; a restart rebuilds them in plan order: both must show the
    same error for a point (the earliest chunk's), and list points by that chunk."""
    live = PointChunkTally(windows=2)
    live.record(["A", "B"], failed={"A": "window 1", "B": "window 1"}, chunk=1)
    live.record(["A", "B"], failed={"A": "window 0"}, chunk=0)
    restored = PointChunkTally(windows=2)
    restored.record(["A", "B"], failed={"A": "window 0"}, chunk=0)
    restored.record(["A", "B"], failed={"A": "window 1", "B": "window 1"}, chunk=1)
    assert live.failed_points_shown() == restored.failed_points_shown()
    assert list(live.failed_points_shown().items()) == [("A", "window 0"), ("B", "window 1")]


def test_one_failed_point_of_many_is_completed_with_errors_not_all_failed() -> None:
    """One point failing in every chunk: every chunk failed, but the others' point-chunks are
    completed, the request ends CompletedWithErrors and lists the point with its error."""
    progress = progress_of(request())
    progress.start_run()
    for index in (0, 1):
        progress.chunk_committed(120, 2)
        progress.chunk_finished(index, ("A", "B", "C"), skipped=0, errors=[_error("B", index)])
    view = progress.to_json()
    assert (view["completedChunks"], view["failedChunks"]) == (0, 2)
    assert (view["completedPointChunks"], view["failedPointChunks"]) == (4, 2)
    assert view["skippedPointChunks"] == 0
    assert view["failedPoints"] == {"B": "boom"}
    assert view["failedPointCount"] == 1
    assert view["pointsCompleted"] == 2
    assert view["pointsProcessed"] == view["valuesProcessed"] == 240
    assert progress.final_status() is Status.COMPLETED_WITH_ERRORS


def test_every_point_failing_is_failed() -> None:
    """Nothing published, nothing present: Failed."""
    progress = progress_of(request(("A",), hours=1))
    progress.chunk_finished(0, ("A",), skipped=0, errors=[_error("A")])
    assert progress.final_status() is Status.FAILED


def test_a_cut_chunk_makes_the_request_partial_with_a_note() -> None:
    """A chunk recorded only up to its read moment is neither completed nor failed: the request
    ends Partial, says up to when, and never claims the whole window."""
    req = request(("A", "B"))
    progress = progress_of(req)
    progress.chunk_finished(0, ("A", "B"), skipped=1, errors=[])
    cut = req.start_us + HOUR_US + 600_000_000
    progress.chunk_finished(1, ("A", "B"), skipped=0, errors=[], cut_at_us=cut)
    assert progress.percent == 100.0
    status = progress.final_status()
    assert status is Status.PARTIAL
    progress.finish(status, now=lambda: START)
    view = progress.to_json()
    assert view["coveredUntil"] == "2026-01-09T01:10:00Z"
    assert view["message"] == (
        "endTime was in the future: recorded up to 2026-01-09T01:10:00Z; run it again after "
        "endTime to fill the rest"
    )
    assert (view["completedChunks"], view["partialChunks"]) == (1, 1)
    assert (view["skippedPointChunks"], view["completedPointChunks"]) == (1, 1)
    assert view["partialPointChunks"] == 2
    assert view["pointsCompleted"] == 0


def test_points_committed_before_a_requeue_count_as_completed_not_skipped() -> None:
    """A chunk redone after a crash finds its earlier commits present: they stay its own."""
    progress = progress_of(request(("A", "B"), hours=1))
    progress.earlier_commits[0] = 1
    progress.chunk_finished(0, ("A", "B"), skipped=0, errors=[])
    assert (progress.points.completed, progress.points.skipped) == (2, 0)


def _record(
    view: cp.StateView, points: list[str], start: int, end: int, *, cut: bool = False
) -> None:
    record = {
        "kind": "done",
        "requestId": "r1",
        "chunkIndex": 0 if start < to_micros(START) + HOUR_US else 1,
        "connector": "Simulator",
        "points": points,
        "startUs": start,
        "endUs": end,
        "cut": cut,
        "values": 60 * len(points),
        "batches": len(points),
    }
    view.apply(cp.done_key("Simulator", start, end, tuple(points)), cp.encode(record))


def test_restart_rebuilds_the_same_counts() -> None:
    """Checkpoints, failure records and the request record give back the counts a finished
    request reported: completed, failed and cut point-chunks, failed points, coveredUntil."""
    req = request(("A", "B", "C"))
    s = req.start_us
    view = cp.StateView()
    _record(view, ["A", "C"], s, s + HOUR_US)  # chunk 0: B failed
    view.apply(cp.failed_key("r1", 0, "B"), cp.encode({"point": "B", "error": "boom"}))
    _record(view, ["A", "B", "C"], s + HOUR_US, s + HOUR_US + 60_000_000, cut=True)
    view.requests["r1"] = req.to_record(
        Status.COMPLETED_WITH_ERRORS, coveredUntil="2026-01-09T01:01:00Z"
    )
    progress = progress_of(req)
    restore_outcomes(progress, req.plan(), view, Status.COMPLETED_WITH_ERRORS)
    json = progress.to_json()
    assert (json["completedChunks"], json["failedChunks"], json["partialChunks"]) == (0, 1, 1)
    assert (json["completedPointChunks"], json["failedPointChunks"]) == (2, 1)
    assert (json["partialPointChunks"], json["skippedPointChunks"]) == (3, 0)
    assert json["failedPoints"] == {"B": "boom"}
    assert json["coveredUntil"] == "2026-01-09T01:01:00Z"


def test_recent_requests_are_the_last_finished_within_the_hour() -> None:
    """Finished within the hour, latest first, at most RECENT_FINISHED_MAX; running ones and
    older ones are not recent."""
    now = START + timedelta(days=1)
    progresses = []
    for minutes in range(RECENT_FINISHED_MAX + 5):
        p = progress_of(request())
        p.finish(Status.COMPLETED, now=lambda m=minutes: now - timedelta(minutes=m))
        progresses.append(p)
    old = progress_of(request())
    old.finish(Status.COMPLETED, now=lambda: now - timedelta(hours=2))
    running = progress_of(request())
    running.start_run()
    got = recent([old, running, *reversed(progresses)], now)
    assert got == progresses[:RECENT_FINISHED_MAX]


def test_retry_takes_the_failed_points_over_the_original_window() -> None:
    """A retry is the same window and chunk size with only the failed points, in request
    order; nothing failed or still running is a 409."""
    progress = progress_of(request(("A", "B", "C")))
    with pytest.raises(RequestRejected) as running:
        retry_body(progress)
    assert running.value.status == 409
    progress.chunk_finished(0, ("A", "B", "C"), skipped=0, errors=[_error("C"), _error("A")])
    progress.finish(Status.COMPLETED_WITH_ERRORS)
    body = retry_body(progress)
    assert body.point_addresses == ["A", "C"]
    assert body.start_time == START
    assert body.end_time == START + timedelta(hours=2)
    assert body.chunk_size == "01:00:00"
    clean = progress_of(request())
    clean.finish(Status.COMPLETED)
    with pytest.raises(RequestRejected):
        retry_body(clean)
