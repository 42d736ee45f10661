"""Progress of backfill requests: one tracker per request, read by the API, /metrics and the CLI.

Counts are rebuilt from the state topic after a restart (completed chunks, values and batches
published); rate and ETA are measured in this process only, from an injectable clock, so a
resumed request does not report the dead process's pace.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from producer.planner import Plan
from shared.batch import from_micros

Clock = Callable[[], float]
MAX_ERRORS_KEPT = 100


class Status(enum.StrEnum):
    """A request's life: Queued -> Running (<-> Paused) -> one of the final states."""

    QUEUED = "Queued"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        """Whether nothing more will happen to the request."""
        return self in _FINAL


_FINAL = {Status.COMPLETED, Status.COMPLETED_WITH_ERRORS, Status.FAILED, Status.CANCELLED}


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
    skipped_chunks: int = 0
    values_published: int = 0
    batches_published: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    message: str | None = None
    _run_started: float | None = None
    _run_elapsed: float | None = None  # frozen when the request finished (or as persisted)
    _run_values: int = 0
    _run_chunks: int = 0

    def start_run(self) -> None:
        """This process begins (or resumes) working on the request."""
        self._run_started = self.clock()
        self._run_values = 0
        self._run_chunks = 0
        if self.started_at is None:
            self.started_at = datetime.now(UTC)
        self.status = Status.RUNNING

    def chunk_skipped(self, index: int) -> None:
        """Every point of the chunk already had its window: nothing published."""
        self.completed.add(index)
        self.skipped_chunks += 1

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
        self._run_chunks += 1
        self.error_count += len(errors)
        room = MAX_ERRORS_KEPT - len(self.errors)
        self.errors.extend(errors[: max(0, room)])

    @property
    def done_chunks(self) -> int:
        """Chunks with a final outcome (completed, skipped or failed)."""
        return len(self.completed | self.failed)

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

    def finish(self, status: Status, message: str | None = None) -> None:
        """Enter a final state."""
        self._run_elapsed = self.elapsed_s
        self.status = status
        self.finished_at = datetime.now(UTC)
        if message is not None:
            self.message = message

    def final_status(self) -> Status:
        """What the request ends as once every chunk has an outcome."""
        if not self.failed and self.done_chunks >= self.total_chunks:
            return Status.COMPLETED
        if not self.failed:  # a chunk without an outcome must never read as completed
            return Status.COMPLETED_WITH_ERRORS
        if self.completed or self.values_published:  # some points of the failed chunks went
            return Status.COMPLETED_WITH_ERRORS
        return Status.FAILED

    def to_json(self) -> dict[str, Any]:
        """The seed's field names, plus what it lacked (skipped, rate, ETA, errors)."""
        r = self.request
        return {
            "requestId": r.request_id,
            "connectorType": r.connector_type,
            "pointCount": len(r.points),
            "pointAddresses": list(r.points),
            "startTime": iso(from_micros(r.start_us)),
            "endTime": iso(from_micros(r.end_us)),
            "chunkSize": r.chunk_size,
            "status": self.status.value,
            "progress": self.percent,
            "totalChunks": self.total_chunks,
            "completedChunks": len(self.completed),
            "failedChunks": len(self.failed),
            "skippedChunks": self.skipped_chunks,
            "pointsProcessed": self.values_published,
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
