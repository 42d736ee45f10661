"""Holding back: a flush writes the history every backfill partition has passed, carries the
rest, and never stores an offset past a carried message (consumer.pending, TimeAligner.cutoff,
and the loop with fakes)."""

from __future__ import annotations

from consumer.alignment import TimeAligner
from consumer.decode import Poison
from consumer.loop import HOLD_ROWS_FACTOR
from consumer.pending import Pending, Written
from shared.batch import PointBatch
from tests.unit.consumer.fakes import DAY_US, FakeMessage, aligned_loop, day_message

A, B = ("bf", 0), ("bf", 1)


def _add(pending: Pending, t: str, p: int, o: int, day: int, held: bool = True) -> None:
    """A one-value batch on ``day``; ``held``: it may be held back (a backfill batch)."""
    batch = PointBatch.from_columns("A", "Simulator", [day * DAY_US], [1.0])
    pending.add(FakeMessage(t, p, o), batch, now=0.0, oldest=day * DAY_US if held else None)


def _days(pending: Pending) -> list[tuple[str, int, int]]:
    return [(m.topic(), m.partition(), m.offset()) for m in pending.messages]


def test_split_carries_what_is_at_or_after_the_cutoff_and_limits_the_offsets() -> None:
    pending = Pending()
    _add(pending, "bf", 0, 0, 1)
    _add(pending, "bf", 0, 1, 5)  # at/after the cutoff: carried
    _add(pending, "bf", 0, 2, 2)  # before it, but after a carried message of bf[0]
    _add(pending, "bf", 1, 0, 3)
    _add(pending, "rt", 0, 0, 9, held=False)  # real time: never carried
    write, carry = pending.split(4 * DAY_US)

    assert _days(write) == [("bf", 0, 0), ("bf", 0, 2), ("bf", 1, 0), ("rt", 0, 0)]
    assert write.values == 4
    assert len(write.batch_messages) == 4
    assert write.commit_limit == {A: 1}  # bf[0] stores no offset past the carried message
    assert _days(carry) == [("bf", 0, 1), ("bf", 0, 2)]
    assert isinstance(carry.messages[1], Written)  # written already: its offset only
    assert [m.offset() for m in carry.batch_messages] == [1]  # only the carried one is rewritten
    assert carry.values == 1
    assert carry.counts == [1, 0]
    assert pending.writable(4 * DAY_US) == (write.values, 4)


def test_a_later_split_passes_the_written_markers_on_until_the_partition_is_written() -> None:
    pending = Pending()
    _add(pending, "bf", 0, 0, 5)
    _add(pending, "bf", 0, 1, 2)
    _, carry = pending.split(4 * DAY_US)
    _add(carry, "bf", 0, 2, 6)
    write, carry = carry.split(6 * DAY_US)  # offset 0 written now, 2 still carried
    assert [m.offset() for m in write.batch_messages] == [0]
    assert _days(write) == [("bf", 0, 0), ("bf", 0, 1)]  # the marker: stored with the flush
    assert write.commit_limit == {A: 2}
    assert _days(carry) == [("bf", 0, 2)]


def test_writable_resumes_its_scan_and_restarts_when_the_cutoff_moves() -> None:
    pending = Pending()
    _add(pending, "bf", 0, 0, 1)
    _add(pending, "bf", 1, 0, 6)
    assert pending.writable(4 * DAY_US) == (1, 1)
    _add(pending, "bf", 0, 1, 2)
    _add(pending, "bf", 1, 1, 3)
    assert pending.writable(4 * DAY_US) == (3, 3)
    assert pending.writable(3 * DAY_US) == (2, 2)
    assert pending.writable(7 * DAY_US) == (4, 4)


