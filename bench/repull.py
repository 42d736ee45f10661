# ruff: noqa: E402  (imports follow the sys.path fix below)
"""The trailing re-pull's cost: 1,000 live points over a 2-hour window against the PI simulator.

Run: ``.venv/bin/python bench/repull.py [--points 1000] [--hours 2] [--runs 3]
[--points-per-request 10] [--out bench/results/repull.json]``. Needs the stack (``make stack-up``).

The PI simulator runs in its own process over loopback HTTP; a real consumer (``python -m
consumer``) takes what the re-pull publishes into QuestDB; the re-pull itself runs in this
process exactly as the producer runs it (the shared ``PIWebApiSource`` with its rate budget,
QuestDB's ``/exp`` per batch of points, the numpy diff, one Kafka transaction). The clock is
fixed two minutes in the past, so every run reads the same window:

1. the *fill* run finds QuestDB empty and publishes every value (the first run after a start on
   a fresh table);
2. once the consumer has them in QuestDB, ``--runs`` runs find nothing changed: their time is
   the figure (goal < 10 s) and their published values the other (goal 0).

Topics, table, group and Redis keys are this run's own, removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import structlog
from confluent_kafka.admin import AdminClient

from bench.cleanup import cleanup
from producer.sources.connectors import Connectors
from producer.upkeep.changes import changes_topic_spec
from producer.upkeep.repull import Repull, RunResult
from shared.bootstrap import ensure_infrastructure
from shared.codec import BatchCodec
from shared.kafka import base_config, ensure_topics
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, ProducerSettings, load_settings

ROOT = _BENCH.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)  # polling readiness with a deadline


@contextmanager
def child(argv: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        wait_http(ready, proc)
        yield
    finally:
        proc.terminate()
        proc.wait(40)


def cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


async def timed(repull: Repull) -> tuple[RunResult, float, float]:
    started, cpu = time.monotonic(), cpu_seconds()
    result = await repull.run_once()
    return result, time.monotonic() - started, cpu_seconds() - cpu


async def bench(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(ProducerSettings, env)
    now_s = (time.time() // 60) * 60 - 120
    connectors = Connectors.from_settings(settings)
    repull = Repull(settings, connectors, BatchCodec(), clock=lambda: now_s)
    try:
        fill, fill_s, fill_cpu = await timed(repull)
        waited = time.monotonic()
        while True:  # the consumer takes the fill into QuestDB: the next run is not skipped
            first, seconds, cpu = await timed(repull)
            if first.skipped is None:
                break
            if time.monotonic() - waited > 300:
                raise RuntimeError("the consumer did not ingest the fill within 300 s")
            await asyncio.sleep(0.5)  # waiting on the consumer, between whole runs
        quiet = [(first, seconds, cpu)]
        for _ in range(args.runs - 1):
            quiet.append(await timed(repull))
    finally:
        await repull.stop()
        await connectors.aclose()
    return {
        "fill": {
            "seconds": round(fill_s, 2),
            "cpu_seconds_bench_process": round(fill_cpu, 2),
            "values_read": fill.values_read,
            "published": fill.published,
        },
        "ingest_wait_seconds": round(time.monotonic() - waited, 2),
        "unchanged_runs": [
            {
                "seconds": round(s, 2),
                "cpu_seconds_bench_process": round(c, 2),
                "values_read": r.values_read,
                "published": r.published,
                "failed_points": len(r.failed_points),
            }
            for r, s, c in quiet
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=2.0, help="REPULL_WINDOW in hours")
    parser.add_argument("--runs", type=int, default=3, help="runs timed with nothing changed")
    parser.add_argument("--points-per-request", type=int, default=10, help="POINTS_PER_REQUEST")
    parser.add_argument(
        "--max-requests-per-second", type=float, default=20.0, help="SOURCE_MAX_REQUESTS_PER_SECOND"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "repull.json")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    tag = uuid.uuid4().hex[:10]
    sim_port, metrics_port = free_port(), free_port()
    env = {
        "TOPIC_REALTIME": f"b{tag}.datapoints",
        "TOPIC_BACKFILL": f"b{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"b{tag}.datapoints.dlq",
        "TOPIC_STATE": f"b{tag}.backfill.state",
        "TOPIC_CHANGES": f"b{tag}.backfill.changes",
        "QDB_TABLE": f"bench_repull_{tag}",
        "REDIS_KEY_PREFIX": f"bench:{tag}:",
        "CONSUMER_GROUP_ID": f"bench-{tag}",
        "METRICS_PORT": str(metrics_port),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "PI_WEB_API_URL": f"http://127.0.0.1:{sim_port}/piwebapi",
        "PI_USERNAME": "bench",
        "PI_PASSWORD": "bench",
        "LIVE_CONNECTOR": "PIWebApi",
        "LIVE_POINTS": ",".join(f"\\\\SIMPI\\SIMTAG{i:05d}" for i in range(args.points)),
        "REPULL_WINDOW": f"PT{int(args.hours * 3600)}S",
        "REPULL_LAG_SECONDS": "0",
        "POINTS_PER_REQUEST": str(args.points_per_request),
        "SOURCE_MAX_REQUESTS_PER_SECOND": str(args.max_requests_per_second),
        "SOURCE_RATE_LIMIT_SCOPE": "process",
    }
    consumer_settings = load_settings(ConsumerSettings, env)
    ensure_infrastructure(consumer_settings)
    ensure_topics(
        AdminClient(base_config(consumer_settings)),
        [changes_topic_spec(load_settings(ProducerSettings, env))],
    )
    load_before = os.getloadavg()
    py = sys.executable
    options = f"PISimulatorOptions(generated_tags={args.points})"
    sim_code = (
        "from simulators.pi import PISimulatorOptions, run_pi_simulator; "
        f"run_pi_simulator('127.0.0.1', {sim_port}, {options}, log_level='warning')"
    )
    sql = QuestDBSQL.from_settings(consumer_settings)
    try:
        with (
            child([py, "-c", sim_code], {}, f"http://127.0.0.1:{sim_port}/_sim/health"),
            child([py, "-m", "consumer"], env, f"http://127.0.0.1:{metrics_port}/ready"),
        ):
            figures = asyncio.run(bench(env, args))
    finally:
        cleanup(
            consumer_settings,
            sql,
            [consumer_settings.qdb_table, f"{consumer_settings.qdb_table}_points"],
            topics=[env["TOPIC_CHANGES"]],
        )
        sql.close()
    result = {
        "goal_seconds": 10,
        "goal_published_when_unchanged": 0,
        "points": args.points,
        "window_hours": args.hours,
        "points_per_request": args.points_per_request,
        "source_max_requests_per_second": args.max_requests_per_second,
        **figures,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
