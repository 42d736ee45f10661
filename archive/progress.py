"""An archive run's progress: the ACE document's line and final summary.

Counts are updated by the workers under a lock; :meth:`Progress.snapshot` is what the API
returns, :meth:`Progress.line` what the CLI prints (the document's fields: point-months done,
rate in point-months/hour, ETA, values, bytes written, skipped, errors).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_ERRORS_KEPT = 1000


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds)
    return f"{whole // 3600}h {whole % 3600 // 60}m {whole % 60}s"


@dataclass
class Progress:
    """Counters of one run (thread-safe through ``lock``)."""

    total: int
    clock: Callable[[], float] = time.monotonic
    status: str = "Queued"
    written: int = 0
    rewritten: int = 0
    skipped: int = 0
    empty: int = 0
    failed: int = 0
    values: int = 0
    bytes_written: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> int:
        return self.written + self.rewritten + self.skipped + self.empty + self.failed

    def start(self) -> None:
        with self.lock:
            self.started = self.clock()
            self.status = "Running"

    def finish(self, status: str) -> None:
        with self.lock:
            self.finished = self.clock()
            self.status = status

    def error(self, message: str) -> None:
        with self.lock:
            self.failed += 1
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append(message)

    def note(self, message: str) -> None:
        with self.lock:
            if len(self.notes) < MAX_ERRORS_KEPT:
                self.notes.append(message)

    def add(self, kind: str, values: int = 0, size: int = 0) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            self.values += values
            self.bytes_written += size

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or self.clock()) - self.started

    def rate_per_hour(self) -> float:
        """Point-months per hour over the run so far (skips included: they are work done)."""
        elapsed = self.elapsed()
        return self.done / elapsed * 3600 if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate_per_hour()
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / rate * 3600 if rate > 0 else None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            done = self.done
            return {
                "status": self.status,
                "totalPointMonths": self.total,
                "donePointMonths": done,
                "progress": round(100.0 * done / self.total, 2) if self.total else 100.0,
                "written": self.written,
                "rewritten": self.rewritten,
                "skipped": self.skipped,
                "empty": self.empty,
                "errorCount": self.failed,
                "values": self.values,
                "bytesWritten": self.bytes_written,
                "elapsedSeconds": round(self.elapsed(), 3),
                "pointMonthsPerHour": round(self.rate_per_hour(), 1),
                "valuesPerSecond": round(self.values / self.elapsed()) if self.elapsed() else 0,
                "etaSeconds": None if self.eta() is None else round(self.eta() or 0.0, 1),
                "errors": list(self.errors[:100]),
                "notes": list(self.notes[:100]),
            }

    def line(self) -> str:
        """The document's progress block, in one line."""
        s = self.snapshot()
        return (
            f"Progress: {s['progress']:.1f}% ({s['donePointMonths']}/{s['totalPointMonths']} "
            f"point-months) | Elapsed: {_duration(s['elapsedSeconds'])} | ETA: "
            f"{_duration(s['etaSeconds'])} | Rate: {s['pointMonthsPerHour']:,.1f} "
            f"point-months/hour | Data points: {s['values']:,} | Data written: "
            f"{s['bytesWritten'] / 1e6:,.2f} MB | Skipped: {s['skipped']} (already exist) | "
            f"Errors: {s['errorCount']}"
        )

    def summary(self) -> str:
        """The document's final block, with the errors encountered."""
        s = self.snapshot()
        bar = "=" * 60
        lines = [
            bar,
            f"Archive run {s['status']}: {s['donePointMonths']}/{s['totalPointMonths']} "
            "point-months",
            f"Elapsed: {_duration(s['elapsedSeconds'])}",
            f"Rate: {s['pointMonthsPerHour']:,.1f} point-months/hour",
            f"Data points: {s['values']:,} ({s['valuesPerSecond']:,} values/s written)",
            f"Data written: {s['bytesWritten'] / 1e6:,.2f} MB",
            f"Written: {s['written']}, rewritten (corrupt or behind QuestDB): {s['rewritten']}",
            f"Skipped: {s['skipped']} (already exist and valid)",
            f"Empty: {s['empty']} (no data in QuestDB: nothing to archive)",
            f"Errors: {s['errorCount']}",
            bar,
        ]
        if self.notes:
            lines.append("Notes:")
            lines += [f"  {n}" for n in self.notes[:20]]
        if self.errors:
            lines.append("Errors encountered:")
            lines += [f"  {e}" for e in self.errors[:50]]
            if len(self.errors) > 50:
                lines.append(f"  ... and {len(self.errors) - 50} more")
        return "\n".join(lines)
