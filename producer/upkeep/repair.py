"""The hole repair: a scheduler in the producer that turns holes into ordinary backfill requests.

Off by default; ``REPAIR_ENABLED=true`` runs it every ``REPAIR_INTERVAL_SECONDS`` over the live
points (``LIVE_CONNECTOR``, ``LIVE_POINTS``) and the last ``REPAIR_LOOKBACK``. A run:

1. settles the holes it asked for earlier whose requests have finished: a request that read
   values marks its hole ``repaired`` (with the values it added); one whose chunk was read and
   held nothing marks it ``empty``: the source lacks the values too, and the hole is never
   asked again; a request that failed or was cancelled marks it ``failed``, so a later run asks
   again. A chunk found already checkpointed (published before) marks it ``covered``.
2. waits while one of its requests is still running (the throttle: at most
   ``REPAIR_MAX_HOLES_PER_RUN`` holes in flight), and in a fleet also while a user request is
   active (the fleet's tasks are consumed in partition order, so waiting is how a user request
   goes first; one process dispatches user chunks before repair chunks instead).
3. finds the holes (:mod:`producer.upkeep.gaps`), leaves out those already handled, and submits
   one request per hole over exactly its window, ``origin: repair``, through the orchestrator:
   the same checkpoints, exactly-once path, progress, status and ``histfill verify``.

Every step is a ``repair:`` record on the state topic (:func:`repair_key`), so what was asked,
what it added and which holes are confirmed empty survive restarts and are seen by every fleet
member. In a fleet only one member runs a given interval: it takes a Redis key
``<SOURCE_RATE_LIMIT_KEY_PREFIX>repair:<TOPIC_STATE>`` with ``SET NX EX <interval>`` and lets it
expire; the others skip that run.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from producer.errors import ProducerError
from producer.planning.planner import points_digest
from producer.planning.requests import StartBody
from producer.state import checkpoints as cp
from producer.state.progress import RequestProgress, Status, utc_now
from producer.upkeep.changes import HourChange, change_records
from producer.upkeep.gaps import Hole, HoleFinder, iso_us
from producer.worker.orchestrator import Orchestrator
from shared.batch import from_micros, to_micros
from shared.errors import ConfigError, HistfillError
from shared.qdb import QuestDBSQL
from shared.settings import ProducerSettings, parse_span

log = structlog.get_logger(__name__)

SUBMITTED, REPAIRED, EMPTY, COVERED, FAILED = "submitted", "repaired", "empty", "covered", "failed"
HANDLED = frozenset({SUBMITTED, REPAIRED, EMPTY, COVERED})
"""States whose hole is not asked again (``failed`` is)."""
ORIGIN = "repair"
REPORT_TRIES = 10
"""Runs a repaired hole waits for QuestDB to hold all its values before it is reported as is."""


def repair_key(connector: str, point: str, start_us: int, end_us: int) -> str:
    """State key of one hole: by content, like a chunk checkpoint's."""
    return f"{cp.REPAIR}:{connector}:{start_us}:{end_us}:{points_digest((point,))}"


def hole_record(connector: str, hole: Hole, request_id: str, now_iso: str) -> dict[str, Any]:
    """The ``repair:`` record of a hole just submitted."""
    return {
        "kind": "repair",
        "connector": connector,
        "point": hole.point,
        "startUs": hole.start_us,
        "endUs": hole.end_us,
        "from": iso_us(hole.start_us),
        "to": iso_us(hole.end_us),
        "cadenceUs": hole.cadence_us,
        "expected": hole.expected,
        "present": hole.present,
        "requestId": request_id,
        "status": SUBMITTED,
        "valuesAdded": 0,
        "detectedAt": now_iso,
        "finishedAt": None,
    }


def outcome(progress: RequestProgress) -> tuple[str, int] | None:
    """What a finished repair request says about its hole, and the values it added; ``None``
    while it runs."""
    status = progress.status
    if not status.final:
        return None
    values = progress.values_published
    if status is not Status.COMPLETED:
        return FAILED, values
    if values > 0:
        return REPAIRED, values
    return (COVERED if progress.skipped_chunks else EMPTY), 0


def handled_intervals(
    records: Iterable[dict[str, Any]], connector: str
) -> dict[str, cp.IntervalSet]:
    """Per point, the windows no run should ask for again."""
    out: dict[str, cp.IntervalSet] = {}
    for r in records:
        if r.get("connector") == connector and r.get("status") in HANDLED:
            out.setdefault(r["point"], cp.IntervalSet()).add(int(r["startUs"]), int(r["endUs"]))
    return out


