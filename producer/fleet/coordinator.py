"""A producer fleet member: the API's orchestrator when ``PRODUCER_FLEET=true``.

Any member answers every API call the same way, because nothing it answers lives in its memory
alone: a request is planned once, by the member that took it, into the request record and its
chunk tasks (one Kafka transaction: both or neither); status, progress and errors are rebuilt
from the state topic, which every member tails (:mod:`producer.fleet.tailer`); cancel, pause
and resume are request records every worker sees between two pages
(:mod:`producer.fleet.member`). A request is finished by whichever member first sees a task
record for each of its chunks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from datetime import datetime
from typing import Any

import structlog
from confluent_kafka import ConsumerGroupState, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from producer.fleet.member import (
    TaskWorker,
    fence_transactional_ids,
    fleet_transactional_id,
    task_value,
)
from producer.fleet.report import fleet_status, tasks_by_member
from producer.fleet.tailer import StateTailer
from producer.planning.requests import StartBody, validate
from producer.sources.connectors import Connectors
from producer.state import checkpoints as cp
from producer.state.progress import BackfillRequest, RequestProgress, Status, iso
from producer.worker.chunks import ChunkRunner
from producer.worker.orchestrator import Orchestrator
from producer.worker.publisher import TRANSACTION_TIMEOUT_MS, PlainPublisher, _translate
from shared.codec import BatchCodec
from shared.kafka import TopicSpec, base_config, ensure_topics, producer_config
from shared.settings import ProducerSettings

log = structlog.get_logger(__name__)
FINISH_CHECK_S = 1.0
STABLE_TRIES = 15
SYNC_WAIT_S = 5.0  # an id another member just accepted reaches every member well within it


class FleetOrchestrator(Orchestrator):
    """The orchestrator's API over the fleet: requests to tasks, state from the state topic."""

    def __init__(
        self, settings: ProducerSettings, connectors: Connectors, codec: BatchCodec | None = None
    ) -> None:
        super().__init__(settings, connectors, codec)
        self.instance = settings.producer_instance_id or socket.gethostname()
        self.tailer = StateTailer(settings, self.view)
        self.stopping = False
        self.workers: list[TaskWorker] = []
        self._planner: Any = None
        self._plan_lock = asyncio.Lock()
        self._janitor: asyncio.Task[None] | None = None
        self._task_counts: dict[str, int] = {}
        self._values = 0

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Tasks topic, state caught up, workers in the group, the finisher."""
        s = self.settings
        # kept forever: a task not yet consumed (a paused request, a stopped fleet) must not
        # expire; a task is ~100 bytes, a million-chunk request ~100 MB
        specs = [
            TopicSpec(
                s.topic_tasks,
                s.topic_tasks_partitions,
                s.topic_replication_factor,
                {"retention.ms": "-1"},
            )
        ]
        await asyncio.to_thread(ensure_topics, AdminClient(base_config(s)), specs)
        self._control = PlainPublisher(s, self.codec)
        self._planner = Producer(
            producer_config(
                s,
                **{
                    "transactional.id": fleet_transactional_id(
                        s.topic_state, f"{self.instance}.planner"
                    ),
                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                },
            )
        )
        await asyncio.to_thread(self._planner.init_transactions, 30.0)
        await asyncio.to_thread(self.tailer.open)
        self._tasks = [asyncio.create_task(self.tailer.run(), name="state-tailer")]
        await self.tailer.catch_up()
        self._runner = self._chunk_runner()
        self._runner.apply_commits = False  # the tailer folds every member's checkpoints once
        # a member sees only its own commits' delivery reports, not the fleet's: no in-QuestDB
        # share from one member's view (inQuestDBPercent and the ingested ratio stay absent)
        self._runner.on_committed = None
        # a worker registers (member record) only once it holds partitions, i.e. is in the group:
        # a record of a worker not yet in the group would look like one that died
        self.workers = [TaskWorker(self, k) for k in range(s.backfill_workers)]
        self._tasks += [asyncio.create_task(w.run(), name=w.id) for w in self.workers]
        self._tasks.append(asyncio.create_task(self._finisher(), name="fleet-finisher"))
        self.started = True
        log.info("fleet_member_started", member=self.instance, workers=len(self.workers))

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Workers leave the group (their tasks go to the others), then the tailer stops."""
        self.stopping = True
        self._stopping = True
        workers = [t for t in self._tasks if t.get_name() not in ("state-tailer",)]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout_s)
            for task in pending:
                task.cancel()
        self.tailer.stop()
        if self._janitor is not None:
            self._janitor.cancel()
        for w in self.workers:  # left the group cleanly: nothing of ours for others to fence
            try:
                await self._put(cp.member_key(w.id), None)
            except Exception as exc:  # noqa: BLE001  # at worst a survivor fences a closed id
                log.warning("member_record_not_deleted", worker=w.id, error=str(exc))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.tailer.close)
        if self._control is not None:
            await asyncio.to_thread(self._control.close)
        if self._planner is not None:
            await asyncio.to_thread(self._planner.flush, 10.0)
        await self.connectors.aclose()
        self.started = False

    # -- requests -------------------------------------------------------------------------------

    async def submit(self, body: StartBody, origin: str = "user") -> RequestProgress:
        """Validate, then the request record and every chunk task in one transaction (a
        repair's tasks queue behind what is already on the task partitions: the fleet's repair
        waits until no user request is active, :mod:`producer.upkeep.repair`)."""
        request = validate(body, self.limits, self.connectors.unavailable())
        if origin != "user":
            request = dataclasses.replace(request, origin=origin)
        entry = self._entry(request)
        record = request.to_record(Status.QUEUED)
        tasks = self.settings.topic_tasks
        partitions = self.settings.topic_tasks_partitions
        planner = self._planner

        def publish() -> None:
            try:
                planner.begin_transaction()
                planner.produce(
                    self.settings.topic_state,
                    cp.encode(record),
                    cp.request_key(request.request_id).encode(),
                )
                for i in range(entry.plan.total_chunks):  # time-major: window k before k + 1
                    while True:
                        try:
                            planner.produce(
                                tasks,
                                task_value(request.request_id, i),
                                f"{request.request_id}:{i}".encode(),
                                partition=i % partitions,
                            )
                            break
                        except BufferError:
                            planner.poll(0.05)
                planner.commit_transaction(30.0)
            except Exception:
                planner.abort_transaction(30.0)
                raise

        async with self._plan_lock:
            try:
                await asyncio.to_thread(publish)
            except KafkaException as exc:
                raise _translate(exc, "publishing the request's tasks") from exc
        self.view.requests[request.request_id] = record  # the tailer brings the same record
        log.info(
            "request_planned",
            request_id=request.request_id,
            chunks=entry.plan.total_chunks,
            member=self.instance,
        )
        return entry.progress

    @property
    def chunk_runner(self) -> ChunkRunner:
        """The runner every worker of this member shares (sources, throttle, state view)."""
        return self._runner

    async def sync(self, request_id: str, timeout_s: float = SYNC_WAIT_S) -> None:
        """A request another member accepted a moment ago: read the state topic until it is here.

        One catch-up is not enough: Kafka acknowledges a transaction's commit once its
        coordinator logged the decision, and writes the commit markers to the partitions just
        after, so for a moment the stable end still lies before the request's record. An id
        still unknown after ``timeout_s`` is unknown (404).
        """
        deadline = time.monotonic() + timeout_s
        while request_id not in self.view.requests:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self.tailer.catch_up(timeout_s=max(remaining, 1.0))
            if request_id not in self.view.requests:
                await asyncio.sleep(min(0.1, max(remaining, 0.0)))

    def refresh(self) -> None:
        """Every request's progress, rebuilt from the tailed state topic."""
        entries = {}
        now = self._now()
        for record in sorted(self.view.requests.values(), key=lambda r: str(r.get("queuedAt"))):
            entry = self._entry_from_record(record)
            progress = entry.progress
            if progress.status is Status.RUNNING and progress.started_at is not None:
                done = len(self.view.tasks.get(progress.request.request_id, {}))
                progress.adopt_run(now, done)
            entries[progress.request.request_id] = entry
        self.entries = entries

    def get(self, request_id: str) -> RequestProgress:
        """A request's progress as the state topic tells it, with who ran its tasks."""
        self.refresh()
        return super().get(request_id)

    def status(self, include_finished: bool = False) -> dict[str, Any]:
        """The seed's status payload over the whole fleet, plus the members and their tasks."""
        self.refresh()
        payload = super().status(include_finished)
        payload["fleet"] = self.fleet_status()
        return payload

    def fleet_status(self) -> dict[str, Any]:
        """Members, their workers' task partitions, and the tasks each finished per request."""
        return fleet_status(self.view, self.instance)

    async def cancel(self, request_id: str) -> RequestProgress:
        """Cancel for the whole fleet: every worker sees the record between two pages."""
        await self.sync(request_id)
        progress = self.get(request_id)
        if not progress.status.final:
            progress.finish(Status.CANCELLED, "cancelled by request", now=self._now)
            await self._save_progress(progress)
        return progress

    async def pause(self, request_id: str) -> RequestProgress:
        """Pause for the whole fleet: open chunks abort, tasks wait on paused partitions."""
        await self.sync(request_id)
        progress = self.get(request_id)
        if progress.status in (Status.QUEUED, Status.RUNNING):
            progress.status = Status.PAUSED
            await self._save_progress(progress)
        return progress

    async def resume(self, request_id: str) -> RequestProgress:
        """Let the fleet go on with a paused request."""
        await self.sync(request_id)
        progress = self.get(request_id)
        if progress.status is Status.PAUSED:
            progress.status = Status.RUNNING if progress.started_at else Status.QUEUED
            await self._save_progress(progress)
        return progress

    async def _save_progress(self, progress: RequestProgress) -> None:
        p = progress
        record = p.request.to_record(
            p.status,
            startedAt=iso(p.started_at),
            finishedAt=iso(p.finished_at),
            errors=p.errors[:20],
            errorCount=p.error_count,
            message=p.message,
            elapsedSeconds=round(_elapsed(p.started_at, p.finished_at or self._now()), 3),
        )
        await self._put(cp.request_key(p.request.request_id), record)
        self.view.requests[p.request.request_id] = record

    # -- the fleet ------------------------------------------------------------------------------

    async def _finisher(self) -> None:
        """Mark requests running when their first task is done, and final after the last."""
        while not self.stopping:
            await asyncio.sleep(FINISH_CHECK_S)
            for request_id, record in list(self.view.requests.items()):
                status = Status(record["status"])
                if status.final or status is Status.PAUSED:
                    continue
                tasks = self.view.tasks.get(request_id, {})
                try:
                    if status is Status.QUEUED and tasks:
                        progress = self._entry_from_record(record).progress
                        progress.status = Status.RUNNING
                        progress.started_at = progress.started_at or _parse(
                            min(str(t.get("at")) for t in tasks.values())
                        )
                        await self._save_progress(progress)
                    total = record_total(record)
                    if len(tasks) >= total:
                        await self._finish_request(record)
                except Exception as exc:  # noqa: BLE001  # retried at the next check
                    log.warning("fleet_finish_failed", request_id=request_id, error=str(exc))

    async def _finish_request(self, record: dict[str, Any]) -> None:
        await self.tailer.catch_up()  # the failures of the last tasks are in the view
        request_id = record["requestId"]
        record = self.view.requests.get(request_id, record)
        if Status(record["status"]).final:  # another member finished or cancelled it meanwhile
            return
        tasks = self.view.tasks.get(request_id, {})
        if any(t.get("outcome") == "cancelled" for t in tasks.values()):
            # a task ends "cancelled" only once the request was: the cancel record may still be
            # on its way here, and judging its unread chunks as cut would say Partial
            progress = self._entry_from_record(record, Status.CANCELLED).progress
            progress.finish(Status.CANCELLED, "cancelled by request", now=self._now)
            await self._save_progress(progress)
            return
        progress = self._entry_from_record(record, Status.COMPLETED).progress
        final = progress.final_status()
        progress = self._entry_from_record(record, final).progress
        progress.status = final
        progress.finished_at = self._now()
        failures = self.view.failures.get(request_id, {})
        progress.error_count = len(failures)
        progress.errors = list(failures.values())[:20]
        if progress.started_at is None:
            progress.started_at = progress.finished_at
        await self._save_progress(progress)
        log.info(
            "request_finished",
            request_id=request_id,
            status=final.value,
            values=progress.values_published,
            member=self.instance,
        )

    async def after_rebalance(self, worker: TaskWorker) -> None:
        """A worker's partitions changed: record them, fence departed workers, catch up."""
        await self._put(
            cp.member_key(worker.id),
            {
                "kind": "member",
                "member": self.instance,
                "worker": worker.id,
                "transactionalId": worker.publisher.transactional_id,
                "partitions": sorted(worker.partitions),
                "updatedAt": iso(self._now()),
            },
        )
        if self._janitor is None or self._janitor.done():
            # in the background: it waits for the group to settle, which needs this worker to
            # poll again (a rebalance waits for every member to rejoin)
            self._janitor = asyncio.create_task(self._fence_departed(), name="fleet-janitor")
        await self.tailer.catch_up()

    async def _fence_departed(self) -> None:
        """Abort the open transactions of workers that left the group (died): otherwise they
        hold back every ``read_committed`` reader until ``transaction.timeout.ms``."""
        admin = AdminClient(base_config(self.settings))
        group = self.settings.producer_group_id
        for _ in range(STABLE_TRIES):  # mid-rebalance the member list is partial: wait it out
            try:
                futures = admin.describe_consumer_groups([group], request_timeout=10)
                description = await asyncio.to_thread(futures[group].result)
            except Exception as exc:  # noqa: BLE001  # next rebalance tries again
                log.warning("fleet_describe_failed", error=str(exc))
                return
            if description.state == ConsumerGroupState.STABLE:
                break
            await asyncio.sleep(1.0)
        else:
            log.warning("fleet_group_not_stable", group=group)
            return
        live = {m.client_id for m in description.members}
        mine = {w.id for w in self.workers}
        gone = [
            (wid, str(record.get("transactionalId")))
            for wid, record in list(self.view.members.items())
            if wid not in live and wid not in mine and record.get("transactionalId")
        ]
        if not gone:
            return
        await asyncio.to_thread(fence_transactional_ids, self.settings, [t for _, t in gone])
        for wid, _ in gone:
            await self._put(cp.member_key(wid), None)
            self.view.members.pop(wid, None)
        log.info("fleet_workers_fenced", workers=[w for w, _ in gone], member=self.instance)

    def metrics_task(self, outcome: str, values: int) -> None:
        """Count a finished task in this member's Prometheus metrics."""
        self._task_counts[outcome] = self._task_counts.get(outcome, 0) + 1
        self._values += values

    def extra_metrics(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        """This member's tasks and values, and every member's tasks per request (from the
        state topic, so any member's /metrics shows the whole fleet's split)."""
        tasks = CounterMetricFamily(
            "histfill_fleet_tasks",
            "Chunk tasks this member finished.",
            labels=["member", "outcome"],
        )
        for outcome, n in sorted(self._task_counts.items()):
            tasks.add_metric([self.instance, outcome], n)
        values = CounterMetricFamily(
            "histfill_fleet_values_published", "Values this member published.", labels=["member"]
        )
        values.add_metric([self.instance], self._values)
        per_request = GaugeMetricFamily(
            "histfill_fleet_request_tasks",
            "Tasks of a request each member finished (from the state topic).",
            labels=["request_id", "member"],
        )
        for request_id, counts in tasks_by_member(self.view).items():
            for member, n in sorted(counts.items()):
                per_request.add_metric([request_id, member], n)
        return [tasks, values, per_request]


def record_total(record: dict[str, Any]) -> int:
    """How many chunk tasks a request record's plan has."""
    return BackfillRequest.from_record(record).plan().total_chunks


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _elapsed(start: datetime | None, end: datetime) -> float:
    return 0.0 if start is None else max(0.0, (end - start).total_seconds())
