"""Progress of backfill requests: one tracker per request, read by the API, /metrics and the CLI.

Counts are rebuilt from the state topic after a restart (chunk and point-chunk outcomes, failed
points, values and batches published, how far a window reaching into the future was recorded);
rate and ETA are measured in this process only, from an injectable clock, so a resumed request
does not report the dead process's pace.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from producer.planning.planner import Plan
from producer.state.outcomes import PointChunkTally
from shared.batch import from_micros

Clock = Callable[[], float]
WallClock = Callable[[], datetime]
MAX_ERRORS_KEPT = 100


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


class Status(enum.StrEnum):
    """A request's life: Queued -> Running (<-> Paused) -> one of the final states.

    ``Partial``: every point read fine, but the window reached past the moment it was read, so
    only the part before that moment is recorded (``coveredUntil``); run it again after
    ``endTime`` to fill the rest. ``CompletedWithErrors``: some points failed (``failedPoints``),
    the others were published; ``Failed``: nothing could be published.
    """

    QUEUED = "Queued"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"
    PARTIAL = "Partial"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        """Whether nothing more will happen to the request."""
        return self in _FINAL


_FINAL = {
    Status.COMPLETED,
    Status.COMPLETED_WITH_ERRORS,
    Status.PARTIAL,
    Status.FAILED,
    Status.CANCELLED,
}


def iso(moment: datetime | None) -> str | None:
    """``2026-01-10T00:00:00Z`` (the seed's spelling), or ``None``."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A validated request: what was asked, and the plan parameters fixed at submission."""

    request_id: str
    connector_type: str
    points: tuple[str, ...]
    start_us: int
    end_us: int
    chunk_size: str
    chunk_us: int
    step_us: int
    group_size: int
    queued_at: datetime
    origin: str = "user"
    """``user`` (the API) or ``repair`` (the hole repair, :mod:`producer.upkeep.repair`): a
    user request's chunks are dispatched first when both wait."""

    def plan(self) -> Plan:
        """The request's chunk grid, the same at every restart (step and groups are stored)."""
        groups = tuple(
            self.points[i : i + self.group_size]
            for i in range(0, len(self.points), self.group_size)
        )
        return Plan(self.start_us, self.end_us, self.step_us, groups)

    def to_record(self, status: Status, **extra: Any) -> dict[str, Any]:
        """The state-topic record of this request with its current status."""
        return {
            "kind": "request",
            "requestId": self.request_id,
            "connectorType": self.connector_type,
            "pointAddresses": list(self.points),
            "startUs": self.start_us,
            "endUs": self.end_us,
            "chunkSize": self.chunk_size,
            "chunkUs": self.chunk_us,
            "stepUs": self.step_us,
            "groupSize": self.group_size,
            "queuedAt": iso(self.queued_at),
            "status": status.value,
            **({} if self.origin == "user" else {"origin": self.origin}),
            **extra,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BackfillRequest:
        """The request a state record describes."""
        return cls(
            request_id=record["requestId"],
            connector_type=record["connectorType"],
            points=tuple(record["pointAddresses"]),
            start_us=int(record["startUs"]),
            end_us=int(record["endUs"]),
            chunk_size=record["chunkSize"],
            chunk_us=int(record["chunkUs"]),
            step_us=int(record["stepUs"]),
            group_size=int(record["groupSize"]),
            queued_at=datetime.fromisoformat(record["queuedAt"]),
            origin=str(record.get("origin", "user")),
        )


@dataclass
class RequestProgress:
    """A request's live counters; all mutation happens on the orchestrator's event loop."""

    request: BackfillRequest
    total_chunks: int
    clock: Clock = time.monotonic
    status: Status = Status.QUEUED
    started_at: datetime | None = None
    finished_at: datetime | None = None
    completed: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    partial: set[int] = field(default_factory=set)
    skipped_chunks: int = 0
    covered_until_us: int | None = None
    """The earliest moment a chunk was cut at because it reached past its read (else None)."""
    points: PointChunkTally = field(init=False)
    earlier_commits: dict[int, int] = field(default_factory=dict)
    """Per chunk, points committed to its end before the chunk was requeued (or the process
    restarted): they count as completed, not skipped, when the chunk finishes."""
    values_published: int = 0
    batches_published: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    message: str | None = None
    _run_started: float | None = None
    _run_elapsed: float | None = None  # frozen when the request finished (or as persisted)
    _run_values: int = 0
    _run_chunks: int = 0

    def __post_init__(self) -> None:
        self.points = PointChunkTally(self.request.plan().windows)

    def adopt_run(self, now: datetime, chunks: int) -> None:
        """A fleet's request: its run is the whole fleet's since ``started_at`` (its first task
        done), so rate and ETA come from every member's values and ``chunks`` with an outcome,
        not from what this member did."""
        since = self.started_at or now
        self._run_started = self.clock() - max(0.0, (now - since).total_seconds())
        self._run_values = self.values_published
        self._run_chunks = chunks

    def start_run(self) -> None:
        """This process begins (or resumes) working on the request."""
        self._run_started = self.clock()
        self._run_values = 0
        self._run_chunks = 0
        if self.started_at is None:
            self.started_at = datetime.now(UTC)
        self.status = Status.RUNNING

    def chunk_skipped(self, index: int, points: Collection[str] = ()) -> None:
        """Every point of the chunk already had its window: nothing published."""
        self.completed.add(index)
        self.skipped_chunks += 1
        self.points.record(points, skipped=len(points))

    def chunk_finished(
        self,
        index: int,
        points: Collection[str],
        *,
        skipped: int,
        errors: list[dict[str, Any]],
        cut_at_us: int | None = None,
    ) -> None:
        """A chunk worked on has its outcome: per point (``skipped`` of the points not in
        ``errors`` were already present; with ``cut_at_us`` the rest were recorded only up to
        that moment) and as a chunk (completed only if every point is)."""
        failed = {str(e["point"]): str(e["error"]) for e in errors}
        partial = [p for p in points if p not in failed] if cut_at_us is not None else []
        self.points.record(points, skipped=skipped, failed=failed, partial=partial, chunk=index)
        if cut_at_us is not None:
            self.chunk_cut(index, cut_at_us)
        if errors:
            self.chunk_failed(index, errors)
        elif cut_at_us is None:
            self.chunk_completed(index)

    def chunk_cut(self, index: int, cut_at_us: int) -> None:
        """The chunk's window reached past its read: recorded only up to ``cut_at_us``."""
        if index not in self.partial:
            self._run_chunks += 1
        self.partial.add(index)
        if self.covered_until_us is None or cut_at_us < self.covered_until_us:
            self.covered_until_us = cut_at_us

    def chunk_committed(self, values: int, batches: int) -> None:
        """A transaction of the chunk (all its points, or some after a split) committed."""
        self.values_published += values
        self.batches_published += batches
        self._run_values += values

    def chunk_completed(self, index: int) -> None:
        """Every point of the chunk now holds the chunk's window."""
        self.completed.add(index)
        self.failed.discard(index)
        self._run_chunks += 1

    def chunk_failed(self, index: int, errors: list[dict[str, Any]]) -> None:
        """Points of the chunk failed after their retries; the rest of the request goes on."""
        self.failed.add(index)
        if index not in self.partial:
            self._run_chunks += 1
        self.error_count += len(errors)
        room = MAX_ERRORS_KEPT - len(self.errors)
        self.errors.extend(errors[: max(0, room)])

    @property
    def done_chunks(self) -> int:
        """Chunks with an outcome (completed, skipped, failed or cut at the read moment)."""
        return len(self.completed | self.failed | self.partial)

    @property
    def percent(self) -> float:
        """0-100, by chunks."""
        if self.total_chunks == 0:
            return 100.0
        return round(100.0 * self.done_chunks / self.total_chunks, 2)

    @property
    def elapsed_s(self) -> float:
        """Seconds spent on the request: in this process while it runs, frozen once final."""
        if self._run_elapsed is not None:
            return self._run_elapsed
        if self._run_started is None:
            return 0.0
        return max(0.0, self.clock() - self._run_started)

    def restore_elapsed(self, seconds: float) -> None:
        """A finished request's elapsed time, as persisted (its rate follows from it)."""
        self._run_elapsed = seconds
        self._run_values = self.values_published

    @property
    def rate(self) -> float:
        """Values published per second in this process."""
        elapsed = self.elapsed_s
        return self._run_values / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this process's pace per chunk; ``None`` before any chunk finished."""
        if self.status.final:
            return 0.0
        if self._run_chunks == 0:
            return None
        remaining = self.total_chunks - self.done_chunks
        return round(self.elapsed_s / self._run_chunks * remaining, 1)

    def finish(self, status: Status, message: str | None = None, now: WallClock = utc_now) -> None:
        """Enter a final state."""
        self._run_elapsed = self.elapsed_s
        self.status = status
        self.finished_at = now()
        if message is not None:
            self.message = message
        elif self.covered_until_us is not None and status is not Status.CANCELLED:
            self.message = self.future_note()

    def future_note(self) -> str:
        """What a request whose window reached into the future says about it."""
        until = iso(from_micros(self.covered_until_us or self.request.end_us))
        return (
            f"endTime was in the future: recorded up to {until}; run it again after endTime "
            "to fill the rest"
        )

    def final_status(self) -> Status:
        """What the request ends as once every chunk has an outcome."""
        if self.failed:
            tally = self.points
            if tally.completed or tally.skipped or tally.partial or self.values_published:
                return Status.COMPLETED_WITH_ERRORS  # some points of the request went
            return Status.FAILED
        if self.partial:  # never claim the whole window when only part of it existed yet
            return Status.PARTIAL
        if self.done_chunks >= self.total_chunks:
            return Status.COMPLETED
        return Status.COMPLETED_WITH_ERRORS  # a chunk without an outcome never reads completed

    def to_json(self) -> dict[str, Any]:
        """The seed's field names, plus what it lacked (skipped, rate, ETA, errors).

        Chunks (a time window x a group of points): ``completedChunks`` every point of the chunk
        holds its window (published now or already present; ``skippedChunks`` of them were
        already present), ``failedChunks`` at least one point failed, ``partialChunks`` the
        window reached past its read and was recorded only up to it.

        Point-chunks (one point over one chunk's window; see :mod:`producer.state.outcomes`):
        ``completedPointChunks`` published by this request, ``skippedPointChunks`` already
        present, ``failedPointChunks``, ``partialPointChunks``. ``failedPoints``: point -> error
        (at most 100; ``failedPointCount`` says how many); ``pointsCompleted``: points whose
        every chunk is completed or skipped.

        ``pointsProcessed`` keeps **the seed's meaning: values (data points) processed** -- the
        seed's example shows 2,345,678 for a 100-point request, and its stats call the same
        number ``totalPointsBackfilled``; seed clients and the seed's own test read it so.
        ``valuesProcessed`` is the same count under an unambiguous name (``valuesPublished``
        too); the number of points is ``pointsCompleted``.

        ``coveredUntil``: set when the window reached into the future; only up to it is
        recorded as done (status ``Partial``), and a rerun after ``endTime`` fills the rest.
        ``origin``: ``user`` (the API) or ``repair`` (the hole repair).
        """
        r = self.request
        covered = None if self.covered_until_us is None else from_micros(self.covered_until_us)
        tally = self.points
        return {
            "requestId": r.request_id,
            "connectorType": r.connector_type,
            "pointCount": len(r.points),
            "pointAddresses": list(r.points),
            "startTime": iso(from_micros(r.start_us)),
            "endTime": iso(from_micros(r.end_us)),
            "chunkSize": r.chunk_size,
            "origin": r.origin,
            "status": self.status.value,
            "progress": self.percent,
            "totalChunks": self.total_chunks,
            "completedChunks": len(self.completed),
            "failedChunks": len(self.failed),
            "skippedChunks": self.skipped_chunks,
            "partialChunks": len(self.partial),
            "completedPointChunks": tally.completed,
            "skippedPointChunks": tally.skipped,
            "failedPointChunks": tally.failed,
            "partialPointChunks": tally.partial,
            "pointsCompleted": tally.points_completed,
            "failedPointCount": len(tally.failed_points),
            "failedPoints": tally.failed_points_shown(),
            "coveredUntil": iso(covered),
            "pointsProcessed": self.values_published,
            "valuesProcessed": self.values_published,
            "valuesPublished": self.values_published,
            "batchesPublished": self.batches_published,
            "valuesPerSecond": round(self.rate, 1),
            "elapsedSeconds": round(self.elapsed_s, 3),
            "etaSeconds": self.eta_s,
            "queuedAt": iso(r.queued_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "errorCount": self.error_count,
            "errors": list(self.errors),
            "message": self.message,
        }
