"""A fleet task worker: Kafka's consume-transform-produce loop over chunk tasks.

Each worker is a member of the consumer group ``PRODUCER_GROUP_ID`` on ``TOPIC_TASKS`` and owns
a transactional producer whose id is its own (``histfill.<state topic>.<instance>.w<k>``). The
commit protocol of one task (``<request id>:<chunk index>`` at offset ``o``)::

    poll the task                       (after a rebalance: fence departed workers, catch up state)
    request cancelled / finished, or every point already holds the window -> skip:
        begin; task record; send_offsets(o + 1); commit
    else, for each transaction of the chunk (ChunkRunner: one, unless points fail):
        begin; data batches; done: checkpoint; send_offsets(o)        <- fencing only, no advance
        commit
    then: begin; task record; send_offsets(o + 1); commit             <- the task is consumed

``send_offsets_to_transaction`` carries the consumer's group metadata (KIP-447): a worker that
lost its partitions in a rebalance (a zombie) has a stale generation, so its transaction fails
and is aborted, and the new owner redoes the task. A worker that dies leaves its transaction
open; a survivor fences its transactional id at the next rebalance (``init_transactions``
aborts it at once instead of after ``transaction.timeout.ms``), catches up with the state topic
(so it sees what the dead worker committed) and redoes the dead worker's tasks from the last
committed offsets: a task whose checkpoint is there is skipped, so no chunk is published twice.

A paused request's task is put back (seek to ``o``) and its partition paused until the request
is resumed: no transaction is held open while paused.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from producer.errors import ChunkCancelled, FencedError, PublishError
from producer.state import checkpoints as cp
from producer.state.progress import BackfillRequest, RequestProgress, Status, iso, utc_now
from producer.worker.publisher import BackfillPublisher
from shared.kafka import consumer_config, producer_config

if TYPE_CHECKING:
    from producer.fleet.coordinator import FleetOrchestrator

log = structlog.get_logger(__name__)
SESSION_TIMEOUT_MS = 10_000
"""How long a silent worker keeps its tasks before the group gives them to the others."""


def task_value(request_id: str, chunk_index: int) -> bytes:
    """A chunk task on the tasks topic."""
    return json.dumps({"requestId": request_id, "chunkIndex": chunk_index}).encode()


def worker_id(instance: str, worker: int) -> str:
    """A fleet worker's name: its Kafka ``client.id`` and the stem of its transactional id."""
    return f"{instance}.w{worker}"


def fleet_transactional_id(topic_state: str, wid: str) -> str:
    """A fleet worker's transactional id: stable across its restarts, unique in the fleet."""
    return f"histfill.{topic_state}.{wid}"


