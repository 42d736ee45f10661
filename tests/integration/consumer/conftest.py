"""Consumer fixtures: real `python -m consumer` processes and a producer of test batches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from confluent_kafka import Producer

from shared.batch import PointBatch
from shared.bootstrap import ensure_infrastructure
from shared.codec import BatchCodec
from shared.kafka import producer_config
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from tests.helpers import wait_for

MINUTE_US = 60_000_000
BASE_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z


def make_batch(
    address: str,
    start_us: int,
    n: int,
    *,
    connector: str = "Simulator",
    step_us: int = MINUTE_US,
    request_id: str | None = None,
    unit: str | None = None,
) -> PointBatch:
    """A deterministic slice: value = minute index + a per-point offset."""
    ts = start_us + np.arange(n, dtype=np.int64) * step_us
    offset = float(sum(address.encode()) % 97)
    return PointBatch.from_columns(
        address,
        connector,
        ts,
        (ts - BASE_US) / MINUTE_US + offset,
        request_id=request_id,
        unit=unit,
    )


class BatchProducer:
    """Publishes batches (or raw bytes) keyed by source address, like the real producer."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self._producer = Producer(producer_config(settings))
        self._codec = BatchCodec()
        self.values = 0

    def send(self, topic: str, batch: PointBatch) -> None:
        self._producer.produce(topic, self._codec.encode(batch), key=batch.source_address.encode())
        self._producer.poll(0)
        self.values += len(batch)

    def send_raw(self, topic: str, value: bytes | None, key: bytes = b"poison") -> None:
        self._producer.produce(topic, value, key=key, headers=[("origin", b"test")])

    def flush(self) -> None:
        assert self._producer.flush(30) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConsumerProcess:
    """A real consumer service process, started with the test's environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **env,
            "METRICS_PORT": str(self.metrics_port),
            "LOG_FORMAT": "json",
            "FLUSH_INTERVAL_MS": env.get("FLUSH_INTERVAL_MS", "200"),
            "SINK_RETRY_MAX_BACKOFF_S": "1",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def metric(self, name: str) -> float:
        """Sum of a metric's samples from /metrics (0 if absent or not up yet)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def ready(self) -> bool:
        try:
            return (
                httpx.get(f"http://127.0.0.1:{self.metrics_port}/ready", timeout=2).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 40) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def infra(settings: ConsumerSettings) -> ConsumerSettings:
    """Topics and table exist before the test produces."""
    ensure_infrastructure(settings)
    return settings


@pytest.fixture
def producer(infra: ConsumerSettings) -> BatchProducer:
    return BatchProducer(infra)


@pytest.fixture
def start_consumer(
    stack_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ConsumerProcess]]:
    """Start consumer processes; any still running at the end are killed."""
    started: list[ConsumerProcess] = []

    def start(**extra_env: str) -> ConsumerProcess:
        proc = ConsumerProcess(
            {**stack_env, **extra_env}, tmp_path / f"consumer-{len(started)}.log"
        )
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        if proc.process is not None and proc.process.poll() is None:
            proc.kill()


def count_rows(qdb: QuestDBSQL, table: str) -> int:
    return int(qdb.scalar(f"SELECT count() FROM {table}") or 0)


def duplicate_keys(qdb: QuestDBSQL, table: str) -> list[list[object]]:
    return qdb.rows(
        f"SELECT * FROM (SELECT ts, source_address, count() c FROM {table} "
        "GROUP BY ts, source_address) WHERE c > 1 LIMIT 5"
    )


def wait_for_count(qdb: QuestDBSQL, table: str, expected: int, timeout: float = 90) -> None:
    wait_for(lambda: count_rows(qdb, table) >= expected, timeout=timeout, interval=0.25)
    assert count_rows(qdb, table) == expected
