"""Kafka publishing: one transactional producer per backfill worker, and a plain one for live data.

The commit protocol of a chunk, in this order (:class:`ChunkTransaction` drives it)::

    begin_transaction
    produce each page's batches to the backfill topic, keyed by source_address
    produce the chunk's checkpoint to the state topic
    commit_transaction       <- data and checkpoint become visible together, or neither does

On any failure before the commit returns, ``abort_transaction`` discards both and the chunk is
tried again. The transactional id is the worker's stable identity, so a restarted producer's
``init_transactions`` fences its crashed predecessor and aborts the transaction it left open.

Memory: librdkafka's queue is capped (``queue.buffering.max.kbytes``/``.messages``, the latter
being this worker's share of ``MAX_BATCHES_IN_FLIGHT``); when it is full ``produce`` raises
``BufferError`` and we serve delivery reports until there is room, so a fast source can never
buffer more than that in the producer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from producer.errors import FencedError, PublishError
from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.kafka import producer_config
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

MAX_VALUES_PER_MESSAGE = 100_000
"""About 1.7 MB of Avro per message: well under ``message.max.bytes`` (8 MiB) even with texts."""
BUFFER_KBYTES_TOTAL = 32_768
"""librdkafka's queue, shared out among the workers: the producer's main memory bound."""
TRANSACTION_TIMEOUT_MS = 600_000
"""A chunk must commit within this; the broker aborts a transaction left open longer."""

ProducerFactory = Callable[[dict[str, Any]], Any]


def transactional_id(settings: CommonSettings, worker: int) -> str:
    """A worker's stable transactional id, derived from the state topic it checkpoints to.

    Stable across restarts (so the successor fences the predecessor) and distinct per state
    topic (so two deployments, or two tests, never fence each other).
    """
    return f"histfill.{settings.topic_state}.worker-{worker}"


def slices(batch: PointBatch, limit: int = MAX_VALUES_PER_MESSAGE) -> list[PointBatch]:
    """The batch cut into pieces of at most ``limit`` values (views, no copies)."""
    n = len(batch)
    if n <= limit:
        return [batch]
    return [
        replace(
            batch,
            timestamps_us=batch.timestamps_us[i : i + limit],
            values=batch.values[i : i + limit],
            quality=batch.quality[i : i + limit],
            texts=None if batch.texts is None else batch.texts[i : i + limit],
        )
        for i in range(0, n, limit)
    ]


def _produce(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes | None,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
) -> None:
    """Produce one message, waiting while librdkafka's queue is at its cap."""
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
            break
        except BufferError:
            # the queue is at its cap (memory or batches in flight): drain delivery reports
            producer.poll(0.05)
        except KafkaException as exc:
            raise _translate(exc, f"produce to {topic}") from exc
    producer.poll(0)


def _translate(exc: KafkaException, what: str) -> PublishError:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED) or (
            error.fatal() and "fenc" in error.str().lower()
        ):
            return FencedError(f"{what}: fenced by a newer producer: {error.str()}")
        return PublishError(f"{what}: {error.str()}", retriable=not error.fatal())
    return PublishError(f"{what}: {exc}")


