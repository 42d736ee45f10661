"""Backfill state on the compacted state topic: the records, and the view rebuilt from them.

These kinds of record, each under a key that compaction keeps the latest value of:

``request:<id>``
    a request as submitted (its plan parameters, so the plan is reproducible) and its status.
``done:<connector>:<start_us>:<end_us>:<digest of points>``
    a chunk's checkpoint: these points hold ``[start_us, end_us)`` in the backfill topic. It is
    written **in the same Kafka transaction** as the chunk's data, so a ``read_committed``
    reader never sees one without the other. Keyed by content, not by request, so a later
    request over the same range finds the range done and skips it (the seed's idempotent re-run).
    The window is what was *read*, which may be less than the chunk: a read never records more
    than existed when it began (:func:`recordable_end`: a window reaching past that moment is
    recorded up to it, ``"cut": true``), and a later read of the chunk starts where the
    coverage ends (:meth:`StateView.resume_from`), so a rerun after ``endTime`` fills the rest.
``failed:<id>:<chunk index>:<point>``
    a point that could not be read after its retries, with the error; a tombstone clears it once
    a later attempt succeeds.
``task:<id>:<chunk index>`` (fleet mode)
    the outcome of one chunk task and the member that ran it, committed in the same Kafka
    transaction as the task's consumer offset (:mod:`producer.fleet.member`).
``member:<instance>.w<worker>`` (fleet mode)
    a fleet worker's transactional id and the task partitions it holds; a survivor fences the
    id of a worker gone from the group and deletes the record.
``verified:<connector>:<start_us>:<end_us>:<digest of points>``
    the latest ``histfill verify`` of a chunk (:mod:`verify.verifier`): ``ok`` says whether every
    point's QuestDB rows matched the source's count with no unexplained gap and no value out of
    range. Keyed like the chunk's ``done:`` checkpoint, so it sits beside it whichever request
    wrote the data; the record names the request it was checked for (``requestId``, or null).
    A later verification of the same chunk replaces it, a failing one included.
``repair:<connector>:<start_us>:<end_us>:<digest of the point>``
    one hole the repair scheduler found (:mod:`producer.upkeep.repair`): submitted, then
    repaired (with the values it added), confirmed empty (the source has none there either:
    never asked again) or failed (asked again by a later run).

The values are JSON rather than Avro: this is a low-volume control plane an operator reads with
``kafka-console-consumer``, and ``schemas/`` is the single record family of the data codec (its
``SchemaStore`` reads every ``*.avsc`` there as a version of the data batch).

Everything here is pure; :mod:`producer.state.reader` reads and writes the topic.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from producer.planning.planner import points_digest

REQUEST = "request"
DONE = "done"
FAILED = "failed"
VERIFIED = "verified"
TASK = "task"
MEMBER = "member"
REPAIR = "repair"
META_WORKERS_KEY = "meta:workers"


def request_key(request_id: str) -> str:
    """State key of a request record."""
    return f"{REQUEST}:{request_id}"


def done_key(connector: str, start_us: int, end_us: int, points: tuple[str, ...]) -> str:
    """State key of a chunk checkpoint: by content, so any request over the range finds it."""
    return f"{DONE}:{connector}:{start_us}:{end_us}:{points_digest(points)}"


def failed_key(request_id: str, chunk_index: int, point: str) -> str:
    """State key of one point's failure in one chunk of one request."""
    return f"{FAILED}:{request_id}:{chunk_index}:{point}"


def task_key(request_id: str, chunk_index: int) -> str:
    """State key of a fleet task's outcome (written with the task's consumer offset)."""
    return f"{TASK}:{request_id}:{chunk_index}"


def member_key(worker_id: str) -> str:
    """State key of a fleet worker: its transactional id and the task partitions it holds."""
    return f"{MEMBER}:{worker_id}"


def verified_key(connector: str, start_us: int, end_us: int, points: tuple[str, ...]) -> str:
    """State key of a chunk's latest verification: the chunk checkpoint's key, ``verified:``."""
    return f"{VERIFIED}:{connector}:{start_us}:{end_us}:{points_digest(points)}"


def recordable_end(start_us: int, end_us: int, read_at_us: int) -> int:
    """The end of what a read of ``[start_us, end_us)`` that began at ``read_at_us`` may record.

    A historian holds no value stamped after the moment it is asked, and one stamped exactly
    then may still be on its way: the read covers ``[start_us, min(end_us, read_at_us))`` and
    nothing else is recorded as done. ``start_us`` when the whole window lies at or after the
    read moment (nothing to read yet).
    """
    return max(start_us, min(end_us, read_at_us))


def encode(record: dict[str, Any]) -> bytes:
    """A state record as compact UTF-8 JSON."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """A state record from JSON (``ValueError`` if it is not an object)."""
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("a state record is a JSON object")
    return record


class IntervalSet:
    """Disjoint, sorted half-open ``[start, end)`` intervals of integers, merged on insert."""

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        """Cover ``[start, end)``; touching or overlapping intervals merge."""
        if end <= start:
            return
        # every interval whose end >= start and whose start <= end merges with the new one
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def covers(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies entirely inside one covered interval."""
        if end <= start:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def reach(self, start: int) -> int:
        """Where the covered run holding ``start`` ends (``start`` itself if it is uncovered)."""
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return self._ends[i]
        return start

    def intervals(self) -> list[tuple[int, int]]:
        """The intervals, in order."""
        return list(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)


