"""One chunk's work: read, publish and checkpoint in one Kafka transaction, with retries.

If some points of a chunk fail, its transaction is aborted (a ``read_committed`` reader never
sees the half-read point), the points that read fine are redone at once in a transaction of
their own, and each failing point is retried alone with exponential backoff. What still fails
after ``CHUNK_RETRIES`` is recorded on the state topic with its error (``failed:`` records) and
the request goes on; a later run of the same range retries exactly those points.

**A window reaching into the future.** The moment of each read is taken from an injectable
wall clock *before* the first page is requested, and only ``[start, min(end, that moment))`` is
read and recorded as done (:func:`producer.state.checkpoints.recordable_end`): values the
historian records later inside the window are still pending, and a rerun reads them from where
the coverage ends (:meth:`producer.state.checkpoints.StateView.resume_from`). The chunk's
outcome is then *partial*, never completed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from producer.errors import (
    ChunkCancelled,
    FencedError,
    IncompleteRead,
    ProducerError,
    PublishError,
)
from producer.planning.planner import Chunk
from producer.sources.base import PointComplete, SourceItem, TimeWindow
from producer.sources.connectors import Connectors
from producer.state import checkpoints as cp
from producer.state.progress import RequestProgress, WallClock, iso, utc_now
from producer.worker.publisher import BackfillPublisher
from shared.batch import PointBatch, from_micros, to_micros
from shared.errors import HistfillError
from shared.ratelimit import ValueRateLimit
from shared.settings import ProducerSettings

log = structlog.get_logger(__name__)
Check = Callable[[], None]
Put = Callable[[str, dict[str, Any] | None], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Reach:
    """How far one dispatch of a chunk got: points committed to the chunk's end, and the
    earliest read moment a commit was cut at (``None``: no cut)."""

    end_us: int
    committed: int = 0
    cut_at: int | None = None

    def note(self, points: int, until: int) -> None:
        """A commit of ``points`` points that recorded up to ``until``."""
        if not points:
            return
        if until < self.end_us:
            self.cut_at = until if self.cut_at is None else min(self.cut_at, until)
        else:
            self.committed += points


class ChunkRunner:
    """Runs chunks against the shared sources, throttle and state view."""

    def __init__(
        self,
        settings: ProducerSettings,
        connectors: Connectors,
        view: cp.StateView,
        throttle: ValueRateLimit,
        put: Put,
        sleep: Sleep = asyncio.sleep,
        now: WallClock = utc_now,
    ) -> None:
        self.settings = settings
        self.connectors = connectors
        self.view = view
        self.throttle = throttle
        self._put = put
        self._sleep = sleep
        self._now = now
        self.apply_commits = True
        """Fold a committed checkpoint into :attr:`view` at once; a fleet member leaves that to
        its state tailer, which reads every member's checkpoints (its own included) once."""
        self.on_committed: Callable[[str, dict[int, int], int], None] | None = None
        """Told (request id, partition ends, values) of each committed transaction."""

    async def run(
        self,
        pub: BackfillPublisher,
        progress: RequestProgress,
        chunk: Chunk,
        pending: tuple[str, ...],
        check: Check,
    ) -> None:
        """Publish ``pending`` points of ``chunk``; record what still fails after retries.

        ``check`` raises :class:`ChunkCancelled` when the request was cancelled or paused or the
        service is stopping; it is called between pages.
        """
        retries = self.settings.chunk_retries
        work: deque[tuple[tuple[str, ...], int]] = deque([(pending, 0)])
        errors: list[dict[str, Any]] = []
        reach = _Reach(chunk.end_us)
        try:
            while work:
                points, attempts = work.popleft()
                if attempts:
                    await self._sleep(self.settings.retry_backoff_seconds * 2 ** (attempts - 1))
                check()
                try:
                    done, failed, until = await self._attempt(pub, progress, chunk, points, check)
                except (ChunkCancelled, FencedError):
                    raise
                except Exception as exc:  # noqa: BLE001  # any failure is recorded; the rest go on
                    failed = dict.fromkeys(points, await self._whole_attempt_failed(pub, exc))
                    done, until = (), chunk.end_us
                if done and failed:  # they read fine: redo them at once, in a transaction alone
                    work.appendleft((done, attempts))
                else:
                    reach.note(len(done), until)
                for point, error in failed.items():
                    if error.retriable and attempts < retries:
                        log.warning("chunk_retry", chunk=chunk.index, point=point, error=str(error))
                        work.append(((point,), attempts + 1))
                    else:
                        errors.append(_error(chunk, point, error, attempts + 1))
        except BaseException:  # requeued: what went to its end counts when the chunk finishes
            if reach.committed:
                earlier = progress.earlier_commits
                earlier[chunk.index] = earlier.get(chunk.index, 0) + reach.committed
            raise
        if errors:
            await self._record_failures(progress, chunk, errors)
        self._finish(progress, chunk, pending, errors, reach.cut_at)

    @staticmethod
    def _finish(
        progress: RequestProgress,
        chunk: Chunk,
        pending: tuple[str, ...],
        errors: list[dict[str, Any]],
        cut_at: int | None,
    ) -> None:
        """The chunk's outcome, per point and as a chunk."""
        present = len(chunk.points) - len(pending)  # already whole when this dispatch began
        mine = min(progress.earlier_commits.pop(chunk.index, 0), present)
        progress.chunk_finished(
            chunk.index, chunk.points, skipped=present - mine, errors=errors, cut_at_us=cut_at
        )
        if cut_at is not None:
            log.info(
                "chunk_cut_at_read_moment",
                request_id=progress.request.request_id,
                chunk=chunk.index,
                covered_until=iso(from_micros(cut_at)),
            )

    async def _whole_attempt_failed(self, pub: BackfillPublisher, exc: Exception) -> HistfillError:
        """The error every point of a failed transaction gets (after a producer restart, if the
        producer hit a fatal error)."""
        if isinstance(exc, PublishError) and not exc.retriable:
            await asyncio.to_thread(pub.restart)
            return PublishError(str(exc), retriable=True)
        if isinstance(exc, HistfillError):
            return exc
        wrapped = ProducerError(f"{type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        return wrapped

    async def _record_failures(
        self, progress: RequestProgress, chunk: Chunk, errors: list[dict[str, Any]]
    ) -> None:
        request_id = progress.request.request_id
        for error in errors:
            key = cp.failed_key(request_id, chunk.index, error["point"])
            await self._put(key, {"kind": "failed", "requestId": request_id, **error})
            self.view.failures[request_id][key.split(":", 2)[2]] = error
        log.warning("chunk_failed", request_id=request_id, chunk=chunk.index, points=len(errors))

    async def _attempt(
        self,
        pub: BackfillPublisher,
        progress: RequestProgress,
        chunk: Chunk,
        points: tuple[str, ...],
        check: Check,
    ) -> tuple[tuple[str, ...], dict[str, HistfillError], int]:
        """One transaction over ``points``: committed if every point read to its end; else
        aborted, returning which points completed and which failed, and where the read ended
        (the chunk's end, or the read moment if the chunk reaches past it)."""
        request = progress.request
        source = self.connectors.get(request.connector_type)
        # the read moment, before the first page: nothing after it can be recorded as done
        read_at = to_micros(self._now())
        begin = self.view.resume_from(request.connector_type, points, chunk.start_us, chunk.end_us)
        until = cp.recordable_end(begin, chunk.end_us, read_at)
        if until <= begin:  # the rest of the window lies in the future: nothing exists yet
            return points, {}, until
        window = TimeWindow.from_micros(begin, until)
        await asyncio.to_thread(pub.begin)
        try:
            done, failed, values, batches = await self._read_and_publish(
                pub, request.request_id, chunk, points, source.read(points, window), check
            )
            if failed:
                await asyncio.to_thread(pub.abort)
                return tuple(done), failed, until
            record = {
                "kind": "done",
                "requestId": request.request_id,
                "chunkIndex": chunk.index,
                "connector": request.connector_type,
                "points": done,
                "startUs": begin,
                "endUs": until,
                "cut": until < chunk.end_us,
                "values": values,
                "batches": batches,
                "committedAt": iso(self._now()),
            }
            stale = self.view.failures.get(request.request_id, {})
            tombstones = [
                cp.failed_key(request.request_id, chunk.index, p)
                for p in done
                if f"{chunk.index}:{p}" in stale
            ]
            key = cp.done_key(request.connector_type, begin, until, tuple(done))
            await asyncio.to_thread(_checkpoint_and_commit, pub, key, record, tombstones)
        except BaseException:
            await asyncio.to_thread(pub.abort)
            raise
        # only now, with the transaction committed, does this process count the chunk as done
        if self.apply_commits:
            self.view.apply_done(record)
        for tomb in tombstones:
            stale.pop(tomb.split(":", 2)[2], None)
        progress.chunk_committed(values, batches)
        if self.on_committed is not None:
            self.on_committed(request.request_id, pub.take_ends(), values)
        return tuple(done), {}, until

    async def _read_and_publish(
        self,
        pub: BackfillPublisher,
        request_id: str,
        chunk: Chunk,
        points: tuple[str, ...],
        reader: AsyncIterator[SourceItem],
        check: Check,
    ) -> tuple[list[str], dict[str, HistfillError], int, int]:
        """Stream the source's pages into the open transaction, one page in memory at a time."""
        done: list[str] = []
        failed: dict[str, HistfillError] = {}
        values = batches = 0
        try:
            async for item in reader:
                check()
                if isinstance(item, PointBatch):
                    if len(item):
                        await self.throttle.acquire(len(item))
                        n, v = await asyncio.to_thread(pub.publish, item, request_id, chunk.index)
                        batches, values = batches + n, values + v
                elif isinstance(item, PointComplete):
                    done.append(item.source_address)
                else:
                    failed[item.source_address] = item.error
        finally:
            closer = getattr(reader, "aclose", None)
            if closer is not None:
                await closer()
        missing = [p for p in points if p not in done and p not in failed]
        for point in missing:  # the Source contract says this cannot happen: do not trust it
            failed[point] = IncompleteRead(f"the source ended without an outcome for {point}")
        return done, failed, values, batches


def _checkpoint_and_commit(
    pub: BackfillPublisher, key: str, record: dict[str, Any], tombstones: list[str]
) -> None:
    pub.checkpoint(key, cp.encode(record))
    for tomb in tombstones:
        pub.checkpoint(tomb, None)
    pub.commit()


def _error(chunk: Chunk, point: str, error: Exception, attempts: int) -> dict[str, Any]:
    return {
        "chunkIndex": chunk.index,
        "point": point,
        "startTime": iso(from_micros(chunk.start_us)),
        "endTime": iso(from_micros(chunk.end_us)),
        "error": str(error),
        "attempts": attempts,
    }