def new_holes(holes: Iterable[Hole], handled: dict[str, cp.IntervalSet], cap: int) -> list[Hole]:
    """The holes not handled yet, oldest first, at most ``cap``."""
    fresh = [
        h
        for h in holes
        if not (h.point in handled and handled[h.point].covers(h.start_us, h.end_us))
    ]
    return sorted(fresh, key=lambda h: (h.after_us, h.point))[:cap]


class RepairScheduler:
    """Runs the repair in the producer's event loop (module docstring); a Prometheus collector."""

    def __init__(
        self,
        settings: ProducerSettings,
        orchestrator: Orchestrator,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.live_connector is None:
            raise ConfigError("REPAIR_ENABLED: the repair needs LIVE_CONNECTOR and LIVE_POINTS")
        self.settings = settings
        self.orchestrator = orchestrator
        self.connector: str = settings.live_connector
        self.points = tuple(p.strip() for p in settings.live_points.split(",") if p.strip())
        if not self.points:
            raise ConfigError("REPAIR_ENABLED: the repair needs LIVE_POINTS")
        self.lookback_us = int(parse_span(settings.repair_lookback) * 1e6)
        self.interval_s = settings.repair_interval_seconds
        self.cap = settings.repair_max_holes_per_run
        self._clock = clock
        self._member = settings.producer_instance_id or socket.gethostname()
        self._lock_key = f"{settings.source_rate_limit_key_prefix}repair:{settings.topic_state}"
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.holes_open = 0
        self.submitted_total = 0
        self._report_tries: dict[str, int] = {}

    # -- the ledger (the state topic's repair: records) ------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every ``repair:`` record this member knows (its own and, in a fleet, the others')."""
        return list(self.orchestrator.view.repairs.values())

    async def _record(self, record: dict[str, Any]) -> None:
        key = repair_key(record["connector"], record["point"], record["startUs"], record["endUs"])
        await self.orchestrator._put(key, record)  # durable before the view shows it
        self.orchestrator.view.repairs[key] = record

    # -- one run ---------------------------------------------------------------------------------

    async def run_once(self) -> dict[str, int]:
        """One run (module docstring); what it did, for logs and tests."""
        did = {"settled": 0, "submitted": 0, "holes": 0}
        if self.settings.producer_fleet and not await asyncio.to_thread(self._take_run):
            return did
        self.orchestrator.refresh()
        finder = HoleFinder(
            QuestDBSQL.from_settings(self.settings),
            self.settings.qdb_table,
            self.settings.repair_hole_factor,
        )
        try:
            did["settled"] = await self._settle(finder)
            if self._waiting():
                return did
            now_us = int(self._clock() * 1e6)
            holes, _ = await asyncio.to_thread(
                finder.find, now_us - self.lookback_us, now_us, self.points
            )
        finally:
            finder.sql.close()
        handled = handled_intervals(self.records(), self.connector)
        todo = new_holes(holes, handled, len(holes))
        self.holes_open = len(todo)
        did["holes"] = len(holes)
        for hole in todo[: self.cap]:
            await self._submit(hole)
            did["submitted"] += 1
        self.runs += 1
        log.info("repair_run", connector=self.connector, **did, open=self.holes_open)
        return did

    async def _submit(self, hole: Hole) -> None:
        body = StartBody(
            connector_type=self.connector,
            point_addresses=[hole.point],
            start_time=from_micros(hole.start_us),
            end_time=from_micros(hole.end_us),
        )
        progress = await self.orchestrator.submit(body, origin=ORIGIN)
        request_id = progress.request.request_id
        now_iso = iso_us(to_micros(utc_now()))
        await self._record(hole_record(self.connector, hole, request_id, now_iso))
        self.submitted_total += 1
        log.debug("repair_submitted", request_id=request_id, **hole.to_json())

    async def _settle(self, finder: HoleFinder) -> int:
        settled = 0
        for record in self.records():
            if record.get("status") != SUBMITTED:
                continue
            entry = self.orchestrator.entries.get(record["requestId"])
            if entry is None:
                continue  # a fleet member that has not seen the request yet
            result = outcome(entry.progress)
            if result is None:
                continue
            status, values = result
            if status == REPAIRED and not await self._report(finder, record, values):
                continue  # the consumer has not written it all yet: the next run settles it
            done = {
                **record,
                "status": status,
                "valuesAdded": values,
                "finishedAt": iso_us(to_micros(utc_now())),
            }
            await self._record(done)
            settled += 1
            log.info(
                "repair_settled",
                point=record["point"],
                start=record["from"],
                end=record["to"],
                status=status,
                values=values,
                request_id=record["requestId"],
            )
        return settled

    async def _report(self, finder: HoleFinder, record: dict[str, Any], values: int) -> bool:
        """Write what a repaired hole added, per UTC hour, to the changes report
        (:mod:`producer.upkeep.changes`, kind ``repair``). The hole held no values, so what
        QuestDB now holds in its window is what the repair added; until the consumer has written
        all ``values`` published (at most ``REPORT_TRIES`` runs), the hole stays unsettled. The
        record's key is the request's, so writing it again after a crash replaces it."""
        start, end, rid = int(record["startUs"]), int(record["endUs"]), str(record["requestId"])
        hours = await asyncio.to_thread(finder.hourly, record["point"], start, end)
        tries = self._report_tries[rid] = self._report_tries.get(rid, 0) + 1
        if sum(hours.values()) < values and tries < REPORT_TRIES:
            return False
        rows = [HourChange(record["point"], hour, n, 0) for hour, n in sorted(hours.items())]
        for key, value in change_records(ORIGIN, rid, utc_now(), (start, end), rows):
            await self.orchestrator.put_record(self.settings.topic_changes, key, value)
        self._report_tries.pop(rid, None)
        return True

    def _waiting(self) -> bool:
        """Whether this run leaves holes for later: its own requests still run, or (fleet) a
        user request is active."""
        for entry in self.orchestrator.entries.values():
            progress = entry.progress
            if progress.status.final:
                continue
            if progress.request.origin == ORIGIN or self.settings.producer_fleet:
                return True
        return False

    def _take_run(self) -> bool:
        """Fleet mode: whether this member runs this interval (a Redis key that expires)."""
        client = redis.Redis.from_url(self.settings.redis_url.get_secret_value())
        try:
            return bool(client.set(self._lock_key, self._member, nx=True, ex=self._lock_seconds()))
        except redis.RedisError as exc:
            log.warning("repair_lock_unavailable", error=str(exc))
            return False
        finally:
            client.close()

    def _lock_seconds(self) -> int:
        return max(1, int(self.interval_s * 0.9))

    # -- life cycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every ``REPAIR_INTERVAL_SECONDS`` until cancelled; a failed run is logged."""
        log.info(
            "repair_started",
            connector=self.connector,
            points=len(self.points),
            interval_s=self.interval_s,
            lookback=self.settings.repair_lookback,
        )
        while True:
            try:
                await self.run_once()
            except (HistfillError, ProducerError) as exc:
                log.warning("repair_run_failed", error=str(exc))
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self.run(), name="hole-repair")

    async def stop(self) -> None:
        """Stop between runs (a request already submitted goes on as any other)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- metrics ---------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        """``histfill_repair_holes_open``, ``histfill_repair_holes{status}``,
        ``histfill_repair_values_added_total`` (from the ledger at each scrape: every member's
        records), ``histfill_repair_runs_total`` and ``histfill_repair_requests_submitted_total``
        (this process's)."""
        records = [r for r in self.records() if r.get("connector") == self.connector]
        by_status = Counter(str(r.get("status")) for r in records)
        open_ = GaugeMetricFamily(
            "histfill_repair_holes_open",
            "Holes the last repair run found and had not handled yet (before it submitted).",
        )
        open_.add_metric([], self.holes_open)
        holes = GaugeMetricFamily(
            "histfill_repair_holes",
            "Holes the repair asked for, by state: submitted, repaired, empty (confirmed: the "
            "source has none there either), covered, failed.",
            labels=["status"],
        )
        for status in (SUBMITTED, REPAIRED, EMPTY, COVERED, FAILED):
            holes.add_metric([status], by_status.get(status, 0))
        added = CounterMetricFamily(
            "histfill_repair_values_added", "Values the repair's requests published."
        )
        added.add_metric([], sum(int(r.get("valuesAdded", 0)) for r in records))
        runs = CounterMetricFamily(
            "histfill_repair_runs", "Repair runs of this process that looked for holes."
        )
        runs.add_metric([], self.runs)
        submitted = CounterMetricFamily(
            "histfill_repair_requests_submitted",
            "Backfill requests this process submitted for holes (one per hole).",
        )
        submitted.add_metric([], self.submitted_total)
        yield open_
        yield holes
        yield added
        yield runs
        yield submitted
