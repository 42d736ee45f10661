"""Fixtures for the producer on the real stack: settings, a read_committed reader, the service
as a real subprocess (``python -m producer``) and the orchestrator on a background event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from producer.sources.connectors import Connectors
from producer.worker.orchestrator import Orchestrator
from shared.batch import PointBatch
from shared.codec import BatchCodec
from shared.kafka import consumer_config, ensure_topics, topic_specs
from shared.settings import CommonSettings, ProducerSettings, load_settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


@pytest.fixture
def producer_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Environment of a producer on this test's own topics, with fast retries."""
    return {
        **stack_env,
        "BACKFILL_WORKERS": "2",
        "RETRY_BACKOFF_SECONDS": "0.01",
        "LOG_FORMAT": "json",
        # this test's own request budgets in Redis: no state shared with other tests' hosts
        "SOURCE_RATE_LIMIT_KEY_PREFIX": f"test:{stack_env['TOPIC_STATE']}:ratelimit:",
        "TOPIC_CHANGES": f"{stack_env['TOPIC_STATE']}.changes",
    }


@pytest.fixture
def producer_settings(producer_env: dict[str, str], admin: AdminClient) -> ProducerSettings:
    """The producer's settings; the test's topics exist."""
    settings = load_settings(ProducerSettings, producer_env)
    ensure_topics(admin, topic_specs(settings))
    return settings


def read_committed(settings: CommonSettings, topic: str | None = None) -> list[PointBatch]:
    """Every batch a ``read_committed`` reader sees in the backfill topic, read to its end."""
    name = topic or settings.topic_backfill
    consumer = Consumer(
        consumer_config(
            settings, f"reader-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True}
        )
    )
    codec = BatchCodec()
    batches: list[PointBatch] = []
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)

        def drained() -> bool:
            for msg in consumer.consume(1000, 0.1):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                elif err is None:
                    batches.append(codec.decode(msg.value()))
            return not pending

        wait_for(drained, timeout=30)
    finally:
        consumer.close()
    return batches


def values_by_point(batches: list[PointBatch]) -> dict[str, list[int]]:
    """Every timestamp seen per point, duplicates included."""
    out: dict[str, list[int]] = {}
    for batch in batches:
        out.setdefault(batch.source_address, []).extend(batch.timestamps_us.tolist())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """``python -m producer`` as a child process, configured only by environment variables."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **extra: str) -> Service:
        env = {**os.environ, **self.env, **extra, "API_PORT": str(self.port)}
        env["API_HOST"] = "127.0.0.1"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "producer"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        wait_for(self._ready, timeout=60, interval=0.1)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"producer exited {self.proc.returncode}: {self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=30)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def service(
    producer_env: dict[str, str], producer_settings: ProducerSettings, tmp_path: Path
) -> Iterator[Service]:
    """A producer service for this test (not yet started), stopped afterwards."""
    svc = Service(producer_env, tmp_path / "producer.log")
    yield svc
    svc.stop()


class LoopThread:
    """An event loop on a background thread, so tests wait with ``wait_for``, not sleeps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    """A background event loop for an in-process orchestrator."""
    runner = LoopThread()
    yield runner
    runner.close()


def start_orchestrator(
    loop: LoopThread, settings: ProducerSettings, connectors: Connectors | None = None
) -> Orchestrator:
    """An orchestrator started on ``loop``, its state rebuilt from the test's state topic."""

    async def make() -> Orchestrator:
        orchestrator = Orchestrator(settings, connectors or Connectors.from_settings(settings))
        await orchestrator.start()
        return orchestrator

    return loop.run(make())
