"""The trailing re-pull: live points re-read over a recent window, and what differs published.

Live mode publishes current values; it never sees what a historian receives late (an interface
that buffered through an outage delivers hours of old timestamps) or changes afterwards (an
operator's edit, a lab value entered later). Every ``REPULL_INTERVAL_SECONDS`` this re-reads
``LIVE_POINTS`` of ``LIVE_CONNECTOR`` over ``[now - REPULL_WINDOW, now - REPULL_LAG_SECONDS)``
from the recorded-values API (PI: ``streamsets/recorded``, through the shared source and its
rate budget), reads QuestDB's rows of the same points and window (one query per batch of
points), and publishes only the differences (:mod:`producer.upkeep.diff`).

Exactly once, as the backfill: the differences go to the backfill topic as ordinary batches in
one Kafka transaction, together with the run's changes report records
(:mod:`producer.upkeep.changes`); the consumer's upsert on ``(ts, source_address)`` makes a
changed value replace the old row, and Redis's newer-wins rule keeps a newer latest value when
an older one is edited. A run that finds nothing publishes nothing (no transaction at all).

A run must not compare against a QuestDB that has not taken the previous run's values yet (it
would publish and count them twice), so a run starts only once the consumer group committed
past the previous run's messages *and* QuestDB applied the WAL transactions up to then (WAL
tables make rows visible asynchronously); until then runs are skipped, and the next one reaches
back to the end of the last run that ran ("since the last run": missed runs leave no hole).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import structlog
from confluent_kafka.admin import AdminClient
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from producer.errors import FencedError
from producer.planning.planner import ChunkSizeError, parse_chunk_size
from producer.sources.base import PointFailure, TimeWindow
from producer.sources.connectors import Connectors
from producer.state.ingested import GroupOffsets, reached
from producer.upkeep.changes import HourChange, change_records
from producer.upkeep.diff import PointDiff, Rows, diff_point, no_rows
from producer.upkeep.qdb_rows import QuestDBRows
from producer.worker.publisher import BackfillPublisher
from shared.batch import PointBatch, from_micros
from shared.codec import BatchCodec
from shared.errors import ConfigError, HistfillError
from shared.kafka import base_config
from shared.settings import ProducerSettings

log = structlog.get_logger(__name__)

REQUEST_ID = "repull"
"""The ``request_id`` of re-pulled rows in QuestDB: one symbol for every run."""
BATCH_POINTS = 200
"""Points read from the source and QuestDB together: one QuestDB query each."""
CONCURRENT_BATCHES = 4
CATCH_UP_WINDOWS = 12
"""After missed runs a run reaches back at most this many windows (2 h: a day)."""


class RepullPublisher(BackfillPublisher):
    """The backfill's transactional publisher, also writing the changes report's records."""

    def put(self, topic: str, key: str, value: bytes) -> None:
        """Produce one record to ``topic`` inside the open transaction."""
        self._produce(topic, key.encode(), value)


@dataclass
class RunResult:
    """What one run did (``skipped``: why it did not run)."""

    run_id: str
    start_us: int = 0
    end_us: int = 0
    points: int = 0
    failed_points: list[str] = field(default_factory=list)
    values_read: int = 0
    added: int = 0
    changed: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    changes: list[HourChange] = field(default_factory=list)

    @property
    def published(self) -> int:
        """Values published: every added or changed one."""
        return self.added + self.changed

    def as_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "start": from_micros(self.start_us).isoformat() if self.start_us else None,
            "end": from_micros(self.end_us).isoformat() if self.end_us else None,
            "points": self.points,
            "failedPoints": self.failed_points,
            "valuesRead": self.values_read,
            "added": self.added,
            "changed": self.changed,
            "published": self.published,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
        }


def repull_window(settings: ProducerSettings) -> timedelta:
    """``REPULL_WINDOW`` parsed; a bad one is a ConfigError naming the variable."""
    try:
        return parse_chunk_size(settings.repull_window)
    except ChunkSizeError as exc:
        raise ConfigError(f"REPULL_WINDOW: {exc}") from exc


def check_settings(settings: ProducerSettings) -> None:
    """Refuse at start a re-pull that cannot run (named variables)."""
    repull_window(settings)
    if settings.repull_enabled and (settings.live_connector is None or not live_points(settings)):
        raise ConfigError("REPULL_ENABLED needs LIVE_CONNECTOR and LIVE_POINTS (what it re-reads)")


def live_points(settings: ProducerSettings) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in settings.live_points.split(",") if p.strip()))


def next_window(
    now_us: int, lag_us: int, window_us: int, last_end_us: int | None
) -> tuple[int, int]:
    """``[start, end)`` of a run: the trailing window ending ``lag_us`` before now, reaching
    back to the previous run's end when that is older (runs were skipped or the timer stalled:
    nothing between two runs goes unread), at most ``CATCH_UP_WINDOWS`` windows back."""
    end_us = now_us - lag_us
    start_us = end_us - window_us
    if last_end_us is not None:
        # a longer outage is a hole for the repair scheduler, not one huge transaction here
        start_us = min(start_us, max(last_end_us, end_us - CATCH_UP_WINDOWS * window_us))
    return start_us, end_us


def _concat(batches: list[PointBatch]) -> Rows:
    if len(batches) == 1:
        b = batches[0]
        return Rows(b.timestamps_us, b.values, b.quality, b.texts)
    texts: list[str] | None = None
    if any(b.texts is not None for b in batches):
        texts = []
        for b in batches:
            texts.extend(b.texts if b.texts is not None else [""] * len(b))
    return Rows(
        np.concatenate([b.timestamps_us for b in batches]),
        np.concatenate([b.values for b in batches]),
        np.concatenate([b.quality for b in batches]),
        texts,
    )


class Repull:
    """Runs the trailing re-pull on a timer (:meth:`start`) or once (:meth:`run_once`)."""

    def __init__(
        self,
        settings: ProducerSettings,
        connectors: Connectors,
        codec: BatchCodec,
        *,
        clock: Callable[[], float] = time.time,
        points: Sequence[str] | None = None,
    ) -> None:
        check_settings(settings)
        if settings.live_connector is None:
            raise ConfigError("REPULL_ENABLED needs LIVE_CONNECTOR")
        self.settings = settings
        self.connector: str = settings.live_connector
        self.points = list(points) if points is not None else live_points(settings)
        self.window_us = int(repull_window(settings).total_seconds() * 1_000_000)
        self.lag_us = int(settings.repull_lag_seconds * 1_000_000)
        self._connectors = connectors
        self._codec = codec
        self._clock = clock
        self._rows = QuestDBRows(settings)
        self._publisher: RepullPublisher | None = None
        self._offsets: GroupOffsets | None = None
        self._last_end_us: int | None = None
        self._waiting_ends: dict[int, int] = {}  # the previous run's messages, per partition
        self._waiting_wal: int | None = None  # QuestDB sequencer txn to be applied
        self._task: asyncio.Task[None] | None = None
        self.last: RunResult | None = None
        self.runs: Counter[str] = Counter()  # by outcome: done, skipped, failed
        self.added_total = 0
        self.changed_total = 0

    # -- the gate: the previous run's values are visible in QuestDB ---------------------------

    def _previous_visible(self) -> str | None:
        """``None`` when the previous run's values are queryable in QuestDB, else why not."""
        if self._waiting_ends:
            if self._offsets is None:
                admin = AdminClient(base_config(self.settings))
                self._offsets = GroupOffsets(
                    admin, self.settings.consumer_group_id, self.settings.topic_backfill
                )
            read = self._offsets.read()
            if read is None or not reached(self._waiting_ends, read[0]):
                return "the consumer has not committed the previous run's values yet"
            self._waiting_ends = {}
            txns = self._rows.wal_pending()
            self._waiting_wal = None if txns is None else txns[1]
        if self._waiting_wal is not None:
            txns = self._rows.wal_pending()
            if txns is not None and txns[0] < self._waiting_wal:
                return "QuestDB has not applied the previous run's values yet"
            self._waiting_wal = None
        return None

    # -- one run ------------------------------------------------------------------------------

    async def run_once(self) -> RunResult:
        """Re-read the window, publish what differs; the run's result (skipped: not run)."""
        started = time.monotonic()
        result = RunResult(uuid.uuid4().hex[:12], points=len(self.points))
        waiting = await asyncio.to_thread(self._previous_visible)
        if waiting is not None:
            result.skipped = waiting
            log.info("repull_skipped", reason=waiting)
            self.last = result
            self.runs["skipped"] += 1
            return result
        now_us = int(self._clock() * 1_000_000)
        start_us, end_us = next_window(now_us, self.lag_us, self.window_us, self._last_end_us)
        result.start_us, result.end_us = start_us, end_us
        window = TimeWindow.from_micros(start_us, end_us)
        gate = asyncio.Semaphore(CONCURRENT_BATCHES)
        groups = [
            self.points[i : i + BATCH_POINTS] for i in range(0, len(self.points), BATCH_POINTS)
        ]

        async def one(group: list[str]) -> list[tuple[str, str | None, PointDiff]]:
            async with gate:
                return await self._diff_group(group, window, result)

        diffs = [d for found in await asyncio.gather(*(one(g) for g in groups)) for d in found]
        batches: list[PointBatch] = []
        for point, unit, diff in diffs:
            if len(diff.rows) == 0:
                continue
            result.added += diff.added_count
            result.changed += diff.changed_count
            result.changes.extend(HourChange(point, *hour) for hour in diff.hours())
            rows = diff.rows
            batches.append(
                PointBatch.from_columns(
                    point,
                    self.connector,
                    rows.timestamps_us,
                    rows.values,
                    rows.quality,
                    None if rows.texts is None else tuple(rows.texts),
                    unit=unit,
                )
            )
        if batches:
            await asyncio.to_thread(self._publish, batches, result)
        self._last_end_us = end_us
        result.seconds = time.monotonic() - started
        log.info("repull_done", **{k: v for k, v in result.as_dict().items() if k != "runId"})
        self.last = result
        self.runs["done"] += 1
        self.added_total += result.added
        self.changed_total += result.changed
        return result

    async def _diff_group(
        self, group: list[str], window: TimeWindow, result: RunResult
    ) -> list[tuple[str, str | None, PointDiff]]:
        source: Any = self._connectors.get(self.connector)
        read = asyncio.create_task(
            asyncio.to_thread(self._rows.read, group, window.start_us, window.end_us)
        )
        pages: dict[str, list[PointBatch]] = {p: [] for p in group}
        failed: set[str] = set()
        try:
            async for item in source.read(group, window):
                if isinstance(item, PointBatch):
                    if len(item):
                        pages.setdefault(item.source_address, []).append(item)
                elif isinstance(item, PointFailure):
                    failed.add(item.source_address)
                    log.warning(
                        "repull_point_failed", point=item.source_address, error=str(item.error)
                    )
        finally:
            in_questdb = await read
        out: list[tuple[str, str | None, PointDiff]] = []
        for point in group:
            if point in failed:
                result.failed_points.append(point)
                continue  # never publish a partial read: the next run reads it again
            got = pages.get(point) or []
            result.values_read += sum(len(b) for b in got)
            source_rows = _concat(got) if got else no_rows()
            unit = next((b.unit for b in got if b.unit), None)
            out.append((point, unit, diff_point(source_rows, in_questdb[point])))
        return out

    def _publish(self, batches: list[PointBatch], result: RunResult) -> None:
        """One transaction: the differences to the backfill topic and the run's report records
        to the changes topic; committed together or (on any failure) neither."""
        publisher = self._publisher
        if publisher is None:
            publisher = RepullPublisher(
                self.settings,
                0,
                self._codec,
                txn_id=f"histfill.{self.settings.topic_state}.repull",
                max_in_flight=self.settings.max_batches_in_flight,
            )
            publisher.start()
            self._publisher = publisher
        records = change_records(
            "repull",
            result.run_id,
            datetime.now(UTC),  # when the change was seen: the report's time, as Kafka's
            (result.start_us, result.end_us),
            result.changes,
        )
        try:
            publisher.begin()
            for batch in batches:
                publisher.publish(batch, REQUEST_ID, 0)
            for key, value in records:
                publisher.put(self.settings.topic_changes, key, value)
            publisher.commit()
        except FencedError:
            # another producer took the re-pull's transactional id (REPULL_ENABLED on two
            # producers): this one starts afresh next time, fencing it back, and says so
            log.warning("repull_fenced", hint="enable the re-pull on one producer only")
            publisher.close()
            self._publisher = None
            raise
        except HistfillError:
            publisher.abort()
            raise
        self._waiting_ends = publisher.take_ends()

    # -- the timer ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every ``REPULL_INTERVAL_SECONDS`` until cancelled; a failed run is logged and the
        next one covers its window."""
        log.info(
            "repull_started",
            connector=self.connector,
            points=len(self.points),
            interval_s=self.settings.repull_interval_seconds,
            window_s=self.window_us / 1e6,
        )
        while True:
            try:
                await self.run_once()
            except HistfillError as exc:
                self.runs["failed"] += 1
                log.warning("repull_failed", error=str(exc))
            await asyncio.sleep(self.settings.repull_interval_seconds)

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self.run(), name="repull")

    async def stop(self) -> None:
        """Stop the timer; an open transaction is aborted (the next start redoes the run)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)
        if self._offsets is not None:
            self._offsets.close()
        self._rows.close()

    # -- metrics ------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        """``histfill_repull_runs_total{outcome}`` (done, skipped: the previous run not yet in
        QuestDB, failed), ``histfill_repull_values_total{change}`` (added, changed),
        ``histfill_repull_last_run_seconds`` and ``histfill_repull_covered_until_seconds``
        (the end of the last window re-read, Unix seconds: an alert sees a re-pull that stopped
        moving)."""
        runs = CounterMetricFamily(
            "histfill_repull_runs", "Trailing re-pull runs of this process.", labels=["outcome"]
        )
        for outcome in ("done", "skipped", "failed"):
            runs.add_metric([outcome], self.runs[outcome])
        values = CounterMetricFamily(
            "histfill_repull_values",
            "Values the re-pull published: added (new timestamps) and changed (edits).",
            labels=["change"],
        )
        values.add_metric(["added"], self.added_total)
        values.add_metric(["changed"], self.changed_total)
        last = GaugeMetricFamily(
            "histfill_repull_last_run_seconds", "How long the last re-pull run that ran took."
        )
        done = self.last if self.last is not None and self.last.skipped is None else None
        last.add_metric([], done.seconds if done is not None else 0.0)
        until = GaugeMetricFamily(
            "histfill_repull_covered_until_seconds",
            "End of the last window the re-pull re-read (Unix seconds); 0 before the first run.",
        )
        until.add_metric([], (self._last_end_us or 0) / 1e6)
        yield runs
        yield values
        yield last
        yield until
