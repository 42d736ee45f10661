# ruff: noqa: E402  (imports follow the sys.path fix below)
"""End to end: simulator -> producer -> Kafka -> consumer -> QuestDB + Redis, against a ceiling.

Run: ``.venv/bin/python bench/e2e.py [--points 100] [--days 365] [--connector Simulator|PIWebApi]
[--workers 4] [--chunk 30d] [--consumers 1] [--runs 1] [--out bench/results/e2e.json]
[--png bench/results/e2e.png]`` (``make bench`` runs it with the defaults). Needs the local stack
(``make stack-up``); ``QDB_CLIENT_CONF`` with ``--questdb-pid`` and ``--questdb-metrics-url``
point it at another QuestDB (one started with other server settings, or with metrics on).

The real services run as child processes configured by environment variables only, on topics,
table, consumer group and Redis keys unique to this run: ``python -m consumer`` (waited for until
its partitions are assigned), ``python -m producer`` and, with ``--connector PIWebApi``, the PI Web
API simulator (``python -m histfill simulate pi``). One backfill request for ``--points``
generated sine tags (``SIMTAG00000``..) over ``--days`` of 1-minute data (the default 100 x 1 year
is 52.56 M values) goes through the producer's HTTP API, and from that request on the bench
samples, every ``--sample-interval`` seconds, the values the producer has published (its progress
API), the values the consumer has ingested (its ``/metrics``, ``histfill_values_ingested_total``),
the rows visible in QuestDB (``count()``), and each child's RSS (psutil; the kernel's ``VmHWM`` is
read too, so no peak between samples is missed).

End-to-end values/s is the simulator's exact count divided by the time from the request to the
last row visible in QuestDB. The ceiling is the same values, pre-generated as numpy arrays and
written straight to a separate table of the same DDL with the questdb client's
``Sender.dataframe()`` in requests of the consumer's size (no Kafka, no decoding, no Redis), timed
the same way: first request to last row visible. Every table, topic, group and key of the run is
deleted afterwards (``--keep`` keeps them). Prints a summary; writes JSON and a PNG chart.

Each run reports its ratio to the ceiling, the table layout (``QDB_REQUEST_ID_COLUMN``), and
QuestDB's CPU seconds per million rows for the pipeline and the ceiling side by side (plus its
own counters when its Prometheus endpoint answers); with ``--runs N`` the JSON and chart are the
median run's, with every run's figures under ``runs``. A backfill partition counts as drained
when its lag in seconds is 0 (a drained partition keeps a message lag of 1: the marker that
closed its last transaction).
"""

from __future__ import annotations

import sys
from pathlib import Path

# ``python bench/e2e.py`` puts bench/ first on sys.path, where bench/producer.py and
# bench/consumer.py shadow the packages: resolve the project's packages from the repository root.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import redis
import structlog
from questdb import Sender

from bench.cleanup import cleanup
from histfill import stack
from producer.planning.planner import parse_chunk_size, plan
from producer.planning.requests import Limits
from shared.bootstrap import ensure_infrastructure
from shared.qdb import PointTableLayout, QuestDBSQL, ensure_point_table, points_table
from shared.settings import ConsumerSettings, ProducerSettings, load_settings
from simulators.data import TagCatalog, events, expected_count

ROOT = _BENCH.parent
GOAL_VALUES_PER_S = 250_000
GOAL_RATIO_TO_CEILING = 0.5
LASTING_GOAL_VALUES_PER_S = 1_000_000
FINAL = {"Completed", "CompletedWithErrors", "Failed", "Cancelled"}
_INGESTED = re.compile(r"^histfill_values_ingested_total\{[^}]*\}\s+(\S+)$", re.MULTILINE)
_DEAD = re.compile(r"^histfill_dlq_messages_total\{[^}]*\}\s+(\S+)$", re.MULTILINE)
# seconds, not messages: a drained backfill partition keeps a message lag of 1 (the marker
# closing its last transaction), while its lag in seconds is 0 once nothing readable is left
_LAG = re.compile(
    r'^histfill_consumer_lag_seconds\{partition="(\d+)",topic="([^"]+)"\}\s+(\S+)$', re.MULTILINE
)
_FLUSH_SUM = re.compile(r"^histfill_flush_seconds_sum\s+(\S+)$", re.MULTILINE)
_FLUSH_COUNT = re.compile(r"^histfill_flush_seconds_count\s+(\S+)$", re.MULTILINE)


