"""Continuing a silently cut PI page: no event lost or repeated, shared timestamps included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.sources.errors import PagingError, ProtocolError
from producer.sources.paging import PageCursor, PageStep, step


def ts(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_page_shorter_than_max_count_ends_the_point() -> None:
    """A page with fewer than maxCount events is the last one, kept whole."""
    assert step(PageCursor(0), ts(0, 10, 20), requested=5, end_us=100) == PageStep(0, 3, None)


def test_full_page_continues_from_its_last_timestamp() -> None:
    """A full page continues at its last timestamp, skipping the one event already seen there."""
    result = step(PageCursor(0), ts(0, 10, 20), requested=3, end_us=100)
    assert result == PageStep(0, 3, PageCursor(20, 1))


def test_full_page_ending_in_a_run_skips_the_whole_run() -> None:
    """When several events share the last timestamp, the next page skips all of them."""
    result = step(PageCursor(0), ts(0, 10, 20, 20, 20), requested=5, end_us=100)
    assert result.next == PageCursor(20, 3)


def test_next_page_drops_the_events_already_delivered_at_its_start() -> None:
    """The page that restarts at a shared timestamp keeps only the events not delivered yet."""
    result = step(PageCursor(20, 2), ts(20, 20, 20, 30), requested=5, end_us=100)
    assert (result.keep_from, result.keep_to, result.next) == (2, 4, None)


def test_restart_page_that_is_full_again_moves_past_the_shared_timestamp() -> None:
    """A full restart page whose run at the start was skipped continues from its own last time."""
    result = step(PageCursor(20, 2), ts(20, 20, 20, 30, 40), requested=5, end_us=100)
    assert result == PageStep(2, 5, PageCursor(40, 1))


def test_skip_larger_than_the_run_found_keeps_from_the_first_new_timestamp() -> None:
    """If the historian now has fewer events at the restart time, nothing later is dropped."""
    result = step(PageCursor(20, 3), ts(20, 30), requested=5, end_us=100)
    assert (result.keep_from, result.keep_to) == (1, 2)


def test_events_at_or_after_the_window_end_are_dropped() -> None:
    """The window is half-open: an event at exactly ``end`` belongs to the next window."""
    result = step(PageCursor(0), ts(0, 50, 100, 100), requested=10, end_us=100)
    assert (result.keep_from, result.keep_to, result.next) == (0, 2, None)


def test_full_page_reaching_the_window_end_stops_paging() -> None:
    """A full page whose last event is at or past the end needs no further request."""
    result = step(PageCursor(0), ts(0, 50, 100), requested=3, end_us=100)
    assert result == PageStep(0, 2, None)


def test_full_page_of_one_timestamp_cannot_make_progress() -> None:
    """More events at one instant than a page holds is reported instead of looping forever."""
    with pytest.raises(PagingError, match="share the timestamp 20"):
        step(PageCursor(20, 1), ts(20, 20, 20), requested=3, end_us=100)


@pytest.mark.parametrize(
    ("cursor", "page"),
    [(PageCursor(0), ts(10, 5)), (PageCursor(10), ts(5, 10)), (PageCursor(0), ts(1, 2, 3, 4))],
)
def test_pages_out_of_order_or_too_long_are_protocol_errors(
    cursor: PageCursor, page: np.ndarray
) -> None:
    """Pages out of time order, before the cursor, or longer than maxCount are refused."""
    with pytest.raises(ProtocolError):
        step(cursor, page, requested=3, end_us=100)


def test_requested_must_be_positive() -> None:
    """A maxCount below 1 is a programming error."""
    with pytest.raises(ValueError, match="requested"):
        step(PageCursor(0), ts(), requested=0, end_us=100)


def serve(events: list[int], start: int, end: int, max_count: int) -> np.ndarray:
    """What PI answers: the first ``max_count`` events in ``[start, end]`` (Inside boundary)."""
    return np.array([e for e in events if start <= e <= end][:max_count], dtype=np.int64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 60), max_size=80).map(sorted),
    st.integers(1, 12),
    st.integers(0, 30),
    st.integers(1, 40),
)
def test_paging_any_history_yields_each_event_of_the_window_exactly_once(
    events: list[int], max_count: int, start: int, length: int
) -> None:
    """For any history (duplicates included) and page size, pages add up to the window exactly."""
    end = start + length
    biggest_run = max((events.count(e) for e in set(events)), default=0)
    cursor: PageCursor | None = PageCursor(start)
    got: list[int] = []
    requests = 0
    try:
        while cursor is not None:
            page = serve(events, cursor.start_us, end, max_count)
            result = step(cursor, page, max_count, end)
            got.extend(page[result.keep_from : result.keep_to].tolist())
            cursor = result.next
            requests += 1
            assert requests <= len(events) + 2, "paging did not make progress"
    except PagingError:
        assert biggest_run >= max_count  # only when a run cannot fit in one page
        return
    assert got == [e for e in events if start <= e < end]