class TaskWorker:
    """One worker of a member: a group consumer of the tasks topic and a transactional
    producer; see the module docstring for the commit protocol."""

    def __init__(self, fleet: FleetOrchestrator, index: int) -> None:
        self.fleet = fleet
        settings = fleet.settings
        self.id = worker_id(fleet.instance, index)
        self.topic = settings.topic_tasks
        self.publisher = BackfillPublisher(
            settings,
            index,
            fleet.codec,
            workers=settings.backfill_workers,
            max_in_flight=settings.max_batches_in_flight,
            txn_id=fleet_transactional_id(settings.topic_state, self.id),
            commit_delay_s=settings.test_commit_delay_seconds,
        )
        self.consumer: Any = None
        self.partitions: set[int] = set()
        self.paused: dict[int, str] = {}  # partition -> the paused request holding it
        self._rebalanced = False

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self.partitions = {tp.partition for tp in partitions}
        self.paused.clear()
        self._rebalanced = True

    def _revoked(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        self.partitions = set()
        self.paused.clear()

    def open(self) -> None:
        """Create the producer (fencing this worker's predecessor) and join the group."""
        self.publisher.start()
        config = consumer_config(
            self.fleet.settings,
            self.fleet.settings.producer_group_id,
            **{
                "enable.auto.commit": False,  # offsets are committed in the task's transaction
                "client.id": self.id,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": 1000,
                "partition.assignment.strategy": "roundrobin",
                "queued.max.messages.kbytes": 1024,
            },
        )
        self.consumer = Consumer(config)
        self.consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)

    async def run(self) -> None:
        """Take tasks until the member stops."""
        await asyncio.to_thread(self.open)
        try:
            while not self.fleet.stopping:
                msg: Message | None = await asyncio.to_thread(self.consumer.poll, 0.5)
                self._resume_unpaused()
                if self._rebalanced:
                    self._rebalanced = False
                    await self.fleet.after_rebalance(self)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    log.warning("task_poll_error", worker=self.id, error=error.str())
                    continue
                await self._task(msg)
        finally:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Leave the group (the others take the partitions at once) and close the producer."""
        self.publisher.close()
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

    # -- one task -------------------------------------------------------------------------------

    async def _task(self, msg: Message) -> None:
        task = json.loads(msg.value() or b"{}")
        rid, index = str(task.get("requestId")), int(task.get("chunkIndex", -1))
        here = TopicPartition(self.topic, msg.partition() or 0, msg.offset() or 0)
        view = self.fleet.view
        record = view.requests.get(rid)
        if record is None:  # submitted a moment ago: the request record precedes its tasks
            await self.fleet.tailer.catch_up()
            record = view.requests.get(rid)
        if record is None:
            await self._finish(here, rid, index, "unknown")
            return
        status = Status(record["status"])
        if status is Status.PAUSED:
            self._hold(here, rid)
            return
        if status.final:
            await self._finish(here, rid, index, "cancelled")
            return
        request = BackfillRequest.from_record(record)
        plan = request.plan()
        chunk = plan.chunk(index)
        pending = view.pending_points(
            request.connector_type, chunk.points, chunk.start_us, chunk.end_us
        )
        if not pending:
            await self._finish(here, rid, index, "skipped")
            return
        progress = RequestProgress(request, plan.total_chunks)
        self.publisher.offsets = [here]  # every commit of the chunk: fenced by the generation
        self.publisher.group_metadata = self.consumer.consumer_group_metadata()
        try:
            await self.fleet.chunk_runner.run(
                self.publisher, progress, chunk, pending, functools.partial(self._check, rid)
            )
        except ChunkCancelled:
            if view.requests.get(rid, {}).get("status") == Status.CANCELLED.value:
                await self._finish(here, rid, index, "cancelled")
            else:  # paused or stopping: the task is not consumed, it runs again later
                self._hold(here, rid)
            return
        except Exception:  # a worker must not die with its task: redo it
            log.exception("task_crashed", worker=self.id, request_id=rid, chunk=index)
            self._rewind(here)
            try:
                await asyncio.to_thread(self.publisher.restart)
            except PublishError as restart_error:  # fenced: a newer worker took this id
                if isinstance(restart_error, FencedError):
                    self.fleet.fenced_workers += 1
                    raise
                log.error("publisher_restart_failed", worker=self.id, error=str(restart_error))
            await asyncio.sleep(self.fleet.settings.retry_backoff_seconds)
            return
        finally:
            self.publisher.offsets = None
        outcome = "failed" if progress.failed else "committed"
        await self._finish(here, rid, index, outcome, values=progress.values_published)

    def _check(self, rid: str) -> None:
        status = self.fleet.view.requests.get(rid, {}).get("status")
        if self.fleet.stopping or status in (Status.CANCELLED.value, Status.PAUSED.value):
            raise ChunkCancelled(str(status))

    def _hold(self, here: TopicPartition, rid: str) -> None:
        """Put the task back and pause its partition until the request may go on."""
        self._rewind(here)
        if not self.fleet.stopping and here.partition in self.partitions:
            self.consumer.pause([TopicPartition(self.topic, here.partition)])
            self.paused[here.partition] = rid

    def _rewind(self, here: TopicPartition) -> None:
        if here.partition in self.partitions:
            self.consumer.seek(TopicPartition(self.topic, here.partition, here.offset))

    def _resume_unpaused(self) -> None:
        for partition, rid in list(self.paused.items()):
            if self.fleet.view.requests.get(rid, {}).get("status") != Status.PAUSED.value:
                self.consumer.resume([TopicPartition(self.topic, partition)])
                del self.paused[partition]

    async def _finish(
        self, here: TopicPartition, rid: str, index: int, outcome: str, values: int = 0
    ) -> None:
        """The task's outcome and its consumed offset, in one transaction."""
        record = {
            "kind": "task",
            "requestId": rid,
            "chunkIndex": index,
            "member": self.fleet.instance,
            "worker": self.id,
            "outcome": outcome,
            "values": values,
            "at": iso(utc_now()),
        }
        nxt = TopicPartition(self.topic, here.partition, here.offset + 1)
        pub = self.publisher
        pub.offsets, pub.group_metadata = [nxt], self.consumer.consumer_group_metadata()

        def commit() -> None:
            pub.begin()
            pub.checkpoint(cp.task_key(rid, index), cp.encode(record))
            pub.commit()

        try:
            await asyncio.to_thread(commit)
        except Exception as exc:  # noqa: BLE001  # fenced or a Kafka blip: the task is redone
            log.warning("task_commit_failed", worker=self.id, request_id=rid, error=str(exc))
            await asyncio.to_thread(pub.abort)
            self._rewind(here)
            await asyncio.to_thread(pub.restart)
            return
        finally:
            pub.offsets = None
        self.fleet.metrics_task(outcome, values)


def fence_transactional_ids(settings: Any, ids: list[str], timeout_s: float = 30.0) -> None:
    """``init_transactions`` for each id: aborts the transaction a dead worker left open."""
    for txn_id in ids:
        producer = Producer(producer_config(settings, **{"transactional.id": txn_id}))
        try:
            producer.init_transactions(timeout_s)
        except KafkaException as exc:
            log.warning("fence_failed", transactional_id=txn_id, error=str(exc))
        finally:
            producer.flush(5.0)
