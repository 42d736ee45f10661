"""Test doubles for the consume loop's collaborators (no broker, no QuestDB)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from consumer.loop import IngestLoop
from consumer.metrics import ConsumerMetrics
from shared.batch import PointBatch
from shared.settings import ConsumerSettings, load_settings

DAY_US = 86_400_000_000


@dataclass
class FakeMessage:
    """The few confluent_kafka.Message methods the loop uses."""

    t: str
    p: int
    o: int
    payload: bytes = b"0123456789"

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def value(self) -> bytes:
        return self.payload

    def error(self) -> None:
        return None


class NullCache:
    """A latest-value cache that takes every update and keeps nothing."""

    def update(self, _newest: list[object]) -> int:
        return 0


class DayCodec:
    """A message's payload is ``day`` or ``first-last`` (days, as text): one value on each."""

    def decode(self, raw: bytes) -> PointBatch:
        first, _, last = raw.decode().partition("-")
        days = sorted({int(first), int(last or first)})
        return PointBatch.from_columns(
            "A", "Simulator", [d * DAY_US for d in days], [1.0] * len(days)
        )


class DaySink:
    """Records the first day of every batch written, and each write's days."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.writes: list[list[int]] = []

    def write(self, batches: list[PointBatch], values: int | None = None) -> list[object]:
        days = [int(b.timestamps_us[0] // DAY_US) for b in batches]
        self.written += days
        self.writes.append(days)
        return []


class RecordingConsumer:
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


def day_message(topic: str, partition: int, offset: int, day: int | str) -> FakeMessage:
    """A message whose one value (or two: ``"3-8"``) falls on the given day(s)."""
    return FakeMessage(topic, partition, offset, str(day).encode())


def aligned_loop(
    clock: Callable[[], float] | None = None, **env: str
) -> tuple[IngestLoop, RecordingConsumer, DaySink]:
    """A loop owning bf[0], bf[1] and rt[0], with a one-day alignment window."""
    settings = load_settings(
        ConsumerSettings,
        {"TOPIC_REALTIME": "rt", "TOPIC_BACKFILL": "bf", "BACKFILL_ALIGN_WINDOW_S": "86400", **env},
    )
    consumer, sink = RecordingConsumer(), DaySink()
    loop = IngestLoop(
        consumer,  # type: ignore[arg-type]
        DayCodec(),  # type: ignore[arg-type]
        sink,  # type: ignore[arg-type]
        NullCache(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        settings,
        ConsumerMetrics(),
        **({"clock": clock} if clock is not None else {}),
    )
    parts = [TopicPartition("bf", 0), TopicPartition("bf", 1), TopicPartition("rt", 0)]
    loop.on_assign(consumer, parts)  # type: ignore[arg-type]
    return loop, consumer, sink
