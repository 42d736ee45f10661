"""Pure parts of publishing: message slicing, transactional ids and the values/s throttle."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException

from producer.worker.publisher import BackfillPublisher, slices, transactional_id
from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.ratelimit import ValueRateLimit
from shared.settings import ProducerSettings, load_settings


def _batch(n: int) -> PointBatch:
    return PointBatch.from_columns("P", "Simulator", np.arange(n), np.arange(n) / 2.0)


def test_large_batches_are_cut_into_bounded_messages() -> None:
    """A batch over the per-message limit is cut into views that together hold every value."""
    pieces = slices(_batch(250), limit=100)
    assert [len(p) for p in pieces] == [100, 100, 50]
    assert np.concatenate([p.timestamps_us for p in pieces]).tolist() == list(range(250))
    whole = _batch(100)
    assert slices(whole, limit=100) == [whole]  # at the limit: the batch itself, not a copy


def test_transactional_ids_are_stable_and_scoped_to_the_state_topic() -> None:
    """A worker's transactional id depends only on its number and the state topic."""
    a = load_settings(ProducerSettings, {"TOPIC_STATE": "a.state"})
    b = load_settings(ProducerSettings, {"TOPIC_STATE": "b.state"})
    again = load_settings(ProducerSettings, {"TOPIC_STATE": "a.state"})  # after a restart
    assert transactional_id(a, 0) == transactional_id(again, 0)
    assert transactional_id(a, 0) != transactional_id(a, 1)
    assert transactional_id(a, 0) != transactional_id(b, 0)


def test_throttle_paces_values_after_a_one_second_burst() -> None:
    """At 1,000 values/s, after a one-second burst, pages wait so the long-run rate holds."""
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limit = ValueRateLimit(1000.0, clock=lambda: now[0], sleep=sleep)

    async def publish_pages() -> None:
        for _ in range(25):
            await limit.acquire(500)

    asyncio.run(publish_pages())
    assert waits[:3] == [0.5, 0.5, 0.5]
    # 12,500 values: the burst (1,000) and the last page (paid by whoever comes next) are free
    assert now[0] == 11.0


def test_throttle_zero_means_unlimited() -> None:
    """A rate of 0 never waits."""
    limit = ValueRateLimit(0.0, clock=lambda: 0.0)
    assert limit.reserve(10**9) == 0.0


class _FatalProducer:
    """A transactional producer after a fatal error: every call raises, as librdkafka's does."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.calls: list[str] = []

    def _fatal(self, name: str) -> None:
        self.calls.append(name)
        error = KafkaError(KafkaError.INVALID_TXN_STATE, "Failed to end transaction", fatal=True)
        raise KafkaException(error)

    def init_transactions(self, _timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def abort_transaction(self, _timeout: float) -> None:
        self._fatal("abort")

    def flush(self, _timeout: float) -> int:
        self._fatal("flush")
        return 0


def test_a_producer_in_a_fatal_state_is_closed_and_replaced_without_raising() -> None:
    """After a fatal transaction error (librdkafka #4849: an abort can fail so), closing the
    publisher drops the dead producer instead of raising, and a restart makes a fresh one."""
    made: list[_FatalProducer] = []

    def factory(config: dict[str, Any]) -> _FatalProducer:
        made.append(_FatalProducer(config))
        return made[-1]

    settings = load_settings(ProducerSettings, {})
    publisher = BackfillPublisher(settings, 0, BatchCodec(), factory=factory)
    publisher.start()
    publisher.begin()
    publisher.restart()  # abort and flush both fail fatally: neither escapes
    assert made[0].calls == ["init", "begin", "abort", "flush"]
    assert len(made) == 2
    assert made[1].calls == ["init"]
