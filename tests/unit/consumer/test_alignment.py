"""Time-aligned backfill: which partitions wait, and that some partition can always read."""

from __future__ import annotations

from consumer.alignment import TimeAligner

DAY = 86_400_000_000
A, B, C = ("bf", 0), ("bf", 1), ("bf", 2)


def _aligner() -> TimeAligner:
    return TimeAligner(window_us=DAY, idle_s=2.0)


def test_a_partition_more_than_a_window_ahead_is_paused() -> None:
    """A partition whose newest value is over a window ahead of the slowest waits."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    aligner.observe(C, 11 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == {B}


def test_a_partition_exactly_a_window_ahead_keeps_reading() -> None:
    """The window is inclusive: one window ahead is still aligned (off-by-one edge)."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 11 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == frozenset()
    aligner.observe(B, 11 * DAY + 1, now=0.2)
    assert aligner.to_pause(now=0.3) == {B}


def test_the_paused_partition_resumes_once_the_slowest_catches_up() -> None:
    """When the slowest comes within a window, the partition ahead reads again."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == {B}
    aligner.observe(A, 29 * DAY, now=0.5)
    assert aligner.to_pause(now=0.6) == frozenset()


def test_a_drained_partition_holds_no_one_back() -> None:
    """Partition EOF on the slowest: the others read on (no deadlock on an empty partition)."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == {B}
    aligner.reached_end(A)
    assert aligner.to_pause(now=0.2) == frozenset()
    aligner.observe(A, 12 * DAY, now=0.3)  # new data after all: it leads again
    assert aligner.to_pause(now=0.4) == {B}


def test_a_silent_partition_stops_holding_back_after_idle_s() -> None:
    """A partition that delivers nothing while not paused (an open transaction ahead of it,
    say) counts as idle after idle_s, and the partitions it held back resume."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    assert aligner.to_pause(now=1.0) == {B}
    assert aligner.to_pause(now=2.0) == {B}
    assert aligner.to_pause(now=2.5) == frozenset()


def test_a_paused_partition_is_never_judged_idle() -> None:
    """Not asked for data, a paused partition stays in the reckoning however long it waits."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    aligner.observe(C, 40 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == {B, C}
    aligner.observe(A, 29 * DAY, now=9.0)  # A kept delivering, slowly
    # B resumes (within a window of A); C, 11 days ahead of A, still waits: it is not idle
    assert aligner.to_pause(now=9.1) == {C}


def test_the_slowest_is_never_paused() -> None:
    """Whatever the positions, the slowest partition that can deliver always reads."""
    aligner = _aligner()
    for k, day in enumerate([50, 7, 400, 90, 8]):
        aligner.observe(("bf", k), day * DAY, now=0.0)
    paused = aligner.to_pause(now=0.1)
    assert ("bf", 1) not in paused
    assert paused == {("bf", 0), ("bf", 2), ("bf", 3)}


def test_held_partitions_count_as_paused_not_idle() -> None:
    """Partitions the loop holds (real-time first) are not idle: after the hold, the one
    behind still leads and the one ahead still waits."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    held = frozenset({A, B})
    for now in (1.0, 5.0, 20.0):
        aligner.to_pause(now=now, held=held)
    assert aligner.to_pause(now=20.5) == {B}


def test_admit_refuses_a_message_running_ahead_and_keeps_its_partition_paused() -> None:
    """A message taking its partition over a window ahead is refused; the partition counts as
    paused at that message's time until the others come within a window of it."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    assert aligner.admit(B, 10 * DAY, now=0.0)
    assert not aligner.admit(B, 20 * DAY, now=0.1)
    assert aligner.to_pause(now=0.2) == {B}
    assert aligner.admit(A, 19 * DAY, now=0.3)
    assert aligner.to_pause(now=0.4) == frozenset()
    assert aligner.admit(B, 20 * DAY, now=0.5)


def test_admit_takes_anything_when_no_other_partition_can_deliver() -> None:
    """Alone (the others drained or unknown), a partition is never held back."""
    aligner = _aligner()
    assert aligner.admit(A, 10 * DAY, now=0.0)
    assert aligner.admit(A, 500 * DAY, now=0.1)
    aligner.observe(B, 1 * DAY, now=0.2)
    aligner.reached_end(B)
    assert aligner.admit(A, 900 * DAY, now=0.3)


def test_forgotten_partitions_neither_hold_back_nor_wait() -> None:
    """A revoked partition leaves the reckoning."""
    aligner = _aligner()
    aligner.observe(A, 10 * DAY, now=0.0)
    aligner.observe(B, 30 * DAY, now=0.0)
    assert aligner.to_pause(now=0.1) == {B}
    aligner.forget([A])
    assert aligner.to_pause(now=0.2) == frozenset()
    aligner.forget([B])
    assert aligner.slowest(now=0.3) is None