def test_poison_messages_are_never_carried() -> None:
    pending = Pending()
    _add(pending, "bf", 0, 0, 5)
    message = FakeMessage("bf", 0, 1)
    pending.add(message, Poison(message, "DecodeError", "bad", "bad_avro"), now=0.0)  # type: ignore[arg-type]
    write, carry = pending.split(4 * DAY_US)
    assert [p.message.offset() for p in write.poisons] == [1]  # dead-lettered now
    assert write.commit_limit == {A: 0}
    assert _days(carry) == [("bf", 0, 0), ("bf", 0, 1)]
    assert carry.poisons == []


def test_the_cutoff_is_the_oldest_value_last_read_from_partitions_that_can_deliver() -> None:
    aligner = TimeAligner(window_us=DAY_US, idle_s=2.0)
    assert aligner.cutoff(now=0.0) is None  # nothing read yet
    aligner.observe(A, 12 * DAY_US, now=0.0, oldest_ts_us=10 * DAY_US)
    aligner.observe(B, 13 * DAY_US, now=0.0, oldest_ts_us=11 * DAY_US)
    assert aligner.cutoff(now=0.1) == 10 * DAY_US
    assert not aligner.admit(A, 30 * DAY_US, now=0.2, oldest_ts_us=29 * DAY_US)
    assert aligner.cutoff(now=0.3) == 10 * DAY_US  # a message put back was not read
    aligner.reached_end(A)
    assert aligner.cutoff(now=0.4) == 11 * DAY_US  # drained: holds nothing back
    assert aligner.cutoff(now=5.0) is None  # B idle for over idle_s: nothing can deliver


def test_a_flush_writes_what_every_partition_has_passed_and_stores_offsets_to_match() -> None:
    loop, consumer, sink = aligned_loop()
    for m in [("bf", 0, 0, 1), ("bf", 1, 0, 1), ("bf", 0, 1, 2), ("rt", 0, 0, 90)]:
        assert loop._accept(day_message(*m))  # type: ignore[arg-type]
    loop._flush()
    loop._finish_inflight()
    assert sink.writes == [[90]]  # bf[1] may still bring day 1: all backfill is held
    assert consumer.stored == {("rt", 0): 1}

    assert loop._accept(day_message("bf", 1, 1, 2))  # type: ignore[arg-type]
    loop._flush()
    loop._finish_inflight()
    assert sink.writes[1] == [1, 1]  # both partitions are past day 1
    assert consumer.stored == {("rt", 0): 1, ("bf", 0): 1, ("bf", 1): 1}

    loop._flush(everything=True)  # as on shutdown: all of it
    loop._finish_inflight()
    assert sink.writes[2] == [2, 2]
    assert consumer.stored == {("rt", 0): 1, ("bf", 0): 2, ("bf", 1): 2}
    loop._writer.shutdown(wait=True)


def test_a_carried_message_holds_back_its_partitions_offsets_until_it_is_written() -> None:
    """bf[0] brings day 5, then day 1: day 1 is written, but bf[0]'s offset stays before day
    5 until day 5 is written too; each value is written once."""
    loop, consumer, sink = aligned_loop()
    for m in [("bf", 1, 0, "4"), ("bf", 0, 0, "5"), ("bf", 0, 1, "1"), ("bf", 0, 2, "4-5")]:
        assert loop._accept(day_message(*m))  # type: ignore[arg-type]
    loop._flush()
    loop._finish_inflight()
    assert sink.writes == [[1]]
    assert consumer.stored == {("bf", 0): 0}  # not past day 5's message

    for m in [("bf", 1, 1, "6"), ("bf", 0, 3, "6")]:
        assert loop._accept(day_message(*m))  # type: ignore[arg-type]
    loop._flush()
    loop._finish_inflight()
    assert sorted(sink.writes[1]) == [4, 4, 5]
    assert consumer.stored == {("bf", 0): 3, ("bf", 1): 1}
    loop._writer.shutdown(wait=True)


