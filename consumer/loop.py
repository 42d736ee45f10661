"""The consume loop: poll -> decode -> QuestDB -> dead letters -> Redis -> store and commit offsets.

The commit protocol, in one place:

1. Messages are polled and decoded (counted, poison set aside, each batch's newest value
   kept for Redis) into a pending flush of messages; nothing is committed yet (offsets are
   stored by hand, and librdkafka commits nothing else).
2. A flush writes the pending batches to QuestDB over ILP/HTTP (on a background thread, while
   the next flush fills; one flush in flight at most). Backfill batches that the slowest
   partitions may still bring older data beside are held for a later flush, so history goes
   in time order (``consumer.pending``); no offset is stored past a held message. If
   QuestDB is down the loop pauses its partitions and retries with backoff, keeping the data
   and committing nothing.
   Batches QuestDB refuses (bad data) are found by bisection and become dead letters.
3. Dead letters are produced to the DLQ and acknowledged by the broker.
4. The Redis latest-value cache is updated (newest wins; idempotent).
5. Only then are the messages' offsets stored; librdkafka's background auto-commit (and the
   commit on revoke and close) commits nothing but stored offsets.

A crash anywhere before step 5 replays the flush's messages on restart: the rows are written
again, and ``DEDUP UPSERT KEYS(ts, source_address)`` turns them into upserts of the same rows.
At-least-once delivery plus an idempotent sink is exactly-once in effect.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import structlog
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from consumer.alignment import TimeAligner
from consumer.decode import LazyBatches, Poison, decode_message
from consumer.dlq import DeadLetterPublisher
from consumer.latest_cache import LatestValueCache
from consumer.membership import leave_group
from consumer.metrics import ConsumerMetrics, Heartbeat, SinkHealth
from consumer.pending import Pending, Written
from consumer.questdb_sink import QuestDBSink
from shared.codec import BatchCodec
from shared.errors import DecodeError, SinkError
from shared.ratelimit import ValueRateLimit
from shared.settings import ConsumerSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")
HOLD_ROWS_FACTOR = 3
"""Most values a flush holds back, in FLUSH_ROWS (each costs about 17 bytes of Kafka message).
The backfill partitions run up to a chunk window or two apart in time: with 100 points, 4 x
400,000 values would hold nearly all of that. Measured (e2e, full year, 3 runs each): 3 gave
87-94 % of the ceiling at 244-247 MB consumer peak; 4 gave 82-111 % (median 95 %) at
259-261 MB, over the 250 MB the consumer is held to."""
TimeLag = Callable[[], tuple[dict[tuple[str, int], float | None], dict[str, float | None]]]
"""The group's lag in seconds per (topic, partition), and its drain ETA per topic."""


@dataclass(frozen=True)
class _Outcome:
    """What a flush's write did: which batches QuestDB refused, how many went to the DLQ."""

    refused: frozenset[int]
    poisons: int


class _Stopped(Exception):
    """Raised inside a retry when the loop was told to stop."""