class BackfillPublisher:
    """A worker's transactional producer: data and checkpoints of one chunk commit together."""

    def __init__(
        self,
        settings: CommonSettings,
        worker: int,
        codec: BatchCodec,
        *,
        workers: int = 1,
        max_in_flight: int = 1000,
        factory: ProducerFactory = Producer,
        timeout_s: float = 30.0,
        txn_id: str | None = None,
        commit_delay_s: float = 0.0,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.transactional_id = txn_id or transactional_id(settings, worker)
        self.offsets: list[Any] | None = None
        """Fleet mode: consumer offsets (``TopicPartition``) every commit carries, with
        :attr:`group_metadata`: the task being worked on (fencing a zombie by the group's
        generation) or the one after it (the task consumed, atomically with its data)."""
        self.group_metadata: Any = None
        self._commit_delay_s = commit_delay_s
        self._codec = codec
        self._factory = factory
        self._timeout = timeout_s
        self._config = producer_config(
            settings,
            **{
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "queue.buffering.max.kbytes": max(4096, BUFFER_KBYTES_TOTAL // max(1, workers)),
                "queue.buffering.max.messages": max(8, max_in_flight // max(1, workers)),
            },
        )
        self._producer: Any = None
        self._in_transaction = False
        self._ends: dict[int, int] = {}  # partition -> offset after the transaction's last data

    def start(self) -> None:
        """Create the producer and ``init_transactions``: fences any predecessor with our id."""
        self._producer = self._factory(self._config)
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise _translate(exc, f"init_transactions({self.transactional_id})") from exc

    def begin(self) -> None:
        """Open the chunk's transaction."""
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise _translate(exc, "begin_transaction") from exc
        self._in_transaction = True
        self._ends = {}

    def publish(self, batch: PointBatch, request_id: str, chunk_index: int) -> tuple[int, int]:
        """Encode and produce one page to the backfill topic; returns (messages, values)."""
        topic = self.settings.topic_backfill
        key = batch.source_address.encode()
        messages = 0
        for piece in slices(replace(batch, request_id=request_id, chunk_index=chunk_index)):
            _produce(self._producer, topic, key, self._codec.encode(piece, topic), self._delivered)
            messages += 1
        return messages, len(batch)

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:  # a failed delivery fails the commit: the chunk is redone
            partition, after = msg.partition(), msg.offset() + 1
            self._ends[partition] = max(self._ends.get(partition, 0), after)

    def take_ends(self) -> dict[int, int]:
        """Per partition, the offset after the last data message of the transaction just
        committed (the commit served every delivery report): see ``producer.state.ingested``."""
        ends, self._ends = self._ends, {}
        return ends

    def checkpoint(self, key: str, value: bytes | None) -> None:
        """Produce a state record (``None``: a tombstone) inside the open transaction."""
        self._produce(self.settings.topic_state, key.encode(), value)

    def _produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        _produce(self._producer, topic, key, value)

    def commit(self, attempts: int = 3) -> None:
        """Commit the chunk: its data and checkpoint become visible to read_committed readers.

        A retriable commit error is retried *as a commit* (the outcome is unknown: aborting
        could drop a transaction the broker already committed); one that requires an abort
        raises, and the caller aborts and redoes the chunk.
        """
        if self._commit_delay_s:  # TEST_COMMIT_DELAY_SECONDS: a window to kill us mid-commit
            self._producer.flush(self._timeout)  # the transaction's records are on the broker
            log.warning("commit_delayed_for_test", seconds=self._commit_delay_s)
            time.sleep(self._commit_delay_s)
        if self.offsets is not None:
            try:
                self._producer.send_offsets_to_transaction(
                    self.offsets, self.group_metadata, self._timeout
                )
            except KafkaException as exc:
                raise _translate(exc, "send_offsets_to_transaction") from exc
        for attempt in range(1, attempts + 1):
            try:
                self._producer.commit_transaction(self._timeout)
                self._in_transaction = False
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = (
                    isinstance(error, KafkaError)
                    and error.retriable()
                    and not error.txn_requires_abort()
                )
                if not retriable or attempt == attempts:
                    raise _translate(exc, "commit_transaction") from exc
                log.warning("commit_retry", worker=self.worker, error=str(exc))

    def abort(self) -> None:
        """Discard the open transaction, if any (errors are logged: the broker aborts it anyway
        when the transaction times out or the next ``init_transactions`` fences it)."""
        if self._producer is None:
            return
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            state_error = isinstance(error, KafkaError) and error.code() == KafkaError._STATE
            if not state_error:  # _STATE: there was no transaction to abort
                log.warning("abort_transaction_failed", worker=self.worker, error=str(exc))
        self._in_transaction = False

    def restart(self) -> None:
        """Replace a producer that hit a fatal error (fencing aside) with a fresh one."""
        self.close()
        self.start()

    def close(self) -> None:
        """Abort what is open and drop the producer."""
        if self._producer is None:
            return
        if self._in_transaction:
            self.abort()
        try:
            self._producer.flush(self._timeout)
        except KafkaException as exc:  # a producer in a fatal state refuses even to flush
            log.warning("producer_close_failed", worker=self.worker, error=str(exc))
        self._producer = None


def fence(settings: CommonSettings, workers: int, factory: ProducerFactory = Producer) -> None:
    """``init_transactions`` for worker ids ``0..workers-1``: aborts transactions that crashed
    predecessors left open, so ``read_committed`` readers of the state topic reach its end."""
    started = time.monotonic()

    def one(worker: int) -> None:
        config = producer_config(
            settings, **{"transactional.id": transactional_id(settings, worker)}
        )
        producer = factory(config)
        try:
            producer.init_transactions(30.0)
        except KafkaException as exc:
            raise _translate(exc, f"fencing worker {worker}") from exc
        finally:
            producer.flush(5.0)

    with ThreadPoolExecutor(max_workers=min(16, max(1, workers))) as pool:
        list(pool.map(one, range(workers)))  # list(): re-raise the first failure
    log.info("transactions_fenced", workers=workers, seconds=round(time.monotonic() - started, 3))


class PlainPublisher:
    """An idempotent, non-transactional producer: live values and request status records."""

    def __init__(
        self, settings: CommonSettings, codec: BatchCodec, factory: ProducerFactory = Producer
    ) -> None:
        self.settings = settings
        self._codec = codec
        self._producer: Any = factory(producer_config(settings, **{"linger.ms": 5}))
        self.errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors.append(err.str())
            log.error("delivery_failed", error=err.str())

    def publish(self, topic: str, batch: PointBatch) -> int:
        """Produce one batch (sliced if large) to ``topic``; returns the messages produced."""
        count = 0
        for piece in slices(batch):
            self._produce(topic, piece.source_address.encode(), self._codec.encode(piece, topic))
            count += 1
        return count

    def put_state(self, key: str, value: bytes | None) -> None:
        """Write a state record and wait until Kafka has it (request records must survive a
        crash right after the API answered)."""
        self.put(self.settings.topic_state, key, value)

    def put(self, topic: str, key: str, value: bytes | None) -> None:
        """Write one keyed record to ``topic`` and wait until Kafka has it."""
        self._produce(topic, key.encode(), value)
        self.flush()

    def _produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        _produce(self._producer, topic, key, value, self._on_delivery)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every message to be acknowledged; raise if some were not."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise PublishError(f"{remaining} messages not delivered within {timeout_s}s")
        if self.errors:
            errors, self.errors = self.errors, []
            raise PublishError(f"delivery failed: {errors[0]}")

    def close(self) -> None:
        """Flush what is pending."""
        self._producer.flush(10.0)