def test_nothing_is_due_while_all_is_held_until_held_for_backfill_hold_max_s() -> None:
    now = [0.0]
    loop, _consumer, sink = aligned_loop(
        clock=lambda: now[0], FLUSH_INTERVAL_MS="500", BACKFILL_HOLD_MAX_S="10"
    )
    offset = 0
    while now[0] < 9.5:  # both partitions keep delivering day 1 (never idle): all held
        for p in (0, 1):
            assert loop._accept(day_message("bf", p, offset, 1))  # type: ignore[arg-type]
        assert not loop._flush_due()  # the interval passed, but nothing may be written yet
        offset += 1
        now[0] += 1.0
    now[0] = 10.0
    assert loop._flush_due()  # the first was held BACKFILL_HOLD_MAX_S: all written now
    loop._flush()
    loop._finish_inflight()
    assert sink.writes == [[1] * 2 * offset]
    loop._writer.shutdown(wait=True)


def test_idle_partitions_hold_nothing_back() -> None:
    now = [0.0]
    loop, _consumer, sink = aligned_loop(clock=lambda: now[0])
    for m in [("bf", 0, 0, 1), ("bf", 1, 0, 1)]:
        assert loop._accept(day_message(*m))  # type: ignore[arg-type]
    assert not loop._flush_due()
    now[0] = 2.5  # both delivered nothing for over 2 s: idle, so nothing is behind
    assert loop._flush_due()
    loop._flush()
    loop._finish_inflight()
    assert sink.writes == [[1, 1]]
    loop._writer.shutdown(wait=True)


def test_past_the_most_held_the_oldest_flush_worth_goes() -> None:
    """FLUSH_ROWS=3: once HOLD_ROWS_FACTOR x 3 values are held, the oldest batches go, at
    least 3 values of them (all of day 2, bf[1] being there), and those of day 3 stay held."""
    most = int(HOLD_ROWS_FACTOR * 3)
    loop, consumer, sink = aligned_loop(FLUSH_ROWS="3")
    days = {0: [], 1: []}  # type: dict[int, list[int]]
    for i in range(most):
        p = 1 - i % 2  # bf[1] first, always at day 2; bf[0] at day 2, then 3
        day = 2 if p == 1 or not days[0] else 3
        assert loop._accept(day_message("bf", p, len(days[p]), day))  # type: ignore[arg-type]
        days[p].append(day)
        assert loop._flush_due() == (i == most - 1)  # all held (bf[1] is at day 2) till then
    loop._flush()
    loop._finish_inflight()
    assert sink.writes == [[2] * (days[0] + days[1]).count(2)]
    assert consumer.stored == {("bf", 0): 1, ("bf", 1): len(days[1])}
    assert loop._pending.values == days[0].count(3)
    loop._writer.shutdown(wait=True)


def test_cutoff_freeing_never_names_a_cutoff_that_frees_nothing() -> None:
    pending = Pending()
    for o in range(4):
        _add(pending, "bf", 0, o, 2)
    assert pending.cutoff_freeing(3) is None  # all on one day: only writing all frees any
    _add(pending, "bf", 1, 0, 5)
    assert pending.cutoff_freeing(3) == 5 * DAY_US
    assert pending.cutoff_freeing(0) == 2 * DAY_US


def test_a_long_stretch_written_at_once_goes_oldest_first_a_flush_worth_at_a_time() -> None:
    """FLUSH_ROWS=2: days 1-3 of both partitions become writable together; they go out as
    three flushes in time order, so the flush in flight stays small."""
    loop, consumer, sink = aligned_loop(FLUSH_ROWS="2")
    for day in (1, 2, 3, 4):
        for p in (0, 1):
            assert loop._accept(day_message("bf", p, day - 1, day))  # type: ignore[arg-type]
    while loop._flush_due():
        loop._flush()
        loop._finish_inflight()
    assert sink.writes == [[1, 1], [2, 2], [3, 3]]  # day 4: held (the partitions are there)
    assert consumer.stored == {("bf", 0): 3, ("bf", 1): 3}
    loop._writer.shutdown(wait=True)
