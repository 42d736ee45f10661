"""The backfill orchestrator: a queue of requests, a pool of workers, one transaction per chunk.

Start (:meth:`Orchestrator.start`): fence every worker's transactional id (aborting what a
crashed predecessor left open), read the state topic to its end, and put back every unfinished
request; its chunks already checkpointed are found done and skipped, so it resumes at the first
chunk not committed.

Dispatch is time-major (see :mod:`producer.planning.planner`): requests in the order they were
queued, and within a request chunk ``k`` of every point group before chunk ``k + 1``. A chunk whose
points already hold its window (this request's earlier run, or any earlier request over the same
range) is skipped without reading anything: re-running a finished range publishes nothing.

Each worker owns a transactional producer and runs one chunk at a time through
:class:`~producer.worker.chunks.ChunkRunner`: read, publish and checkpoint in one transaction, with
per-point retries. Cancel and pause take effect between pages (the open transaction is aborted);
stopping the service does the same, and the next start redoes those chunks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from confluent_kafka.admin import AdminClient

from producer.api.status import retry_body, status_payload
from producer.errors import (
    ChunkCancelled,
    FencedError,
    PublishError,
    UnknownRequest,
)
from producer.planning.planner import Chunk, Plan
from producer.planning.requests import Limits, StartBody, estimate, validate
from producer.sources.connectors import Connectors
from producer.state import checkpoints as cp
from producer.state.ingested import GroupOffsets, IngestTracker, IngestWatch
from producer.state.progress import (
    BackfillRequest,
    RequestProgress,
    Status,
    WallClock,
    iso,
    utc_now,
)
from producer.state.reader import read_state
from producer.state.restore import restore_outcomes
from producer.worker.chunks import ChunkRunner
from producer.worker.publisher import BackfillPublisher, PlainPublisher, fence
from shared.batch import from_micros
from shared.codec import BatchCodec
from shared.errors import HistfillError
from shared.kafka import base_config
from shared.kafka_peek import Peeker
from shared.ratelimit import ValueRateLimit
from shared.settings import ProducerSettings

log = structlog.get_logger(__name__)
Sleep = Callable[[float], Awaitable[None]]
SKIPS_PER_DISPATCH = 1000
"""Chunks skipped in one go before the loop yields (a re-run of a long range skips many)."""
ASSUMED_VALUES_PER_SECOND = 1_000_000.0
"""Throughput a dry run assumes before this process measured one (bench/producer.py: ~2M/s)."""


@dataclass
class _Entry:
    """A request in the queue: its progress, its plan and what of it is being worked on."""

    progress: RequestProgress
    plan: Plan
    next_index: int = 0
    requeued: deque[int] = field(default_factory=deque)
    in_flight: set[int] = field(default_factory=set)

    @property
    def dispatched_all(self) -> bool:
        return self.next_index >= self.plan.total_chunks and not self.requeued


class Orchestrator:
    """Owns the request queue, the workers and the state; the API and CLI only call into it."""

    def __init__(
        self,
        settings: ProducerSettings,
        connectors: Connectors,
        codec: BatchCodec | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: WallClock = utc_now,
    ) -> None:
        self.settings = settings
        self.connectors = connectors
        self.codec = codec or BatchCodec()
        self.limits = Limits.from_settings(settings)
        self.throttle = ValueRateLimit(settings.publish_max_values_per_second, sleep=sleep)
        self.view = cp.StateView()
        self.entries: dict[str, _Entry] = {}
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._wake = asyncio.Event()
        self._state_lock = asyncio.Lock()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # state writes not awaited inline
        self._control: PlainPublisher | None = None
        self.ingest = IngestTracker()  # how much of each request is in QuestDB
        self.fenced_workers = 0  # workers stopped because a newer producer took their id
        self._runner = self._chunk_runner()
        self.started = False

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Fence, rebuild state, resume unfinished requests and start the workers."""
        workers = self.settings.backfill_workers
        self._control = PlainPublisher(self.settings, self.codec)
        await asyncio.to_thread(fence, self.settings, workers)
        self.view = await asyncio.to_thread(read_state, self.settings)
        if self.view.max_workers > workers:  # a predecessor ran more workers: fence theirs too
            await asyncio.to_thread(fence, self.settings, self.view.max_workers)
            self.view = await asyncio.to_thread(read_state, self.settings)
        if workers > self.view.max_workers:
            await self._put(cp.META_WORKERS_KEY, {"kind": "meta", "maxWorkers": workers})
        self._restore()
        for entry in self.entries.values():  # published before this process: see ingested.py
            self.ingest.adopt(entry.progress.request.request_id, entry.progress.values_published)
        self._runner = self._chunk_runner()
        self._tasks = [
            asyncio.create_task(self._worker(w), name=f"backfill-worker-{w}")
            for w in range(workers)
        ]
        offsets = GroupOffsets(
            AdminClient(base_config(self.settings)),
            self.settings.consumer_group_id,
            self.settings.topic_backfill,
            peeker=Peeker(base_config(self.settings)),
        )
        watch = IngestWatch(self.ingest, offsets)
        self._tasks.append(
            asyncio.create_task(watch.run(lambda: self._stopping), name="ingest-watch")
        )
        self.started = True
        log.info("orchestrator_started", workers=workers, requests=len(self.entries))

    def _chunk_runner(self) -> ChunkRunner:
        runner = ChunkRunner(
            self.settings,
            self.connectors,
            self.view,
            self.throttle,
            self._put,
            self._sleep,
            self._now,
        )
        runner.on_committed = self.ingest.note
        return runner

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop dispatching, abort open chunks (they are redone at the next start), close."""
        self._stopping = True
        self._wake.set()
        tasks = [*self._tasks, *self._background]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._control is not None:
            await asyncio.to_thread(self._control.close)
        await self.connectors.aclose()
        self.started = False

    def _restore(self) -> None:
        records = sorted(self.view.requests.values(), key=lambda r: str(r.get("queuedAt")))
        for record in records:
            entry = self._entry_from_record(record)
            status = Status(record["status"])
            progress = entry.progress
            progress.status = status if status.final or status is Status.PAUSED else Status.QUEUED
            if not status.final:
                log.info("request_resumed", request_id=progress.request.request_id, status=status)
            self.entries[progress.request.request_id] = entry

    def _entry_from_record(self, record: dict[str, Any], status: Status | None = None) -> _Entry:
        """A request's entry as the state view tells it (``status``: as if it were that)."""
        request = BackfillRequest.from_record(record)
        status = status or Status(record["status"])
        entry = self._entry(request)
        progress = entry.progress
        restore_outcomes(progress, entry.plan, self.view, status)
        tally = self.view.tallies[request.request_id]
        progress.values_published, progress.batches_published = tally.values, tally.batches
        progress.started_at = _parse_time(record.get("startedAt"))
        progress.finished_at = _parse_time(record.get("finishedAt"))
        progress.errors = list(record.get("errors", []))
        progress.error_count = int(record.get("errorCount", 0))
        progress.message = record.get("message")
        progress.status = status
        if status.final:
            progress.restore_elapsed(float(record.get("elapsedSeconds") or 0.0))
        return entry

    async def sync(self, request_id: str) -> None:
        """Make sure a request another process just accepted is known here (a fleet member
        catches up with the state topic; one process knows all it accepted)."""

    def extra_metrics(self) -> list[Any]:
        """Prometheus metric families beyond the per-request ones (a fleet member's)."""
        return []

    def refresh(self) -> None:
        """Bring :attr:`entries` up to date before a read (a fleet member rebuilds them)."""

    def _entry(self, request: BackfillRequest) -> _Entry:
        plan = request.plan()
        return _Entry(RequestProgress(request, plan.total_chunks, clock=self._clock), plan)

    # -- requests -------------------------------------------------------------------------------

    async def submit(self, body: StartBody, origin: str = "user") -> RequestProgress:
        """Validate, persist and queue a request; it is durable when this returns. ``origin``
        ``repair`` marks a hole repair's request: dispatched after every user request."""
        request = validate(body, self.limits, self.connectors.unavailable())
        if origin != "user":
            request = dataclasses.replace(request, origin=origin)
        entry = self._entry(request)
        await self._save(entry)
        self.entries[request.request_id] = entry
        self._wake.set()
        log.info(
            "request_queued",
            request_id=request.request_id,
            connector=request.connector_type,
            points=len(request.points),
            chunks=entry.plan.total_chunks,
        )
        return entry.progress

    def estimate(self, body: StartBody) -> dict[str, Any]:
        """A dry run: what the request would cost, and how much of it is already done."""
        request = validate(body, self.limits, self.connectors.unavailable())
        start, end = from_micros(request.start_us), from_micros(request.end_us)
        counts = [
            self.connectors.exact_count(request.connector_type, p, start, end)
            for p in request.points
        ]
        exact = all(c is not None for c in counts)
        seconds = (request.end_us - request.start_us) / 1e6
        values = (
            sum(c or 0 for c in counts)
            if exact
            else round(len(request.points) * seconds * self.limits.values_per_second)
        )
        rate = max((e.progress.rate for e in self.entries.values()), default=0.0)
        rate = rate or ASSUMED_VALUES_PER_SECOND
        if self.throttle.rate:
            rate = min(rate, self.throttle.rate)
        answer = estimate(request, values, exact=exact, values_per_second=rate)
        answer["chunksAlreadyDone"] = sum(
            1
            for c in request.plan()
            if not self.view.pending_points(request.connector_type, c.points, c.start_us, c.end_us)
        )
        return answer

    def get(self, request_id: str) -> RequestProgress:
        """A request's progress (``UnknownRequest`` if there is none)."""
        entry = self.entries.get(request_id)
        if entry is None:
            raise UnknownRequest(f"no backfill request {request_id}")
        return entry.progress

    async def cancel(self, request_id: str) -> RequestProgress:
        """Stop a request for good; its open chunk is aborted, its committed chunks stay."""
        entry = self.entries.get(request_id)
        if entry is None:
            raise UnknownRequest(f"no backfill request {request_id}")
        if not entry.progress.status.final:
            entry.progress.finish(Status.CANCELLED, "cancelled by request", now=self._now)
            await self._save(entry)
        return entry.progress

    async def pause(self, request_id: str) -> RequestProgress:
        """Hold a request: chunks in flight are aborted and requeued, nothing new starts."""
        progress = self.get(request_id)
        if progress.status in (Status.QUEUED, Status.RUNNING):
            progress.status = Status.PAUSED
            await self._save(self.entries[request_id])
        return progress

    async def resume(self, request_id: str) -> RequestProgress:
        """Let a paused request go on."""
        progress = self.get(request_id)
        if progress.status is Status.PAUSED:
            progress.status = Status.QUEUED
            await self._save(self.entries[request_id])
            self._wake.set()
        return progress

    async def retry(self, request_id: str) -> RequestProgress:
        """Queue a new request over the original window with only the points that failed (all
        of them if the window was cut at the read moment); chunks already checkpointed are
        skipped as in any rerun. ``RequestRejected`` (409) if there is nothing to retry."""
        await self.sync(request_id)
        retried = await self.submit(retry_body(self.get(request_id)))
        log.info("request_retried", request_id=request_id, retry=retried.request.request_id)
        return retried

    def status(self, include_finished: bool = False) -> dict[str, Any]:
        """The seed's ``/api/backfill/status`` payload plus ``recentRequests`` (see
        :func:`producer.api.status.status_payload`)."""
        return status_payload(
            [e.progress for e in self.entries.values()],
            self._now(),
            workers=self.settings.backfill_workers,
            include_finished=include_finished,
        )

    # -- state ----------------------------------------------------------------------------------

    async def _put(self, key: str, record: dict[str, Any] | None) -> None:
        """Write a state record durably; one at a time, in call order."""
        value = None if record is None else cp.encode(record)
        await self.put_record(self.settings.topic_state, key, value)

    async def put_record(self, topic: str, key: str, value: bytes | None) -> None:
        """Write one keyed record to ``topic`` durably (the state topic, the changes report)."""
        assert self._control is not None, "start() the orchestrator first"  # noqa: S101
        async with self._state_lock:
            await asyncio.to_thread(self._control.put, topic, key, value)

    async def _save(self, entry: _Entry) -> None:
        p = entry.progress
        record = p.request.to_record(
            p.status,
            startedAt=iso(p.started_at),
            finishedAt=iso(p.finished_at),
            errors=p.errors[:20],
            errorCount=p.error_count,
            message=p.message,
            elapsedSeconds=round(p.elapsed_s, 3),
            coveredUntil=iso(
                None if p.covered_until_us is None else from_micros(p.covered_until_us)
            ),
        )
        await self._put(cp.request_key(p.request.request_id), record)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except HistfillError as exc:
                log.error("state_write_failed", error=str(exc))

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- dispatch -------------------------------------------------------------------------------

    def _next_chunk(self) -> tuple[_Entry, Chunk, tuple[str, ...]] | None:
        skipped = 0
        # user requests first, then repairs (sorted() is stable: queue order within each)
        ordered = sorted(self.entries.values(), key=lambda e: e.progress.request.origin != "user")
        for entry in ordered:
            p = entry.progress
            if p.status not in (Status.QUEUED, Status.RUNNING):
                continue
            if p.status is Status.QUEUED:
                p.start_run()
                self._spawn(self._save(entry))
            while not entry.dispatched_all:
                if entry.requeued:
                    index = entry.requeued.popleft()
                else:
                    index = entry.next_index
                    entry.next_index += 1
                if index in p.completed:
                    continue
                chunk = entry.plan.chunk(index)
                pending = self.view.pending_points(
                    p.request.connector_type, chunk.points, chunk.start_us, chunk.end_us
                )
                if not pending:
                    p.chunk_skipped(index, chunk.points)
                    skipped += 1
                    if skipped >= SKIPS_PER_DISPATCH:  # let the API answer between long skips
                        self._wake.set()
                        return None
                    continue
                entry.in_flight.add(index)
                return entry, chunk, pending
            self._maybe_finish(entry)
        return None

    def _maybe_finish(self, entry: _Entry) -> None:
        p = entry.progress
        if p.status is Status.RUNNING and entry.dispatched_all and not entry.in_flight:
            p.finish(p.final_status(), now=self._now)
            log.info(
                "request_finished",
                request_id=p.request.request_id,
                status=p.status.value,
                values=p.values_published,
                skipped=p.skipped_chunks,
                failed=len(p.failed),
                failed_points=len(p.points.failed_points),
                covered_until=iso(
                    None if p.covered_until_us is None else from_micros(p.covered_until_us)
                ),
            )
            self._spawn(self._save(entry))

    def _check_active(self, entry: _Entry) -> None:
        if self._stopping or entry.progress.status in (Status.CANCELLED, Status.PAUSED):
            raise ChunkCancelled(entry.progress.status.value)

    async def _worker(self, worker: int) -> None:
        publisher = BackfillPublisher(
            self.settings,
            worker,
            self.codec,
            workers=self.settings.backfill_workers,
            max_in_flight=self.settings.max_batches_in_flight,
        )
        await asyncio.to_thread(publisher.start)
        try:
            while not self._stopping:
                self._wake.clear()
                job = self._next_chunk()
                if job is None:
                    await self._wake.wait()
                    continue
                entry, chunk, pending = job
                requeue = False
                try:
                    await self._runner.run(
                        publisher,
                        entry.progress,
                        chunk,
                        pending,
                        functools.partial(self._check_active, entry),
                    )
                except ChunkCancelled:
                    requeue = entry.progress.status is Status.PAUSED
                except FencedError:
                    requeue = True  # not done: whoever runs next redoes it
                    raise
                except Exception as exc:  # a worker must not die with its chunk
                    # e.g. a Kafka blip while recording failures, or a publisher restart that
                    # failed: the chunk is not done, so it goes back in the queue, and the
                    # transactional publisher is rebuilt before the next one.
                    log.exception("chunk_crashed", worker=worker, chunk=chunk.index, error=str(exc))
                    requeue = True
                    await asyncio.sleep(self.settings.retry_backoff_seconds)
                    try:
                        await asyncio.to_thread(publisher.restart)
                    except PublishError as restart_error:  # FencedError goes on up, as above
                        if isinstance(restart_error, FencedError):
                            raise
                        log.error(
                            "publisher_restart_failed", worker=worker, error=str(restart_error)
                        )
                finally:
                    # Requeued only now, once this worker is done with it: a chunk is never in
                    # the queue and in flight at once, so another worker that takes it up is
                    # not counted out by this one's bookkeeping (which let a request finish
                    # while its last chunk was still being redone).
                    entry.in_flight.discard(chunk.index)
                    if requeue:
                        entry.requeued.append(chunk.index)
                    self._maybe_finish(entry)
                    self._wake.set()
        except FencedError as exc:
            self.fenced_workers += 1
            log.error("worker_fenced", worker=worker, error=str(exc))
        finally:
            await asyncio.to_thread(publisher.close)


def _parse_time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None
