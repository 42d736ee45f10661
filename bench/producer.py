"""Backfill throughput and peak memory: the real producer service, the simulator, real Kafka.

Run: ``.venv/bin/python bench/producer.py [--points 1000] [--days 30] [--workers 4]
[--chunk 30d] [--out bench/results/producer.json] [--keep-topics]``.

Starts ``python -m producer`` as a child process on fresh topics (with ``SIMULATOR_GENERATED_TAGS``
so ``SIMTAG00000..`` exist), submits one request for ``--points`` points over ``--days`` days of
one-minute data through the HTTP API, waits for it to complete, and reports values/s published
(committed in Kafka transactions) and the child's peak RSS (``VmHWM`` from ``/proc``, the kernel's
own high-water mark, so no sampling can miss a peak). The topics are deleted afterwards: a year of
1,000 points is several GB on the broker. Memory is bounded by the pages in flight, not by the
window, so peak RSS should not grow with ``--days`` (``--days 365`` checks the issue's bound of
150 MB for 1,000 points x 1 year directly, at the cost of its run time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from shared.kafka import base_config
from shared.settings import ProducerSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"producer did not start; see {log_path}")
        time.sleep(0.1)


def _watch(
    proc: subprocess.Popen[bytes], url: str, request_id: str, samples: list[float]
) -> dict[str, Any]:
    while True:
        data: dict[str, Any] = httpx.get(
            f"{url}/api/backfill/request/{request_id}", timeout=10
        ).json()["data"]
        samples.append(_rss_mb(proc.pid))
        if data["status"] in {"Completed", "CompletedWithErrors", "Failed", "Cancelled"}:
            return data
        print(
            f"\r{data['progress']:5.1f}%  {data['pointsProcessed']:,} values  "
            f"{data['valuesPerSecond']:,.0f}/s  rss {samples[-1]:.0f} MB",
            end="",
            flush=True,
        )
        time.sleep(1.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"bench{uuid.uuid4().hex[:8]}"
    port = _port()
    env = {
        **os.environ,
        "TOPIC_REALTIME": f"{tag}.datapoints",
        "TOPIC_BACKFILL": f"{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"{tag}.datapoints.dlq",
        "TOPIC_STATE": f"{tag}.backfill.state",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "BACKFILL_WORKERS": str(args.workers),
        "SIMULATOR_GENERATED_TAGS": str(args.points),
        "MAX_POINTS_PER_REQUEST": str(max(args.points, 1)),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    settings = load_settings(ProducerSettings, {k: v for k, v in env.items() if k.isupper()})
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"histfill-{tag}-producer.log"
    end = datetime(2026, 1, 1, tzinfo=UTC)
    start = end - timedelta(days=args.days)
    body = {
        "connectorType": "Simulator",
        "pointAddresses": [f"SIMTAG{i:05d}" for i in range(args.points)],
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "chunkSize": args.chunk,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        _wait_ready(proc, url, log_path)
        idle_rss = _rss_mb(proc.pid)
        estimate = httpx.post(f"{url}/api/backfill/estimate", json=body, timeout=60).json()
        started = time.monotonic()
        queued = httpx.post(f"{url}/api/backfill/start", json=body, timeout=60).json()
        request_id = queued["data"]["requestId"]
        samples: list[float] = []
        data = _watch(proc, url, request_id, samples)
        wall = time.monotonic() - started
        print()
        peak = _peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep_topics:
            admin = AdminClient(base_config(settings))
            topics = [settings.topic_realtime, settings.topic_backfill, settings.topic_dlq]
            for future in admin.delete_topics([*topics, settings.topic_state]).values():
                future.result(60)
    values = int(data["pointsProcessed"])
    return {
        "benchmark": "producer_backfill",
        "status": data["status"],
        "points": args.points,
        "days": args.days,
        "chunk": args.chunk,
        "workers": args.workers,
        "chunks": data["totalChunks"],
        "values": values,
        "expected_values": estimate["data"]["estimatedValues"],
        "batches": data["batchesPublished"],
        "wall_seconds": round(wall, 2),
        "values_per_second": round(values / wall),
        "peak_rss_mb": round(peak, 1),
        "idle_rss_mb": round(idle_rss, 1),
        "max_sampled_rss_mb": round(max(samples), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": datetime.now(UTC).isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chunk", default="30d")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "producer.json")
    parser.add_argument("--keep-topics", action="store_true")
    result = run(parser.parse_args())
    text = json.dumps(result, indent=2)
    print(text)
    out: Path = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
