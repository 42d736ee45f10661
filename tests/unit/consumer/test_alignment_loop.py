"""The consume loop's time alignment with fakes: a backfill message running ahead is put back
(its partition rewound to it and paused, no offset stored past it); real-time is never paused."""

from __future__ import annotations

from consumer.loop import IngestLoop
from tests.unit.consumer.fakes import (
    DaySink,
    FakeMessage,
    RecordingConsumer,
    aligned_loop,
    day_message,
)


def _loop() -> tuple[IngestLoop, RecordingConsumer, DaySink]:
    """Alignment alone: every flush writes all it holds (hold-back: test_holdback.py)."""
    return aligned_loop(BACKFILL_HOLD_MAX_S="0")


def _msg(topic: str, partition: int, offset: int, day: int) -> FakeMessage:
    return day_message(topic, partition, offset, day)


def test_a_message_running_ahead_is_put_back_and_read_after_the_others_catch_up() -> None:
    """bf[1] jumping 30 days ahead of bf[0] is rewound to that message and paused; once bf[0]
    gets there, bf[1] resumes; offsets stored never pass the message put back."""
    loop, consumer, sink = _loop()
    assert loop._accept(_msg("bf", 0, 0, 10))  # type: ignore[arg-type]
    assert loop._accept(_msg("bf", 1, 0, 10))  # type: ignore[arg-type]
    assert not loop._accept(_msg("bf", 1, 1, 40))  # type: ignore[arg-type]
    assert consumer.seeks == [("bf", 1, 1)]
    assert consumer.paused == {("bf", 1)}
    loop._apply_pauses()
    assert consumer.paused == {("bf", 1)}  # still ahead: stays paused

    assert loop._accept(_msg("rt", 0, 0, 90))  # type: ignore[arg-type]  # live: never held
    loop._flush()
    loop._finish_inflight()
    assert sorted(sink.written) == [10, 10, 90]
    assert consumer.stored == {("bf", 0): 1, ("bf", 1): 1, ("rt", 0): 1}

    assert loop._accept(_msg("bf", 0, 1, 40))  # type: ignore[arg-type]
    loop._apply_pauses()
    assert consumer.paused == set()
    assert loop._accept(_msg("bf", 1, 1, 40))  # type: ignore[arg-type]  # read again, taken
    loop._writer.shutdown(wait=True)


def test_the_real_time_topic_is_never_paused_by_the_alignment() -> None:
    """However far apart real-time and backfill are in time, live partitions keep reading."""
    loop, consumer, _sink = _loop()
    assert loop._accept(_msg("bf", 0, 0, 10))  # type: ignore[arg-type]
    assert loop._accept(_msg("bf", 1, 0, 11))  # type: ignore[arg-type]
    for offset in range(3):
        assert loop._accept(_msg("rt", 0, offset, 5000))  # type: ignore[arg-type]
    loop._apply_pauses()
    assert ("rt", 0) not in consumer.paused
    assert consumer.seeks == []
