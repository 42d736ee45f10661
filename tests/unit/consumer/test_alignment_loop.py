"""The consume loop's time alignment with fakes: a backfill message running ahead is put back
(its partition rewound to it and paused, no offset stored past it); real-time is never paused."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from consumer.loop import IngestLoop
from consumer.metrics import ConsumerMetrics
from shared.batch import PointBatch
from shared.settings import ConsumerSettings, load_settings
from tests.unit.consumer.fakes import FakeMessage, NullCache

DAY_US = 86_400_000_000


class _DayCodec:
    """Each message's payload is the day (as text) its one value falls on."""

    def decode(self, raw: bytes) -> PointBatch:
        return PointBatch.from_columns("A", "Simulator", [int(raw) * DAY_US], [1.0])


class _Sink:
    def __init__(self) -> None:
        self.written: list[int] = []

    def write(self, batches: list[PointBatch], values: int | None = None) -> list[object]:
        self.written += [int(b.timestamps_us[0] // DAY_US) for b in batches]
        return []


class _Consumer:
    """Records pauses, resumes, seeks and stored offsets."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.seeks: list[tuple[str, int, int]] = []
        self.stored: dict[tuple[str, int], int] = {}

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored |= {(tp.topic, tp.partition): tp.offset for tp in offsets}


def _loop() -> tuple[IngestLoop, _Consumer, _Sink]:
    settings = load_settings(
        ConsumerSettings,
        {"TOPIC_REALTIME": "rt", "TOPIC_BACKFILL": "bf", "BACKFILL_ALIGN_WINDOW_S": "86400"},
    )
    consumer, sink = _Consumer(), _Sink()
    loop = IngestLoop(
        consumer,  # type: ignore[arg-type]
        _DayCodec(),  # type: ignore[arg-type]
        sink,  # type: ignore[arg-type]
        NullCache(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        settings,
        ConsumerMetrics(),
    )
    parts = [TopicPartition("bf", 0), TopicPartition("bf", 1), TopicPartition("rt", 0)]
    loop.on_assign(consumer, parts)  # type: ignore[arg-type]
    return loop, consumer, sink


def _msg(topic: str, partition: int, offset: int, day: int) -> FakeMessage:
    return FakeMessage(topic, partition, offset, str(day).encode())


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
