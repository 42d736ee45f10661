"""Fleet scale-out: the same backfill by 1, 2 and 3 producer processes against a slow PI server.

Run: ``.venv/bin/python bench/fleet.py [--points 100] [--days 30] [--latency 0.5]
[--workers 2] [--budget 4] [--partitions 12] [--out bench/results/fleet.json]``.

Starts the PI Web API simulator (``histfill simulate pi``, hourly values) with ``--latency``
seconds added to every API request, as a real PI server answers in hundreds of milliseconds.
Then, for 1, 2 and 3 members (``python -m producer`` with ``PRODUCER_FLEET=true``, each on fresh
topics and its own consumer group), submits ``--points`` points x ``--days`` days in one-day
chunks (10-point PI streamsets: ``points/10 x days`` tasks) and measures the time to
``Completed``, the values/s, and the requests/s the simulator saw (``/_sim/stats``). The per-host
budget (``SOURCE_MAX_REQUESTS_PER_SECOND``) is high in those runs; a last run with 3 members and
``--budget`` requests/s shows the fleet staying inside a budget that binds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from shared.settings import CommonSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"Completed", "CompletedWithErrors", "Failed", "Cancelled", "Partial"}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def _sim_requests(sim: str) -> int:
    stats: dict[str, int] = httpx.get(f"{sim}/_sim/stats", timeout=10).json()
    return int(stats.get("requests", 0))


def run_fleet(args: argparse.Namespace, sim: str, members: int, budget: float) -> dict[str, Any]:
    """One request by ``members`` processes; the figures of that run."""
    tag = f"fleet{uuid.uuid4().hex[:8]}"
    base = {
        "TOPIC_REALTIME": f"{tag}.datapoints",
        "TOPIC_BACKFILL": f"{tag}.datapoints.backfill",
        "TOPIC_DLQ": f"{tag}.datapoints.dlq",
        "TOPIC_STATE": f"{tag}.backfill.state",
        "TOPIC_TASKS": f"{tag}.backfill.tasks",
        "TOPIC_TASKS_PARTITIONS": str(args.partitions),
        "PRODUCER_FLEET": "true",
        "PRODUCER_GROUP_ID": tag,
        "SOURCE_RATE_LIMIT_KEY_PREFIX": f"{tag}:ratelimit:",
        "SOURCE_MAX_REQUESTS_PER_SECOND": str(budget),
        "PI_WEB_API_URL": f"{sim}/piwebapi",
        "PI_DEFAULT_SERVER": "SIMPI",
        "PI_USERNAME": "bench",
        "PI_PASSWORD": "bench",
        "BACKFILL_WORKERS": str(args.workers),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "API_HOST": "127.0.0.1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    logs = Path(tempfile.gettempdir())
    try:
        for i in range(members):
            port = _port()
            env = {**os.environ, **base, "API_PORT": str(port), "PRODUCER_INSTANCE_ID": f"m{i}"}
            with (logs / f"histfill-{tag}-m{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "producer"],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            _wait(f"{url}/ready", proc, "producer")
        time.sleep(3.0)  # let the group settle: every member holds partitions before we start
        end = datetime(2025, 1, 1, tzinfo=UTC)
        body = {
            "connectorType": "PIWebApi",
            "pointAddresses": [f"SIMTAG{i:05d}" for i in range(args.points)],
            "startTime": (end - timedelta(days=args.days)).isoformat(),
            "endTime": end.isoformat(),
            "chunkSize": "1d",
        }
        before = _sim_requests(sim)
        started = time.monotonic()
        answer = httpx.post(f"{urls[0]}/api/backfill/start", json=body, timeout=60).json()
        request_id = answer["data"]["requestId"]
        while True:
            data = httpx.get(f"{urls[-1]}/api/backfill/request/{request_id}", timeout=10).json()
            if not data.get("success"):  # another member: it sees the request a moment later
                time.sleep(0.2)
                continue
            status = data["data"]["status"]
            if status in FINAL:
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        requests = _sim_requests(sim) - before
        fleet = httpx.get(f"{urls[0]}/api/backfill/status", timeout=10).json()["data"]["fleet"]
        tasks = {m: sum(i.get("tasksDone", {}).values()) for m, i in fleet["members"].items()}
        values = int(data["data"]["valuesPublished"])
        result = {
            "members": members,
            "budget_requests_per_s": budget,
            "status": status,
            "seconds": round(wall, 2),
            "values": values,
            "values_per_s": round(values / wall),
            "simulator_requests": requests,
            "simulator_requests_per_s": round(requests / wall, 2),
            "tasks_per_member": tasks,
        }
        print(json.dumps(result))
        return result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        settings = load_settings(
            CommonSettings,
            {
                k: v
                for k, v in base.items()
                if k in {"TOPIC_REALTIME", "TOPIC_BACKFILL", "TOPIC_DLQ", "TOPIC_STATE"}
            },
        )
        admin = AdminClient(base_config(settings))
        names = [
            settings.topic_realtime,
            settings.topic_backfill,
            settings.topic_dlq,
            settings.topic_state,
            base["TOPIC_TASKS"],
        ]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001  # a bench leaves what it cannot delete
                print(f"topic not deleted: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds added per request.")
    parser.add_argument("--workers", type=int, default=2, help="BACKFILL_WORKERS per member.")
    parser.add_argument("--budget", type=float, default=4.0, help="Binding budget, requests/s.")
    parser.add_argument(
        "--partitions", type=int, default=12, help="TOPIC_TASKS_PARTITIONS (12: even at 2/4/6)."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = parser.parse_args()
    port = _port()
    sim = f"http://127.0.0.1:{port}"
    sim_log = Path(tempfile.gettempdir()) / f"histfill-fleet-sim-{port}.log"
    with sim_log.open("wb") as log:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "histfill", "simulate", "pi", "--port", str(port),
             "--interval-s", "3600", "--generated-tags", str(args.points)],
            cwd=ROOT, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        _wait(f"{sim}/_sim/health", simulator, "simulator")
        httpx.post(f"{sim}/_sim/faults", json={"latency_s": args.latency}, timeout=10)
        runs = [run_fleet(args, sim, n, 1000.0) for n in (1, 2, 3)]
        binding = run_fleet(args, sim, 3, args.budget)
    finally:
        simulator.terminate()
        simulator.wait(30)
    base_rate = runs[0]["values_per_s"] or 1
    report = {
        "benchmark": "fleet",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "2-core machine shared with other engineers' tests while measured",
        "points": args.points,
        "days": args.days,
        "latency_s": args.latency,
        "workers_per_member": args.workers,
        "runs": runs,
        "speedup": {r["members"]: round(r["values_per_s"] / base_rate, 2) for r in runs},
        "binding_budget_run": binding,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"speed-up over 1 member: {report['speedup']}")
    print(
        f"budget {args.budget} req/s with 3 members: the simulator saw "
        f"{binding['simulator_requests_per_s']} req/s"
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