@dataclass
class RequestTally:
    """What the checkpoints say one request published."""

    chunks: set[int] = field(default_factory=set)
    values: int = 0
    batches: int = 0
    point_chunks: dict[int, int] = field(default_factory=dict)
    """Per chunk index, how many of its points this request published to the chunk's end."""


@dataclass
class StateView:
    """Everything the state topic says, folded: requests, coverage, failures, verifications."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverage: dict[tuple[str, str], IntervalSet] = field(default_factory=dict)
    tallies: dict[str, RequestTally] = field(default_factory=lambda: defaultdict(RequestTally))
    failures: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    verified: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    repairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``repair:`` records (:mod:`producer.upkeep.repair`) by key."""
    max_workers: int = 0
    records: int = 0

    def apply(self, key: str, value: bytes | None) -> None:
        """Fold one record (``None`` is a tombstone) into the view; unknown keys are ignored."""
        self.records += 1
        kind = key.split(":", 1)[0]
        if kind == REQUEST:
            request_id = key.split(":", 1)[1]
            if value is None:
                self.requests.pop(request_id, None)
            else:
                self.requests[request_id] = decode(value)
        elif kind == DONE and value is not None:
            self.apply_done(decode(value))
        elif kind == FAILED:
            _, request_id, rest = key.split(":", 2)
            if value is None:
                self.failures[request_id].pop(rest, None)
            else:
                self.failures[request_id][rest] = decode(value)
        elif kind in (VERIFIED, REPAIR):  # kept whole, by key
            kept = self.verified if kind == VERIFIED else self.repairs
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = decode(value)
        elif kind in (TASK, MEMBER):
            self._apply_fleet(kind, key, value)
        elif key == META_WORKERS_KEY and value is not None:
            self.max_workers = max(self.max_workers, int(decode(value).get("maxWorkers", 0)))

    def _apply_fleet(self, kind: str, key: str, value: bytes | None) -> None:
        """Fold a fleet record: a task's outcome or a worker's registration."""
        if kind == TASK:
            _, request_id, index = key.split(":", 2)
            if value is None:
                self.tasks[request_id].pop(int(index), None)
            else:
                self.tasks[request_id][int(index)] = decode(value)
        else:
            worker_id = key.split(":", 1)[1]
            if value is None:
                self.members.pop(worker_id, None)
            else:
                self.members[worker_id] = decode(value)

    def apply_done(self, record: dict[str, Any]) -> None:
        """Fold a chunk checkpoint: its points now cover its window."""
        connector, start, end = record["connector"], record["startUs"], record["endUs"]
        for point in record["points"]:
            self.covered(connector, point).add(start, end)
        tally = self.tallies[record["requestId"]]
        index = int(record["chunkIndex"])
        tally.chunks.add(index)
        if not record.get("cut"):  # a cut read leaves its points short of the chunk's end
            tally.point_chunks[index] = tally.point_chunks.get(index, 0) + len(record["points"])
        tally.values += int(record.get("values", 0))
        tally.batches += int(record.get("batches", 0))

    def covered(self, connector: str, point: str) -> IntervalSet:
        """The intervals of ``point`` (read through ``connector``) already published."""
        key = (connector, point)
        found = self.coverage.get(key)
        if found is None:
            found = self.coverage[key] = IntervalSet()
        return found

    def is_done(self, connector: str, point: str, start_us: int, end_us: int) -> bool:
        """Whether ``point`` already holds ``[start_us, end_us)`` (without creating an entry)."""
        found = self.coverage.get((connector, point))
        return found is not None and found.covers(start_us, end_us)

    def is_verified(
        self, connector: str, start_us: int, end_us: int, points: tuple[str, ...]
    ) -> bool:
        """Whether the latest verification of this chunk passed."""
        record = self.verified.get(verified_key(connector, start_us, end_us, points))
        return record is not None and bool(record.get("ok"))

    def resume_from(
        self, connector: str, points: tuple[str, ...], start_us: int, end_us: int
    ) -> int:
        """Where a read of ``points`` over ``[start_us, end_us)`` starts: the earliest instant
        one of them lacks (a chunk cut at an earlier read moment resumes at the cut)."""
        starts = [start_us]
        for point in points:
            found = self.coverage.get((connector, point))
            starts.append(min(end_us, found.reach(start_us)) if found is not None else start_us)
        return min(starts[1:]) if points else start_us

    def pending_points(
        self, connector: str, points: tuple[str, ...], start_us: int, end_us: int
    ) -> tuple[str, ...]:
        """The points of a chunk that still lack its window."""
        return tuple(p for p in points if not self.is_done(connector, p, start_us, end_us))
