"""The consume loop's commit protocol with fakes: no offset is stored past unwritten data."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from consumer.loop import IngestLoop, _Stopped
from consumer.metrics import ConsumerMetrics
from shared.batch import PointBatch
from shared.errors import DecodeError, DecodeReason, SinkError
from shared.settings import ConsumerSettings, load_settings
from tests.unit.consumer.fakes import FakeMessage, NullCache


class _Codec:
    def decode(self, _raw: bytes) -> PointBatch:
        return PointBatch.from_columns("A", "Simulator", [1], [1.0])


class _Sink:
    """Fails its first ``fails`` writes, like QuestDB timing out, then accepts."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.written: list[int] = []

    def write(self, batches: list[PointBatch], values: int | None = None) -> list[object]:
        if self.fails:
            self.fails -= 1
            raise SinkError("timed out")
        assert values == sum(len(b) for b in batches)
        self.written.append(len(batches))
        return []


class _Consumer:
    def __init__(self) -> None:
        self.stored: list[int] = []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored += [tp.offset for tp in offsets]

    def pause(self, _p: list[TopicPartition]) -> None:
        """Nothing is fetched in these tests."""

    def resume(self, _p: list[TopicPartition]) -> None:
        """Nothing is fetched in these tests."""

    def poll(self, _timeout: float) -> None:
        return None

    def unsubscribe(self) -> None:
        """Leaving the group on stop: nothing to leave here."""

    def close(self) -> None:
        """Nothing to close."""


# every flush writes all it holds (hold-back: test_holdback_loop.py)
_NO_HOLD = {"TOPIC_REALTIME": "rt", "TOPIC_BACKFILL": "bf", "BACKFILL_HOLD_MAX_S": "0"}


def _loop_with_failed_flush(fails: int) -> tuple[IngestLoop, _Consumer, _Sink]:
    """Offsets 0-9 handed to the background writer, whose first attempt failed; 10-19 pending."""
    settings = load_settings(
        ConsumerSettings,
        {**_NO_HOLD, "SHUTDOWN_TIMEOUT_S": "5"},
    )
    consumer, sink = _Consumer(), _Sink(fails)
    loop = IngestLoop(
        consumer,  # type: ignore[arg-type]
        _Codec(),  # type: ignore[arg-type]
        sink,  # type: ignore[arg-type]
        NullCache(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        settings,
        ConsumerMetrics(),
    )
    loop.on_assign(consumer, [TopicPartition("bf", 0)])  # type: ignore[arg-type]
    for offset in range(10):
        loop._accept(FakeMessage("bf", 0, offset))  # type: ignore[arg-type]
    loop._flush()
    assert loop._inflight is not None
    assert isinstance(loop._inflight[2].exception(), SinkError)  # waits for the writer
    for offset in range(10, 20):
        loop._accept(FakeMessage("bf", 0, offset))  # type: ignore[arg-type]
    return loop, consumer, sink


def test_revoke_after_a_failed_write_stores_no_offset() -> None:
    """A revoke right after a failed background write commits nothing: all of it is re-read."""
    loop, consumer, sink = _loop_with_failed_flush(fails=1)
    loop.on_revoke(consumer, [TopicPartition("bf", 0)])  # type: ignore[arg-type]
    assert consumer.stored == []
    assert sink.written == []
    assert loop._pending.messages == []


def test_stop_during_a_retry_then_shutdown_writes_in_order() -> None:
    """Stopped while retrying, the shutdown writes the failed flush first, then the next one."""
    loop, consumer, sink = _loop_with_failed_flush(fails=2)
    loop.stop()
    with pytest.raises(_Stopped):
        loop._finish_inflight()
    assert consumer.stored == []
    loop._shutdown()
    assert sink.written == [10, 10]
    assert consumer.stored == [10, 20]


class _PoisonAwareCodec(_Codec):
    def decode(self, raw: bytes) -> PointBatch:
        if raw == b"bad":
            raise DecodeError("not a batch", raw, DecodeReason.BAD_MAGIC_BYTE)
        return super().decode(raw)


class _Dlq:
    def __init__(self) -> None:
        self.published: list[int] = []

    def publish(self, message: FakeMessage, _error_type: str, _reason: str, _code: str) -> None:
        self.published.append(message.offset())

    def flush(self) -> None:
        """Every dead letter is acknowledged."""


class _FlakyCache:
    """Redis down for the first ``fails`` updates."""

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def update(self, _newest: list[object]) -> int:
        if self.fails:
            self.fails -= 1
            raise SinkError("redis down")
        return 0


def test_a_write_retried_after_redis_failed_does_not_dead_letter_twice() -> None:
    """QuestDB and the DLQ succeed, Redis fails: the retry upserts again but sends no second
    dead letter, then stores the offsets."""
    settings = load_settings(ConsumerSettings, _NO_HOLD)
    consumer, sink, dlq = _Consumer(), _Sink(0), _Dlq()
    loop = IngestLoop(
        consumer,  # type: ignore[arg-type]
        _PoisonAwareCodec(),  # type: ignore[arg-type]
        sink,  # type: ignore[arg-type]
        _FlakyCache(1),  # type: ignore[arg-type]
        dlq,  # type: ignore[arg-type]
        settings,
        ConsumerMetrics(),
    )
    loop.on_assign(consumer, [TopicPartition("bf", 0)])  # type: ignore[arg-type]
    for offset in range(5):
        payload = b"bad" if offset == 3 else b"ok"
        loop._accept(FakeMessage("bf", 0, offset, payload))  # type: ignore[arg-type]
    loop._flush()
    assert loop._inflight is not None
    assert isinstance(loop._inflight[2].exception(), SinkError)  # Redis failed in the writer
    assert dlq.published == [3]
    loop._finish_inflight()
    assert dlq.published == [3]
    assert sink.written == [4, 4]
    assert consumer.stored == [5]