class IngestLoop:
    """Runs the consume loop until ``stop`` is set; see the module docstring for the protocol."""

    def __init__(
        self,
        consumer: Consumer,
        codec: BatchCodec,
        sink: QuestDBSink,
        cache: LatestValueCache,
        dead_letters: DeadLetterPublisher,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        group_lag: Callable[[], dict[int, int]] | None = None,
        partition_lag: Callable[[], dict[tuple[str, int], int]] | None = None,
        time_lag: TimeLag | None = None,
    ) -> None:
        self._consumer = consumer
        self._codec = codec
        self._sink = sink
        self._cache = cache
        self._dlq = dead_letters
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not security
        # the real-time partitions' lag across the group (see GroupLagWatcher), if watched
        self._group_lag = group_lag
        # every partition's lag by the group's commits, for histfill_consumer_lag_messages
        self._partition_lag = partition_lag
        # the group's lag in seconds per partition and drain ETA per topic (GroupLagWatcher)
        self._time_lag = time_lag
        self._pending = Pending()
        self._stop = threading.Event()
        self._flushing = False
        self._assigned: set[tuple[str, int]] = set()
        self._paused: set[tuple[str, int]] = set()  # paused by us: held or aligned
        self._holding = False  # every backfill partition held: real-time first, or the cap
        self._backfill_lag_paused = False
        # backfill partitions ahead in time wait for the slowest (see consumer.alignment)
        window_us = int(settings.backfill_align_window_s * 1_000_000)
        self._aligner = TimeAligner(window_us) if window_us > 0 else None
        # flushes write history in time order, holding back what the slowest may still join
        self._hold = self._aligner is not None and settings.backfill_hold_max_s > 0
        self._flushed_at = clock()
        self._backfill_cap = ValueRateLimit(settings.backfill_max_values_per_second, clock=clock)
        self._last_steer = 0.0
        self._last_export = -1.0
        self._generation = 0  # bumped by every revoke or loss of partitions
        # one background writer: at most one flush in flight while the next one fills
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush")
        self._inflight: tuple[Pending, float, Future[_Outcome]] | None = None
        self.heartbeat = Heartbeat(clock=clock)
        self.sinks = SinkHealth(clock=clock)  # which sink is stuck, for /ready and /health
        self.ready = False

    @property
    def partitions_held(self) -> int:
        """Partitions assigned now (0 during an eager rebalance), for /health and /ready."""
        return len(self._assigned)

    # ------------------------------------------------------------------ rebalance callbacks

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self._metrics.assigned.set(len(self._assigned))
        self.ready = True
        log.info("partitions_assigned", partitions=_names(partitions))

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Flush and commit what we hold before the partitions move to another member."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._generation += 1
        log.info("partitions_revoked", partitions=_names(partitions))
        if not self._flushing:
            try:
                self._flush(retry=False)
            except SinkError as exc:
                log.warning("flush_on_revoke_failed", error=str(exc))
        # Whatever is still pending for revoked partitions is not ours to commit any more.
        self._pending.keep_only(lambda m: (m.topic(), m.partition()) not in revoked)
        self._assigned -= revoked
        self._paused -= revoked
        if self._aligner is not None:
            self._aligner.forget(revoked)
        self._metrics.drop_lag(revoked)
        self._metrics.assigned.set(len(self._assigned))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions_lost", partitions=_names(partitions))
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._generation += 1
        if self._inflight is not None:
            # its offsets are not ours to store any more; the new owner writes it again
            self._inflight[2].exception()  # wait for the writer before forgetting it
            self._inflight = None
        self._pending.keep_only(lambda m: (m.topic(), m.partition()) not in lost)
        self._assigned -= lost
        self._paused -= lost
        if self._aligner is not None:
            self._aligner.forget(lost)
        self._metrics.drop_lag(lost)
        self._metrics.assigned.set(len(self._assigned))

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Ask the loop to finish: it flushes, commits and returns."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped; on the way out flush and commit within the shutdown budget."""
        settings = self._settings
        interval = settings.flush_interval_ms / 1000
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                messages = self._consumer.consume(settings.poll_batch, timeout=min(interval, 0.5))
                generation = self._generation
                put_back: set[tuple[str, int]] = set()
                for message in messages:
                    if self._generation != generation:
                        # A rebalance ran inside this batch (a retry polls): the rest belongs to
                        # the old assignment; the fetch position was reset, so it is read again.
                        break
                    key = (message.topic() or "", message.partition() or 0)
                    if key in put_back or not self._accept(message):
                        # its partition was rewound to an earlier message of this batch: this
                        # one is read again after it, once the partition is resumed
                        put_back.add(key)
                        continue
                    # checked per message: a flush never holds much more than FLUSH_ROWS values,
                    # which bounds memory and the size of one QuestDB request
                    if self._flush_due():
                        self._flush()
                if self._flush_due():
                    self._flush()
                elif self._inflight is not None and self._inflight[2].done():
                    self._finish_inflight()  # commit it (or retry it) without waiting for more
                if self._aligner is not None:
                    self._apply_pauses()
                self._steer()
        except _Stopped:
            pass
        finally:
            self._shutdown()

    def _accept(self, message: Message) -> bool:
        """Take a polled message into the pending flush; False if it was put back instead
        (a backfill message running ahead in time: see consumer.alignment)."""
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if self._aligner is not None and message.topic() == self._settings.topic_backfill:
                    self._aligner.reached_end((message.topic() or "", message.partition() or 0))
                return True
            if error.fatal():
                raise KafkaException(error)
            log.warning("kafka_consume_error", error=str(error))
            return True
        decoded = self._retry(
            "schema_registry", lambda: decode_message(self._codec, message), DecodeError
        )
        backfill = message.topic() == self._settings.topic_backfill
        oldest = None
        if backfill and self._aligner is not None and not isinstance(decoded, Poison) and decoded:
            # a batch is sorted by time: its first value is its oldest, its last its newest
            newest, oldest = int(decoded.timestamps_us[-1]), int(decoded.timestamps_us[0])
            if not self._aligner.admit(_key(message)[:2], newest, self._clock(), oldest):
                self._put_back(message)
                return False
        self._pending.add(message, decoded, self._clock(), oldest if self._hold else None)
        if backfill and not isinstance(decoded, Poison):
            # paid for by pausing the backfill partitions (see _steer) while over the cap
            self._backfill_cap.reserve(len(decoded))
        return True

    def _put_back(self, message: Message) -> None:
        """Pause the message's partition and rewind it to the message, so it is read again
        when resumed. Nothing of it was taken: no offset of it or after it is stored."""
        topic, partition = message.topic() or "", message.partition() or 0
        tp = TopicPartition(topic, partition)
        if (topic, partition) not in self._paused:
            self._consumer.pause([tp])
            self._paused.add((topic, partition))
        # after the pause: pausing keeps the position after the last message polled (this one)
        self._consumer.seek(TopicPartition(topic, partition, message.offset() or 0))

    def _flush_due(self) -> bool:
        pending, s = self._pending, self._settings
        if not pending.messages or pending.since is None:
            return False
        now = self._clock()
        cutoff = self._cutoff(now)
        if cutoff is None:
            return (
                pending.values >= s.flush_rows
                or pending.size >= s.flush_bytes
                or (now - pending.since) * 1000 >= s.flush_interval_ms
            )
        values, messages = pending.writable(cutoff)
        return messages > 0 and (
            values >= s.flush_rows or (now - self._flushed_at) * 1000 >= s.flush_interval_ms
        )

    def _cutoff(self, now: float) -> int | None:
        """The time before which a flush writes backfill batches now, holding the rest back
        (see consumer.pending); None: write everything (hold-back off or past its time or
        bytes bound, or no backfill partition still being read). Holding at most
        ``HOLD_ROWS_FACTOR`` x FLUSH_ROWS values: past that, the oldest FLUSH_ROWS go."""
        pending, s = self._pending, self._settings
        if (
            not self._hold
            or self._aligner is None
            or pending.since is None
            or pending.size >= s.flush_bytes
            or now - pending.since >= s.backfill_hold_max_s
        ):
            return None
        if pending.values >= HOLD_ROWS_FACTOR * s.flush_rows:
            return pending.cutoff_freeing(s.flush_rows)
        held = self._backfill_assigned() if self._holding else frozenset()
        return self._aligner.cutoff(now, held)

    def _flush(self, retry: bool = True, everything: bool = False) -> None:
        """Hand the pending messages to the writer; see the module docstring for the order.

        The first attempt runs on a background thread, so decoding the next flush overlaps
        QuestDB's work on this one (both cores busy). Offsets are stored strictly in flush
        order: before a flush is handed over, the previous one is finished and committed.
        A failed first attempt is retried here, on the polling thread, where partitions can be
        paused and the group membership kept alive.
        """
        self._finish_inflight(retry)
        pending = self._pending
        if not pending.messages:
            return
        cutoff = self._cutoff(self._clock()) if retry and not everything else None
        if cutoff is not None:
            # the oldest first, about FLUSH_ROWS at a time: a long stretch that became
            # writable at once goes out as several transactions, each in time order, and the
            # flush in flight stays small (its Kafka messages are held until it is written)
            oldest_first = pending.cutoff_freeing(self._settings.flush_rows)
            if oldest_first is not None:
                cutoff = min(cutoff, oldest_first)
        if cutoff is None:
            self._pending = Pending()
        else:
            pending, self._pending = pending.split(cutoff)
            log.debug("flush_holds_back", cutoff_us=cutoff, holds=self._pending.values)
        self._metrics.held_back.set(self._pending.values)
        if not pending.messages:
            return
        self._flushed_at = self._clock()
        if retry:
            future = self._writer.submit(self._write, pending, False)
            self._inflight = (pending, self._clock(), future)
            return
        try:
            outcome = self._write_guarded(pending, retry=False)
        except (SinkError, _Stopped):
            self._pending = pending  # nothing committed: keep it for the caller to decide
            raise
        self._complete(pending, self._clock(), outcome)

    def _finish_inflight(self, retry: bool = True) -> None:
        """Wait for the background write; retry it here if it failed; then store its offsets.

        A flush in flight is never forgotten: until it completes, no later flush is written
        or committed. If it cannot complete now (a revoke cannot wait out an outage, or the
        loop is stopping), its messages go back in front of the pending ones, uncommitted.
        """
        if self._inflight is None:
            return
        pending, started, future = self._inflight
        try:
            outcome = future.result()
        except SinkError:
            if not retry:
                self._inflight = None
                self._pending = Pending.concat(pending, self._pending)
                raise
            outcome = self._write_guarded(pending, retry=True)  # _Stopped leaves it in flight
        self._inflight = None
        self._complete(pending, started, outcome)

    def _write_guarded(self, pending: Pending, retry: bool) -> _Outcome:
        self._flushing = True
        try:
            return self._write(pending, retry)
        finally:
            self._flushing = False

    def _write(self, pending: Pending, retry: bool) -> _Outcome:
        """QuestDB, then the dead letters (decode failures and refused batches), then Redis."""
        batches = LazyBatches(self._codec, pending.batch_messages)
        rejections = self._retry(
            "questdb", lambda: self._sink.write(batches, pending.values), SinkError, retry
        )
        poisons = pending.poisons + [
            Poison(pending.batch_messages[r.index], "QuestDBRejected", r.reason, r.code)
            for r in rejections
        ]
        refused = frozenset(r.index for r in rejections)
        newest = [n for i, n in enumerate(pending.newest) if i not in refused]
        # A retry of this write (Redis was down, say) must not dead-letter the same messages
        # twice: the DLQ has no dedup keys. QuestDB's rows, by contrast, are simply upserted.
        fresh = [p for p in poisons if _key(p.message) not in pending.dead_lettered]
        if fresh:
            self._retry("dlq", lambda: self._dead_letter(fresh), SinkError, retry)
            pending.dead_lettered.update(_key(p.message) for p in fresh)
        self._retry("redis", lambda: self._cache.update(newest), SinkError, retry)
        return _Outcome(refused, len(poisons))

    def _complete(self, pending: Pending, started: float, outcome: _Outcome) -> None:
        """The flush is durable in QuestDB, the DLQ and Redis: store offsets, count it."""
        self._commit(pending.messages, pending.commit_limit)
        for i, (message, length) in enumerate(
            zip(pending.batch_messages, pending.lengths, strict=True)
        ):
            if i not in outcome.refused:
                self._metrics.batches.labels(message.topic()).inc()
                self._metrics.values.labels(message.topic()).inc(length)
                newest = pending.newest[i]
                if newest is not None and message.topic() == self._settings.topic_realtime:
                    self._metrics.wrote_realtime(newest.ts_us)
        self._metrics.flush_seconds.observe(self._clock() - started)
        self._metrics.last_flush.set(time.time())
        log.debug(
            "flushed",
            messages=len(pending.messages),
            values=pending.values,
            poisons=outcome.poisons,
        )

    def _dead_letter(self, poisons: Sequence[Poison]) -> None:
        for p in poisons:
            self._dlq.publish(p.message, p.error_type, p.reason, p.code)
        self._dlq.flush()
        for p in poisons:
            self._metrics.dead_letters.labels(p.error_type).inc()

    def _commit(
        self, messages: Sequence[Message | Written], limit: dict[tuple[str, int], int]
    ) -> None:
        """Store the next offset of every partition we still own, never past its ``limit``
        (a message carried to the next flush); the client commits them."""
        highest: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic() or "", m.partition() or 0)
            highest[key] = max(highest.get(key, -1), m.offset() or 0)
        offsets = [
            TopicPartition(
                topic, partition, min(offset + 1, limit.get((topic, partition), 1 << 62))
            )
            for (topic, partition), offset in highest.items()
            if (topic, partition) in self._assigned
        ]
        if not offsets:
            return
        try:
            self._consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # A rebalance took the partition first: its new owner re-reads these messages and
            # the dedup keys absorb the repeat. Nothing is lost.
            log.warning("store_offsets_failed", error=str(exc))

    # ------------------------------------------------------------ retries while a sink is down

    def _retry(
        self, sink: str, action: Callable[[], T], errors: type[Exception], retry: bool = True
    ) -> T:
        """Run ``action`` until it succeeds; between tries keep the group membership alive.

        While a sink is down every partition is paused so nothing new is fetched; the data
        already polled stays pending and uncommitted. Raises _Stopped if told to stop.
        """
        delay = 0.2
        paused_here: list[TopicPartition] = []
        try:
            while True:
                try:
                    result = action()
                except errors as exc:
                    if not getattr(exc, "retriable", True):
                        raise
                    self.sinks.failed(sink)
                    self._metrics.sink_errors.labels(sink).inc()
                    log.warning(
                        "sink_unavailable",
                        sink=sink,
                        error=str(exc)[:300],
                        retry_in_s=round(delay, 2) if retry else None,
                    )
                    if not retry:
                        raise
                    if not paused_here:
                        paused_here = [TopicPartition(t, p) for (t, p) in self._assigned]
                        if paused_here:
                            self._consumer.pause(paused_here)
                    self._idle(delay)
                    delay = min(delay * 2, self._settings.sink_retry_max_backoff_s) * (
                        0.8 + 0.4 * self._rng.random()
                    )
                else:
                    self.sinks.succeeded(sink)
                    return result
        finally:
            if paused_here:
                still_ours = [
                    tp for tp in paused_here if (tp.topic, tp.partition) in self._assigned
                ]
                resume = [tp for tp in still_ours if (tp.topic, tp.partition) not in self._paused]
                if resume:
                    self._consumer.resume(resume)

    def _idle(self, seconds: float) -> None:
        """Wait, serving rebalances and heartbeats, without consuming."""
        deadline = self._clock() + seconds
        while self._clock() < deadline:
            if self._stop.is_set():
                raise _Stopped
            self.heartbeat.beat()
            self._export_group_lag()
            message = self._consumer.poll(min(0.2, max(deadline - self._clock(), 0.0)))
            if message is not None and message.error() is None:
                # Fetched before the pause took effect: rewind so it is read again later.
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if topic is not None and partition is not None and offset is not None:
                    self._consumer.seek(TopicPartition(topic, partition, offset))

    def _export_group_lag(self) -> None:
        """The group's lag figures on /metrics, about once a second: from ``_steer``, and from
        ``_idle`` while a sink is down, when the lag grows and matters most."""
        now = self._clock()
        if self._partition_lag is None or not self._assigned or now - self._last_export < 1.0:
            return  # not joined yet: see GroupLagWatcher.all_lags
        self._last_export = now
        seconds, etas = self._time_lag() if self._time_lag is not None else ({}, {})
        self._metrics.show_lag(self._assigned, self._partition_lag(), seconds)
        self._metrics.show_group(self._settings.topic_realtime, seconds, etas)

    # ------------------------------------------------------------------ real-time first

    def _steer(self) -> None:
        """About once a second: export lag; pause backfill while real-time lags or the cap bites."""
        now = self._clock()
        if now - self._last_steer < 1.0:
            return
        self._last_steer = now
        s = self._settings
        assigned = [TopicPartition(t, p) for (t, p) in sorted(self._assigned)]
        realtime_lag = 0
        if assigned:
            for tp in self._consumer.position(assigned):
                if tp.offset == OFFSET_INVALID or tp.offset < 0:
                    continue
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                lag = max(high - tp.offset, 0) if high >= 0 else 0
                if tp.topic == s.topic_realtime:
                    realtime_lag += lag
        if self._group_lag is not None and assigned:  # joined: see GroupLagWatcher.lags
            # partitions other members own: their live values wait on the same QuestDB
            realtime_lag += sum(
                lag
                for partition, lag in self._group_lag().items()
                if (s.topic_realtime, partition) not in self._assigned
            )
        self._metrics.realtime_lag.set(realtime_lag)
        self._export_group_lag()
        threshold = s.realtime_lag_pause_threshold
        if threshold:
            if realtime_lag > threshold:
                self._backfill_lag_paused = True
            elif realtime_lag <= threshold // 2:
                self._backfill_lag_paused = False
        want_paused = self._backfill_lag_paused or self._backfill_cap.ready_in() > 0
        if want_paused and not self._holding:
            log.info(
                "backfill_paused",
                realtime_lag=realtime_lag,
                rate_capped=not self._backfill_lag_paused,
            )
        elif self._holding and not want_paused:
            log.info("backfill_resumed", realtime_lag=realtime_lag)
        self._holding = want_paused
        self._apply_pauses()
        self._metrics.backfill_paused.set(1 if self._holding else 0)

    def _backfill_assigned(self) -> frozenset[tuple[str, int]]:
        return frozenset((t, p) for (t, p) in self._assigned if t == self._settings.topic_backfill)

    def _apply_pauses(self) -> None:
        """Pause what should be paused now, resume the rest: every backfill partition while
        held (real-time first, the cap), else those the aligner says run ahead in time. The
        real-time partitions are never paused here."""
        backfill = self._backfill_assigned()
        held = backfill if self._holding else frozenset()
        aligned = (
            self._aligner.to_pause(self._clock(), held) & backfill
            if self._aligner is not None
            else frozenset()
        )
        want = held | aligned
        pause, resume = sorted(want - self._paused), sorted(self._paused - want)
        if pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in pause])
        if resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in resume])
        if pause or resume:
            log.debug("backfill_aligned", paused=len(want), held=bool(held))
        self._paused = set(want)

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        """Flush and commit what is pending within the shutdown budget, then leave the group."""
        budget_end = self._clock() + self._settings.shutdown_timeout_s
        self._stop.clear()
        timer = threading.Timer(max(budget_end - self._clock(), 0), self._stop.set)
        timer.daemon = True
        timer.start()
        try:
            self._flush(everything=True)  # finishes the write in flight, hands over the rest
            self._finish_inflight()
        except (_Stopped, SinkError) as exc:
            log.warning(
                "shutdown_flush_incomplete", error=str(exc), pending=len(self._pending.messages)
            )
        finally:
            timer.cancel()
            self._stop.set()
            self._writer.shutdown(wait=True)
            if self._settings.consumer_leave_group_on_stop:
                leave_group(self._consumer, holds_partitions=lambda: bool(self._assigned))
            self._consumer.close()
            log.info("consumer_closed")


def _key(message: Message) -> tuple[str, int, int]:
    return (message.topic() or "", message.partition() or 0, message.offset() or 0)


def _names(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