# ---------------------------------------------------------------------------- child processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Child:
    """One of our processes: started, sampled for RSS, stopped."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ps: psutil.Process = field(init=False)
    sampled_peak_rss: int = 0
    cpu_at_start: float = 0.0

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], logs: Path) -> Child:
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log)
        return cls(name, proc, log_path)

    def wait_http(self, url: str, timeout: float = 90) -> None:
        """Poll ``url`` until it answers 200; fail (with the log's path) if we die first."""
        deadline = time.monotonic() + timeout
        while not http_ok(url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"{self.name} did not get ready ({url}); {self.log_path}:\n{tail}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sample(self) -> int:
        with suppress(psutil.Error):
            rss = int(self.ps.memory_info().rss)
            self.sampled_peak_rss = max(self.sampled_peak_rss, rss)
            return rss
        return 0

    def cpu_seconds(self) -> float:
        with suppress(psutil.Error):
            t = self.ps.cpu_times()
            return float(t.user + t.system)
        return float("nan")

    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark (``VmHWM``) if readable, never below the sampled peak."""
        peak = self.sampled_peak_rss
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        return round(peak / 2**20, 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


_QDB_METRIC = re.compile(r"^(questdb_[a-z_]+)\s+(\S+)$", re.MULTILINE)
_QDB_COUNTERS = (
    "questdb_wal_written_rows_total",
    "questdb_wal_apply_written_rows_total",
    "questdb_wal_apply_physically_written_rows_total",
    "questdb_physically_written_rows_total",
    "questdb_o3_commits_total",
    "questdb_commits_total",
    "questdb_line_http_recv_bytes",
)


def questdb_counters(metrics_url: str | None) -> dict[str, float]:
    """QuestDB's Prometheus counters we explain with (empty when metrics are off)."""
    if not metrics_url:
        return {}
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return {}
    found = {name: float(value) for name, value in _QDB_METRIC.findall(text)}
    return {k: found[k] for k in _QDB_COUNTERS if k in found}


def counter_deltas(before: dict[str, float], after: dict[str, float], rows: int) -> dict[str, Any]:
    """QuestDB's counters over a phase, explained: rows physically written by WAL apply per row
    (out-of-order merges rewrite rows already in a partition), commits, ILP bytes per row."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    if not delta or not rows:
        return {}
    applied = delta.get("questdb_wal_apply_written_rows_total") or rows
    return {
        "rewrite_factor": round(
            delta.get("questdb_wal_apply_physically_written_rows_total", 0.0) / applied, 2
        ),
        "commits": int(delta.get("questdb_commits_total", 0)),
        "o3_commits": int(delta.get("questdb_o3_commits_total", 0)),
        "ilp_bytes_per_row": round(delta.get("questdb_line_http_recv_bytes", 0.0) / rows, 1),
    }


STACK_PORTS = {"kafka": 9092, "questdb": 9000, "redis": 6379}
_stack_pids: dict[str, int] = {}


def stack_pids() -> dict[str, int]:
    """The stack's processes by name: the local stack's pid files, else (a stack started from
    another checkout) whoever listens on the service's port; ``--questdb-pid`` overrides."""
    if _stack_pids:
        return _stack_pids
    paths = stack.StackPaths()
    listening: dict[int, int] = {}
    with suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid:
                listening.setdefault(conn.laddr.port, conn.pid)
    for name, port in STACK_PORTS.items():
        with suppress(OSError, ValueError):
            _stack_pids[name] = int(paths.pid_file(name).read_text().strip())
            continue
        if port in listening:
            _stack_pids[name] = listening[port]
    return _stack_pids


def stack_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the stack's processes (with their children), by name."""
    out: dict[str, float] = {}
    for name, pid in stack_pids().items():
        with suppress(psutil.Error):
            root = psutil.Process(pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                with suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system
            out[name] = total
    return out


def wait_questdb_quiet(max_cores: float = 0.25, timeout: float = 60.0) -> float:
    """Wait until QuestDB's CPU use drops below ``max_cores`` over a second (background work of
    an earlier run: WAL apply, partition purges after a DROP), so each measurement starts from
    the same quiet server. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = stack_cpu_seconds().get("questdb")
        time.sleep(1.0)
        after = stack_cpu_seconds().get("questdb")
        if before is None or after is None or after - before < max_cores:
            break
    return round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------- measurements


def metric_sum(pattern: re.Pattern[str], text: str) -> int:
    return int(sum(float(v) for v in pattern.findall(text)))


def rows(sql: QuestDBSQL, table: str) -> int:
    return int(sql.scalar(f"SELECT count() FROM {table}") or 0)  # noqa: S608  # our own name


def stage(times: list[float], series: list[int], total: int) -> dict[str, Any]:
    """Rates of one stage from its samples: from the request (t=0), while active, at best."""
    done = next((t for t, v in zip(times, series, strict=True) if v >= total), None)
    first = next((t for t, v in zip(times, series, strict=True) if v > 0), None)
    end_t = done if done is not None else times[-1]
    reached = series[-1] if done is None else total
    out: dict[str, Any] = {
        "values": int(min(series[-1], total) if done is None else total),
        "first_value_at_s": round(first, 3) if first is not None else None,
        "done_at_s": round(done, 3) if done is not None else None,
        "values_per_s": round(reached / end_t) if end_t > 0 else 0,
        "active_values_per_s": 0,
        "peak_values_per_s": 0,
    }
    if first is not None and end_t > first:
        # the first sample above 0 may be up to one interval after the stage really started
        out["active_values_per_s"] = round(reached / (end_t - first))
        out["peak_values_per_s"] = peak_rate(times, series, window=max(1.0, min(5.0, end_t / 4)))
    return out


def peak_rate(times: list[float], series: list[int], window: float) -> int:
    """The best rate over any stretch of at least ``window`` seconds."""
    best, i = 0.0, 0
    for j in range(len(times)):
        while i < j and times[j] - times[i + 1] >= window:
            i += 1
        span = times[j] - times[i]
        if span >= window:
            best = max(best, (series[j] - series[i]) / span)
    return round(best)


def thin(samples: list[list[float]], keep: int = 400) -> list[list[float]]:
    """At most ``keep`` evenly spaced samples (always the last), for the JSON."""
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    picked = [samples[int(k * step)] for k in range(keep)]
    return [*picked[:-1], samples[-1]]


# ---------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Workload:
    connector: str
    points: list[str]
    start: datetime
    end: datetime
    interval_s: float
    chunk: str
    step_us: int = 0  # the producer's window: the chunk, or shorter where the plan splits it

    @property
    def expected(self) -> int:
        """The simulator's exact count, computed here, independently of the services."""
        n = len(self.points)
        return sum(
            expected_count(p, self.start, self.end, interval_s=self.interval_s, generated_tags=n)
            for p in self.points
        )

    def body(self) -> dict[str, Any]:
        return {
            "connectorType": self.connector,
            "pointAddresses": self.points,
            "startTime": self.start.isoformat().replace("+00:00", "Z"),
            "endTime": self.end.isoformat().replace("+00:00", "Z"),
            "chunkSize": self.chunk,
        }


def consumer_ports(env: dict[str, str]) -> list[str]:
    """The metrics port of each consumer process (``METRICS_PORT`` holds them comma-separated)."""
    return env["METRICS_PORT"].split(",")


def start_services(work: Workload, env: dict[str, str], logs: Path) -> list[Child]:
    """Consumers (until each holds partitions), simulator if used, then the producer."""
    py = sys.executable
    children: list[Child] = []
    try:
        ports = consumer_ports(env)
        for k, port in enumerate(ports):
            name = "consumer" if k == 0 else f"consumer{k + 1}"
            consumer = Child.start(
                name, [py, "-m", "consumer"], {**env, "METRICS_PORT": port}, logs
            )
            children.append(consumer)
        for consumer, port in zip(children, ports, strict=True):
            # ready = partitions assigned: the group join stays out of the measured time
            consumer.wait_http(f"http://127.0.0.1:{port}/ready")
        if len(ports) > 1:  # every member holds its share once the group has settled
            wait_all_hold(ports)
        if work.connector == "PIWebApi":
            port = free_port()
            argv = [py, "-m", "histfill", "simulate", "pi", "--port", str(port)]
            argv += ["--generated-tags", str(len(work.points))]
            argv += ["--interval-s", str(work.interval_s)]
            simulator = Child.start("simulator", argv, env, logs)
            children.append(simulator)
            simulator.wait_http(f"http://127.0.0.1:{port}/_sim/health")
            env = {**env, "PI_WEB_API_URL": f"http://127.0.0.1:{port}/piwebapi"}
            # the simulator takes any Basic credentials; the PI client needs some
            env |= {"PI_DEFAULT_SERVER": "SIMPI", "PI_USERNAME": "bench", "PI_PASSWORD": "bench"}
        producer = Child.start("producer", [py, "-m", "producer"], env, logs)
        children.append(producer)
        producer.wait_http(f"http://127.0.0.1:{env['API_PORT']}/ready")
    except BaseException:
        for child in reversed(children):
            child.stop()
        raise
    return children


def wait_all_hold(ports: list[str], timeout: float = 120) -> None:
    """Until every consumer reports assigned partitions and together they hold them all once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = []
        for port in ports:
            with suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                found = re.search(r"^histfill_consumer_assigned_partitions\s+(\S+)$", text, re.M)
                held.append(float(found.group(1)) if found else 0.0)
        if len(held) == len(ports) and all(h > 0 for h in held):
            return
        time.sleep(0.2)
    raise SystemExit(f"the {len(ports)} consumers did not all get partitions in {timeout} s")


@dataclass
class Sampler:
    """Takes one sample of every stage: [t, published, ingested, visible], plus RSS."""

    client: httpx.Client
    api_url: str
    metrics_urls: list[str]
    sql: QuestDBSQL
    table: str
    children: list[Child]
    t0: float
    request_id: str = ""
    samples: list[list[float]] = field(default_factory=list)
    rss: list[list[float]] = field(default_factory=list)  # [t, MB of each child]
    progress: dict[str, Any] = field(default_factory=dict)
    metrics_text: str = ""
    backfill_topic: str = ""
    lagging: set[int] = field(default_factory=set)  # backfill partitions seen with a lag
    drained_at: dict[int, float] = field(default_factory=dict)  # ... and when it reached 0

    def take(self) -> list[float]:
        path = f"/api/backfill/request/{self.request_id}"
        self.progress = self.client.get(self.api_url + path).json()["data"]
        # every consumer's /metrics, one text: counters are summed, lags are per partition
        self.metrics_text = "\n".join(
            self.client.get(f"{url}/metrics").text for url in self.metrics_urls
        )
        visible = rows(self.sql, self.table)
        now = time.perf_counter() - self.t0
        self.rss.append([round(now, 3), *(round(c.sample() / 2**20, 1) for c in self.children)])
        for partition, topic, lag in _LAG.findall(self.metrics_text):
            if topic != self.backfill_topic:
                continue
            if float(lag) > 0:
                self.lagging.add(int(partition))
                self.drained_at.pop(int(partition), None)  # moved to another member, say
            elif int(partition) in self.lagging:
                self.drained_at.setdefault(int(partition), round(now, 1))
        published = int(self.progress["valuesPublished"])
        sample = [round(now, 3), published, metric_sum(_INGESTED, self.metrics_text), visible]
        self.samples.append(sample)
        return sample


def sample_until_visible(s: Sampler, expected: int, args: argparse.Namespace) -> float:
    """Sample until every row is visible (and the other stages have reported); returns when
    the last row became visible, in seconds since the request."""
    visible_at: float | None = None
    settle_until = float("inf")
    tty, next_line = sys.stdout.isatty(), 0.0
    while True:
        now, published, ingested, visible = s.take()
        if tty or now >= next_line:  # a live line on a terminal, one line per 10 s in a log
            print(
                f"{now:7.1f}s  published {int(published):>12,}  ingested {int(ingested):>12,}  "
                f"visible {int(visible):>12,} / {expected:,}",
                end="\r" if tty else "\n",
                flush=True,
            )
            next_line = now + 10
        if visible >= expected and visible_at is None:
            visible_at = now
            settle_until = now + 30  # the last progress/metrics updates may trail the rows
        status = s.progress["status"]
        drained = s.lagging <= set(s.drained_at)  # the consumer shows lag about once a second
        if visible_at is not None and (
            (status in FINAL and ingested >= expected and drained) or now > settle_until
        ):
            if tty:
                print()
            return visible_at
        if status in FINAL - {"Completed"}:
            raise SystemExit(f"\nbackfill ended {status}: {s.progress['errors']}")
        if dead := [c.name for c in s.children if not c.alive()]:
            raise SystemExit(f"\n{dead} exited; logs in {s.children[0].log_path.parent}")
        if now > args.timeout:
            raise SystemExit(f"\nonly {int(visible):,} of {expected:,} rows after {now:.0f}s")
        time.sleep(args.sample_interval)


def run_pipeline(
    work: Workload, env: dict[str, str], sql: QuestDBSQL, table: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Start the services, submit the request, sample until every value is visible."""
    logs = Path(tempfile.mkdtemp(prefix="histfill-e2e-"))
    api_url = f"http://127.0.0.1:{env['API_PORT']}"
    metrics_urls = [f"http://127.0.0.1:{port}" for port in consumer_ports(env)]
    expected = work.expected
    children = start_services(work, env, logs)
    try:
        quiet_wait = wait_questdb_quiet()
        for child in children:
            child.sample()
        idle_rss = {c.name: round(c.sampled_peak_rss / 2**20, 1) for c in children}
        with httpx.Client(timeout=30) as client:
            cpu0 = {c.name: c.cpu_seconds() for c in children} | stack_cpu_seconds()
            qdb0 = questdb_counters(args.questdb_metrics_url)
            s = Sampler(client, api_url, metrics_urls, sql, table, children, time.perf_counter())
            s.backfill_topic = env["TOPIC_BACKFILL"]
            s.samples.append([0.0, 0, 0, 0])
            answer = client.post(f"{api_url}/api/backfill/start", json=work.body())
            if answer.status_code != 200:
                raise SystemExit(f"backfill request refused: {answer.status_code} {answer.text}")
            s.request_id = answer.json()["data"]["requestId"]
            visible_at = sample_until_visible(s, expected, args)
            cpu1 = {c.name: c.cpu_seconds() for c in children} | stack_cpu_seconds()
            qdb1 = questdb_counters(args.questdb_metrics_url)
            peak = {c.name: c.peak_rss_mb() for c in children}
    finally:
        for child in reversed(children):
            child.stop()
    if not args.keep:  # kept on failure (the error names the folder) and with --keep
        shutil.rmtree(logs, ignore_errors=True)

    samples, progress = s.samples, s.progress
    times = [s[0] for s in samples]
    series = [[int(s[k]) for s in samples] for k in (1, 2, 3)]
    backlog_kafka = max(p - i for p, i in zip(series[0], series[1], strict=True))
    backlog_wal = max(i - v for i, v in zip(series[1], series[2], strict=True))
    flush_s = float(sum(float(v) for v in _FLUSH_SUM.findall(s.metrics_text)))
    flushes = metric_sum(_FLUSH_COUNT, s.metrics_text)
    return {
        "request_id": s.request_id,
        "visible_at_s": visible_at,
        "progress": progress,
        "dead_letters": metric_sum(_DEAD, s.metrics_text),
        "samples": samples,
        "rss": {"columns": ["seconds", *(c.name for c in children)], "samples": s.rss},
        # when each backfill partition's lag first reached 0 (the consumer's /metrics, updated
        # about once a second): a wide spread means the partitions advance through time at
        # different paces, so each flush spans a wider time range (out-of-order for QuestDB)
        "questdb_quiet_wait_s": quiet_wait,
        "partition_drained_at_s": {str(k): v for k, v in sorted(s.drained_at.items())},
        "consumer_flushes": {
            # a flush: QuestDB write + Redis + offsets; the rest of the consumer's time is
            # polling, decoding and building frames (nothing overlaps: the loop is serial)
            "count": flushes,
            "seconds_total": round(flush_s, 2),
            "mean_seconds": round(flush_s / flushes, 4) if flushes else None,
            "mean_values": round(expected / flushes) if flushes else None,
        },
        "stages": {
            "producer_publish": {
                **stage(times, series[0], expected),
                "reported_values_per_s": round(float(progress["valuesPerSecond"])),
                "reported_elapsed_s": progress["elapsedSeconds"],
                "batches": progress["batchesPublished"],
                "chunks": progress["totalChunks"],
            },
            "consumer_ingest": stage(times, series[1], expected),
            "questdb_visible": stage(times, series[2], expected),
        },
        "max_backlog_values": {
            "kafka_published_not_ingested": backlog_kafka,
            "questdb_ingested_not_visible": backlog_wal,
        },
        "peak_rss_mb": peak,
        "idle_rss_mb": idle_rss,
        "cpu_seconds": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1 if k in cpu0},
        "questdb_metrics": counter_deltas(qdb0, qdb1, expected),
    }


# ---------------------------------------------------------------------------- the ceiling


def ceiling_frames(
    work: Workload, rows_per_request: int, max_values: int, request_id: bool = True
) -> tuple[list[pd.DataFrame], int]:
    """The workload's values as DataFrames of ``rows_per_request`` rows, in the order the producer
    publishes them (chunk window by chunk window, point by point), at most ``max_values``; with
    a ``request_id`` column if ``request_id`` (the table layout has one)."""
    catalog = TagCatalog(work.interval_s, len(work.points))
    names = pd.Index(work.points)
    start_us = int(work.start.timestamp()) * 1_000_000
    end_us = int(work.end.timestamp()) * 1_000_000
    step_us = work.step_us or parse_chunk_size(work.chunk) // timedelta(microseconds=1)
    frames: list[pd.DataFrame] = []
    pieces: list[tuple[int, Any, Any, Any]] = []
    held = total = 0

    def emit() -> None:
        nonlocal pieces, held
        if not held:
            return
        lengths = np.array([len(p[1]) for p in pieces], dtype=np.int64)
        codes = np.repeat(np.array([p[0] for p in pieces], dtype=np.int32), lengths)
        ts = np.concatenate([p[1] for p in pieces])
        frame = pd.DataFrame(
            {
                "source_address": pd.Categorical.from_codes(codes, categories=names),
                "value": np.concatenate([p[2] for p in pieces]),
                "quality": np.concatenate([p[3] for p in pieces]).astype(np.int16),
                "connector": pd.Categorical.from_codes(
                    np.zeros(held, np.int8), categories=pd.Index([work.connector])
                ),
                "ts": pd.DatetimeIndex(ts.view("datetime64[us]")).tz_localize("UTC"),
            },
            copy=False,
        )
        if request_id:
            frame["request_id"] = pd.Categorical.from_codes(
                np.zeros(held, np.int8), categories=pd.Index(["ceiling"])
            )
        frames.append(frame)
        pieces, held = [], 0

    for w0 in range(start_us, end_us, step_us):
        w1 = min(w0 + step_us, end_us)
        for code, point in enumerate(work.points):
            spec = catalog.get(point)
            assert spec is not None  # noqa: S101  # generated tags exist by construction
            ev = events(spec, w0, w1, limit=max_values - total)
            at = 0
            while at < len(ev):  # split a point's window across requests at the row limit
                take = min(len(ev) - at, rows_per_request - held)
                sl = slice(at, at + take)
                pieces.append((code, ev.timestamps_us[sl], ev.values[sl], ev.quality[sl]))
                held, total, at = held + take, total + take, at + take
                if held >= rows_per_request:
                    emit()
            if total >= max_values:
                break
        if total >= max_values:
            break
    emit()
    return frames, total


def run_ceiling(
    work: Workload,
    conf: str,
    sql_url: str,
    table: str,
    args: argparse.Namespace,
    layout: PointTableLayout,
) -> dict[str, Any]:
    """Write the same values straight to QuestDB with ``Sender.dataframe()``; time to visible."""
    built = time.perf_counter()
    frames, total = ceiling_frames(
        work, args.ceiling_rows_per_request, args.ceiling_max_values, layout.request_id
    )
    build_s = time.perf_counter() - built
    print(f"ceiling: {total:,} values in {len(frames)} frames built in {build_s:.1f}s")
    samples: list[list[float]] = [[0.0, 0]]
    stop = threading.Event()
    t0 = 0.0

    def sampler() -> None:
        with QuestDBSQL(sql_url) as sql:
            while not stop.is_set():
                samples.append([round(time.perf_counter() - t0, 3), rows(sql, table)])
                stop.wait(args.sample_interval)

    conf = conf if "auto_flush=" in conf else conf.rstrip(";") + ";auto_flush=off;"
    symbols = ["source_address", "connector"] + (["request_id"] if layout.request_id else [])
    quiet_wait = wait_questdb_quiet()
    me = psutil.Process()
    cpu0 = stack_cpu_seconds() | {"bench_sender": sum(me.cpu_times()[:2])}
    qdb0 = questdb_counters(args.questdb_metrics_url)
    t0 = time.perf_counter()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        with Sender.from_conf(conf) as sender:
            for frame in iter_pop(frames):
                sender.dataframe(frame, table_name=table, symbols=symbols, at="ts")
                sender.flush()
        sent = time.perf_counter() - t0
        with QuestDBSQL(sql_url) as sql:
            while (visible := rows(sql, table)) < total:
                if time.perf_counter() - t0 > args.timeout:
                    raise SystemExit(f"ceiling: only {visible:,} of {total:,} rows visible")
                time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        cpu1 = stack_cpu_seconds() | {"bench_sender": sum(me.cpu_times()[:2])}
        qdb1 = questdb_counters(args.questdb_metrics_url)
    finally:
        stop.set()
        thread.join(10)
    samples.append([round(elapsed, 3), visible])
    return {
        "values": total,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent, 3),
        "values_per_s": round(total / elapsed),
        "send_values_per_s": round(total / sent),
        "rows_per_request": args.ceiling_rows_per_request,
        "requests": -(-total // args.ceiling_rows_per_request),
        "frame_build_seconds": round(build_s, 2),
        "questdb_quiet_wait_s": quiet_wait,
        "cpu_seconds": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1 if k in cpu0},
        "questdb_metrics": counter_deltas(qdb0, qdb1, total),
        "samples": samples,
    }


def iter_pop(frames: list[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Hand out the frames front to back, letting each go once it has been sent."""
    frames.reverse()
    while frames:
        yield frames.pop()


# ---------------------------------------------------------------------------- chart & cleanup


def chart(
    result: dict[str, Any],
    e2e: list[list[float]],
    ceil: list[list[float]],
    rss: dict[str, Any],
    path: Path,
) -> None:
    import matplotlib  # noqa: PLC0415  # only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, mid, right) = plt.subplots(
        1, 3, figsize=(18, 5), gridspec_kw={"width_ratios": [3, 2, 2]}
    )
    scale = 1e6
    t = [s[0] for s in e2e]
    left.plot(t, [s[1] / scale for s in e2e], "--", color="tab:blue", label="e2e: published")
    left.plot(t, [s[2] / scale for s in e2e], ":", color="tab:orange", label="e2e: ingested")
    left.plot(t, [s[3] / scale for s in e2e], color="tab:green", lw=2, label="e2e: visible")
    if ceil:
        ct = [s[0] for s in ceil]
        left.plot(ct, [s[1] / scale for s in ceil], color="tab:red", lw=2, label="ceiling: visible")
    left.set_xlabel("seconds since the request")
    left.set_ylabel("values (millions)")
    left.set_title(f"{result['values']:,} values, {result['connector']} connector")
    left.grid(alpha=0.3)
    left.legend()

    rt = [r[0] for r in rss["samples"]]
    for k, name in enumerate(rss["columns"][1:], start=1):
        mid.plot(
            rt,
            [r[k] for r in rss["samples"]],
            label=f"{name} (peak {result['peak_rss_mb'][name]:.0f})",
        )
    mid.set_xlabel("seconds since the request")
    mid.set_ylabel("RSS (MiB)")
    mid.set_title("our processes' memory")
    mid.set_ylim(bottom=0)
    mid.grid(alpha=0.3)
    mid.legend(fontsize=8)

    st = result["stages"]
    bars = {
        "producer\npublish": st["producer_publish"]["values_per_s"],
        "consumer\ningest": st["consumer_ingest"]["values_per_s"],
        "QuestDB\nvisible": st["questdb_visible"]["values_per_s"],
        "end to end": result["end_to_end_values_per_s"],
        "ceiling": result["ceiling_values_per_s"] or 0,
    }
    colors = ["tab:blue", "tab:orange", "tab:green", "black", "tab:red"]
    right.bar(list(bars), [v / 1e3 for v in bars.values()], color=colors)
    for x, v in enumerate(bars.values()):
        right.text(x, v / 1e3, f"{v / 1e3:,.0f}k", ha="center", va="bottom", fontsize=8)
    right.axhline(GOAL_VALUES_PER_S / 1e3, color="grey", ls="--", lw=1, label="goal 250k")
    right.axhline(LASTING_GOAL_VALUES_PER_S / 1e3, color="grey", ls=":", lw=1, label="lasting 1M")
    right.set_ylabel("thousand values/s (from the request)")
    ratio = result["ratio_to_ceiling"]
    right.set_title("rates" + (f"; e2e = {ratio:.0%} of ceiling" if ratio else ""))
    right.legend(fontsize=8)
    right.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=100, help="generated tags SIMTAG00000..")
    p.add_argument("--days", type=float, default=365.0, help="window length, ending at --end")
    p.add_argument("--end", default="2026-01-01T00:00:00Z", help="end of the window (UTC)")
    p.add_argument("--interval-s", type=float, default=60.0, help="seconds between a tag's values")
    p.add_argument("--connector", choices=["Simulator", "PIWebApi"], default="Simulator")
    p.add_argument("--chunk", default="30d", help="the request's chunkSize")
    p.add_argument("--workers", type=int, default=4, help="BACKFILL_WORKERS of the producer")
    p.add_argument("--consumers", type=int, default=1, help="consumer processes (one group)")
    p.add_argument(
        "--questdb-metrics-url",
        default="http://127.0.0.1:9003/metrics",
        help="QuestDB's Prometheus endpoint (needs metrics.enabled=true; skipped if silent)",
    )
    p.add_argument(
        "--questdb-pid",
        type=int,
        default=None,
        help="QuestDB's process for the CPU figures (with QDB_CLIENT_CONF naming another "
        "QuestDB; default: the stack's)",
    )
    p.add_argument("--runs", type=int, default=1, help="runs; the JSON is the median ratio's")
    p.add_argument("--ceiling-rows-per-request", type=int, default=500_000)
    p.add_argument(
        "--ceiling-max-values",
        type=int,
        default=150_000_000,
        help="the ceiling writes at most this many of the values (its frames are held in memory)",
    )
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--sample-interval", type=float, default=0.25, help="seconds between samples")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    p.add_argument("--png", type=Path, default=None, help="chart (default: --out with .png)")
    p.add_argument("--keep", action="store_true", help="keep the run's tables, topics and keys")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``--runs`` runs (each: e2e, then the ceiling); the JSON and chart are the median run's,
    with every run's ratio beside them."""
    args = parse_args(argv)
    png: Path = args.png or args.out.with_suffix(".png")
    # our own library calls (stack, topics, table) log warnings and up, to stderr
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    stack.up()
    if args.questdb_pid:
        stack_pids()["questdb"] = args.questdb_pid
    results = []
    for k in range(args.runs):
        if args.runs > 1:
            print(f"run {k + 1} of {args.runs}")
        results.append(run_once(args, png))
    ratios = [r["ratio_to_ceiling"] for r in results if r["ratio_to_ceiling"] is not None]
    by_ratio = sorted(results, key=lambda r: r["ratio_to_ceiling"] or 0.0)
    result = by_ratio[len(by_ratio) // 2]
    result["runs"] = [
        {
            "end_to_end_values_per_s": r["end_to_end_values_per_s"],
            "ceiling_values_per_s": r["ceiling_values_per_s"],
            "ratio_to_ceiling": r["ratio_to_ceiling"],
            "questdb_cpu_s_per_m_rows": r["questdb_cpu_s_per_m_rows"],
            "peak_rss_mb": r["peak_rss_mb"],
            "exact": r["exact"],
        }
        for r in results
    ]
    result["ratio_to_ceiling_median"] = statistics.median(ratios) if ratios else None
    chart(result, result.pop("_e2e"), result.pop("_ceiling"), result.pop("_rss"), png)
    for r in results:
        for key in ("_e2e", "_ceiling", "_rss"):
            r.pop(key, None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summarize(result)
    print(f"wrote {args.out} and {png}")
    if not all(r["exact"] for r in results):
        raise SystemExit("a run did not land exactly the simulator's values: see the JSON")
    return result


def run_once(args: argparse.Namespace, png: Path) -> dict[str, Any]:
    """One run: the pipeline on fresh topics and table, then the ceiling on the same values."""
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(UTC)
    work = Workload(
        args.connector,
        [f"SIMTAG{i:05d}" for i in range(args.points)],
        end - timedelta(days=args.days),
        end,
        args.interval_s,
        args.chunk,
    )
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "TOPIC_REALTIME": f"e2e{tag}.datapoints",
        "TOPIC_BACKFILL": f"e2e{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"e2e{tag}.datapoints.dlq",
        "TOPIC_STATE": f"e2e{tag}.backfill.state",
        "QDB_TABLE": f"e2e_{tag}",
        "REDIS_KEY_PREFIX": f"e2e:{tag}:",
        "CONSUMER_GROUP_ID": f"e2e-{tag}",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(free_port()),
        # one port per consumer process (start_services hands each its own)
        "METRICS_PORT": ",".join(str(free_port()) for _ in range(args.consumers)),
        "BACKFILL_WORKERS": str(args.workers),
        "SIMULATOR_GENERATED_TAGS": str(args.points),
        "SIMULATOR_INTERVAL_SECONDS": str(args.interval_s),
        "MAX_POINTS_PER_REQUEST": str(max(args.points, 1)),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "LOG_FORMAT": "json",
    }
    settings = load_settings(ConsumerSettings, {**env, "METRICS_PORT": "0"})
    work = replace(work, step_us=producer_step_us(work, env))
    layout = PointTableLayout(request_id=settings.qdb_request_id_column)
    ceiling_table = f"e2e_{tag}_ceiling"
    sql = QuestDBSQL.from_settings(settings)
    try:
        ensure_infrastructure(settings)
        expected = work.expected
        print(
            f"e2e: {args.points} points x {args.days:g} days = {expected:,} values, "
            f"{args.connector} connector, {args.consumers} consumer(s), table "
            f"{settings.qdb_table} ({layout.name})"
        )
        run = run_pipeline(work, env, sql, settings.qdb_table, args)
        visible = rows(sql, settings.qdb_table)
        distinct_points = int(
            sql.scalar(f"SELECT count_distinct(source_address) FROM {settings.qdb_table}")  # noqa: S608
        )
        redis_client = redis.Redis.from_url(settings.redis_url.get_secret_value())
        redis_keys = sum(1 for _ in redis_client.scan_iter(match=f"{settings.redis_key_prefix}*"))
        redis_client.close()
        e2e_s = float(run["visible_at_s"])
        e2e_rate = round(expected / e2e_s)
        if not args.keep:  # free the disk before the ceiling writes the same volume again
            sql.exec(f"DROP TABLE IF EXISTS {settings.qdb_table}")
        ceiling: dict[str, Any] | None = None
        if not args.no_ceiling:
            ensure_point_table(sql, ceiling_table, layout)
            conf = settings.qdb_client_conf.get_secret_value()
            ceiling = run_ceiling(work, conf, settings.qdb_http_url, ceiling_table, args, layout)
    finally:
        if not args.keep:
            cleanup(
                settings,
                sql,
                [
                    settings.qdb_table,
                    points_table(settings.qdb_table),
                    ceiling_table,
                    points_table(ceiling_table),
                ],
            )
        sql.close()

    ceiling_rate = ceiling["values_per_s"] if ceiling else None
    ratio = round(e2e_rate / ceiling_rate, 3) if ceiling_rate else None
    per_m = {
        "end_to_end": per_million(run["cpu_seconds"].get("questdb"), expected),
        "ceiling": per_million(ceiling["cpu_seconds"].get("questdb"), ceiling["values"])
        if ceiling
        else None,
    }
    result: dict[str, Any] = {
        "benchmark": "e2e",
        "connector": args.connector,
        "points": args.points,
        "days": args.days,
        "interval_s": args.interval_s,
        "start_time": work.start.isoformat(),
        "end_time": work.end.isoformat(),
        "chunk": args.chunk,
        # the window the producer publishes by (the chunk, split by MAX_VALUES_PER_CHUNK)
        "producer_window_s": work.step_us / 1e6,
        "workers": args.workers,
        "consumers": args.consumers,
        "table_layout": {
            "name": layout.name,
            "ddl": " ".join(layout.ddl(settings.qdb_table).split()),
        },
        "values": visible,
        "expected_values": expected,
        "exact": visible == expected,
        "distinct_points": distinct_points,
        "redis_latest_keys": redis_keys,
        "dead_letters": run["dead_letters"],
        "request_status": run["progress"]["status"],
        "end_to_end_seconds": round(e2e_s, 3),
        "end_to_end_values_per_s": e2e_rate,
        "stages": run["stages"],
        "max_backlog_values": run["max_backlog_values"],
        "peak_rss_mb": run["peak_rss_mb"],
        "idle_rss_mb": run["idle_rss_mb"],
        "cpu_seconds": run["cpu_seconds"],
        # QuestDB's own CPU per million rows, e2e and ceiling side by side: what the consumer's
        # write pattern costs the server beyond the ceiling's (out-of-order merges, mostly)
        "questdb_cpu_s_per_m_rows": per_m,
        # QuestDB's own counters (its /metrics, when metrics.enabled): e2e, ceiling
        "questdb_metrics": {
            "end_to_end": run["questdb_metrics"],
            "ceiling": ceiling["questdb_metrics"] if ceiling else None,
        },
        "consumer_flushes": run["consumer_flushes"],
        "partition_drained_at_s": run["partition_drained_at_s"],
        "questdb_quiet_wait_s": run["questdb_quiet_wait_s"],
        "ceiling_values_per_s": ceiling_rate,
        "ceiling": {k: v for k, v in ceiling.items() if k != "samples"} if ceiling else None,
        "ratio_to_ceiling": ratio,
        "goals": {
            "end_to_end_values_per_s": GOAL_VALUES_PER_S,
            "ratio_to_ceiling": GOAL_RATIO_TO_CEILING,
            "lasting_end_to_end_values_per_s": LASTING_GOAL_VALUES_PER_S,
        },
        "meets_goals": {
            "end_to_end_values_per_s": e2e_rate >= GOAL_VALUES_PER_S,
            "ratio_to_ceiling": ratio is not None and ratio >= GOAL_RATIO_TO_CEILING,
            "lasting_end_to_end_values_per_s": e2e_rate >= LASTING_GOAL_VALUES_PER_S,
        },
        "timeline": {
            "columns": ["seconds", "published", "ingested", "visible"],
            "e2e": thin(run["samples"]),
            "ceiling": thin(ceiling["samples"]) if ceiling else [],
            "rss_mb": {"columns": run["rss"]["columns"], "samples": thin(run["rss"]["samples"])},
        },
        "chart": str(png),
        "tables": [settings.qdb_table, points_table(settings.qdb_table), ceiling_table],
        "topics": [settings.topic_backfill, settings.topic_state],
        "kept": args.keep,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": datetime.now(UTC).isoformat(),
        # for the chart, dropped before the JSON is written
        "_e2e": run["samples"],
        "_ceiling": ceiling["samples"] if ceiling else [],
        "_rss": run["rss"],
    }
    print(
        f"  e2e {e2e_rate:,} values/s, ceiling {ceiling_rate or 0:,}/s, ratio {ratio}, "
        f"QuestDB CPU s/M rows {per_m}, peak RSS MB {run['peak_rss_mb']}",
        flush=True,
    )
    return result


def producer_step_us(work: Workload, env: dict[str, str]) -> int:
    """The window the producer will publish by: the request's chunk, split as its planner
    splits it (MAX_VALUES_PER_CHUNK), so the ceiling writes the same values in the same order."""
    limits = Limits.from_settings(load_settings(ProducerSettings, env))
    start_us, end_us = (int(t.timestamp()) * 1_000_000 for t in (work.start, work.end))
    chunk_us = parse_chunk_size(work.chunk) // timedelta(microseconds=1)
    grid = plan(
        start_us,
        end_us,
        chunk_us,
        work.points,
        group_size=limits.group_size,
        values_per_second=limits.values_per_second,
        max_values_per_chunk=limits.max_values_per_chunk,
    )
    return grid.step_us


def per_million(cpu_s: float | None, values: int) -> float | None:
    return round(cpu_s / values * 1e6, 2) if cpu_s is not None and values else None


def summarize(r: dict[str, Any]) -> None:
    st = r["stages"]
    line: Callable[[str, Any], None] = lambda k, v: print(f"  {k:<34}{v}")  # noqa: E731
    print(f"end to end: {r['end_to_end_values_per_s']:,} values/s ({r['end_to_end_seconds']} s)")
    for name, s in st.items():
        line(
            name,
            f"{s['values_per_s']:>11,}/s from the request, active {s['active_values_per_s']:,}/s,"
            f" peak {s['peak_values_per_s']:,}/s, done at {s['done_at_s']} s",
        )
    if r["ceiling_values_per_s"]:
        line("ceiling (Sender.dataframe)", f"{r['ceiling_values_per_s']:>11,}/s")
        line("ratio to ceiling", f"{r['ratio_to_ceiling']:.1%}")
        line("ratio per run", [run["ratio_to_ceiling"] for run in r["runs"]])
        line("ratio, median of runs", r["ratio_to_ceiling_median"])
    line("table layout", r["table_layout"]["name"])
    line("QuestDB CPU s per M rows", r["questdb_cpu_s_per_m_rows"])
    line("QuestDB counters", r["questdb_metrics"])
    line("peak RSS MB", r["peak_rss_mb"])
    line("CPU seconds", r["cpu_seconds"])
    line("max backlog (values)", r["max_backlog_values"])
    line("consumer flushes", r["consumer_flushes"])
    line("backfill partitions drained at s", sorted(r["partition_drained_at_s"].values()))
    if r["ceiling"]:
        line("ceiling CPU seconds", r["ceiling"]["cpu_seconds"])


if __name__ == "__main__":
    main()
