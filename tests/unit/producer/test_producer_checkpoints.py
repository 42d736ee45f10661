"""State records and the view folded from them: coverage, tallies, failures, tombstones."""

from __future__ import annotations

from producer.planning.planner import points_digest
from producer.state import checkpoints as cp


def test_intervals_merge_when_they_touch_or_overlap() -> None:
    """Adjacent and overlapping intervals merge; disjoint ones stay apart."""
    s = cp.IntervalSet()
    s.add(10, 20)
    s.add(30, 40)
    assert s.intervals() == [(10, 20), (30, 40)]
    s.add(20, 30)
    assert s.intervals() == [(10, 40)]
    s.add(5, 12)
    s.add(50, 60)
    s.add(0, 1)
    assert s.intervals() == [(0, 1), (5, 40), (50, 60)]
    s.add(0, 100)
    assert s.intervals() == [(0, 100)]


def test_covers_only_whole_windows() -> None:
    """A window counts as covered only if one interval holds all of it."""
    s = cp.IntervalSet()
    s.add(0, 10)
    s.add(20, 30)
    assert s.covers(0, 10)
    assert s.covers(2, 8)
    assert not s.covers(5, 15)
    assert not s.covers(10, 20)
    assert not s.covers(25, 31)
    assert s.covers(7, 7)


def _done(request_id: str, index: int, points: list[str], start: int, end: int) -> bytes:
    return cp.encode(
        {
            "kind": "done",
            "requestId": request_id,
            "chunkIndex": index,
            "connector": "Simulator",
            "points": points,
            "startUs": start,
            "endUs": end,
            "values": 60,
            "batches": 2,
        }
    )


def test_view_folds_checkpoints_into_coverage_and_tallies() -> None:
    """Checkpoints mark their points done for their window and count toward their request."""
    view = cp.StateView()
    view.apply(cp.done_key("Simulator", 0, 10, ("a", "b")), _done("r1", 0, ["a", "b"], 0, 10))
    view.apply(cp.done_key("Simulator", 10, 20, ("a",)), _done("r1", 1, ["a"], 10, 20))
    assert view.pending_points("Simulator", ("a", "b"), 0, 10) == ()
    assert view.pending_points("Simulator", ("a", "b"), 10, 20) == ("b",)
    assert view.pending_points("PIWebApi", ("a",), 0, 10) == ("a",)
    assert view.is_done("Simulator", "a", 0, 20)
    assert view.tallies["r1"].chunks == {0, 1}
    assert view.tallies["r1"].values == 120


def test_view_tracks_requests_failures_and_their_tombstones() -> None:
    """Request records replace each other; a failure record is cleared by its tombstone."""
    view = cp.StateView()
    view.apply(cp.request_key("r1"), cp.encode({"status": "Queued"}))
    view.apply(cp.request_key("r1"), cp.encode({"status": "Running"}))
    assert view.requests["r1"]["status"] == "Running"
    key = cp.failed_key("r1", 3, "CDT158")
    view.apply(key, cp.encode({"error": "boom"}))
    assert view.failures["r1"] == {"3:CDT158": {"error": "boom"}}
    view.apply(key, None)
    assert view.failures["r1"] == {}
    view.apply(cp.META_WORKERS_KEY, cp.encode({"maxWorkers": 6}))
    assert view.max_workers == 6
    assert view.records == 5


def test_done_keys_are_by_content_not_by_request() -> None:
    """Two requests over the same range and points produce the same checkpoint key."""
    key = cp.done_key("Simulator", 0, 10, ("a", "b"))
    # the key has no request in it: it is a function of connector, window and points alone
    assert key == f"done:Simulator:0:10:{points_digest(('a', 'b'))}"
    assert key != cp.done_key("PIWebApi", 0, 10, ("a", "b"))
    assert key != cp.done_key("Simulator", 0, 11, ("a", "b"))
    assert cp.done_key("Simulator", 0, 10, ("a", "b")) != cp.done_key("Simulator", 0, 10, ("a",))


def test_recordable_end_is_the_read_moment_when_the_window_reaches_past_it() -> None:
    """A read records ``[start, min(end, read moment))``: the moment itself is left pending,
    a window wholly before it is whole, one wholly at or after it records nothing."""
    assert cp.recordable_end(100, 200, 150) == 150
    assert cp.recordable_end(100, 200, 199) == 199
    assert cp.recordable_end(100, 200, 200) == 200  # ends exactly at the read: whole
    assert cp.recordable_end(100, 200, 201) == 200
    assert cp.recordable_end(100, 200, 101) == 101  # one microsecond recorded: [100, 101)
    assert cp.recordable_end(100, 200, 100) == 100  # starts at the read: nothing yet
    assert cp.recordable_end(100, 200, 50) == 100


def test_reach_is_where_the_covered_run_holding_an_instant_ends() -> None:
    """``reach`` follows the covered run from an instant; uncovered instants reach nowhere."""
    s = cp.IntervalSet()
    s.add(10, 20)
    s.add(30, 40)
    assert s.reach(10) == 20
    assert s.reach(19) == 20
    assert s.reach(20) == 20  # the end is exclusive
    assert s.reach(5) == 5
    assert s.reach(25) == 25
    assert s.reach(35) == 40


def test_a_cut_chunk_resumes_at_its_cut_and_counts_no_point_until_whole() -> None:
    """A checkpoint cut at the read moment leaves the chunk pending; the next read starts at the
    cut (the earliest cut of its points), and only the whole window counts a point-chunk."""
    view = cp.StateView()
    cut = cp.encode(
        {
            "kind": "done",
            "requestId": "r1",
            "chunkIndex": 0,
            "connector": "Simulator",
            "points": ["a", "b"],
            "startUs": 0,
            "endUs": 40,
            "cut": True,
            "values": 8,
            "batches": 2,
        }
    )
    view.apply(cp.done_key("Simulator", 0, 40, ("a", "b")), cut)
    assert view.pending_points("Simulator", ("a", "b"), 0, 100) == ("a", "b")
    assert view.resume_from("Simulator", ("a", "b"), 0, 100) == 40
    assert view.resume_from("Simulator", ("a", "b", "c"), 0, 100) == 0  # c has nothing
    assert view.tallies["r1"].point_chunks == {}
    view.apply(cp.done_key("Simulator", 40, 100, ("a",)), _done("r2", 0, ["a"], 40, 100))
    assert view.pending_points("Simulator", ("a", "b"), 0, 100) == ("b",)
    assert view.resume_from("Simulator", ("b",), 0, 100) == 40
    assert view.tallies["r2"].point_chunks == {0: 1}
    assert view.tallies["r1"].values == 8
