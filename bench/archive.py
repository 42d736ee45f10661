"""Archive benchmark: QuestDB -> Parquet objects on the local S3Proxy, then a two-tier query.

Writes ``--points`` x ``--months`` of the simulator's 1-minute data into a fresh QuestDB
table, then runs the real archive command (``python -m histfill archive --no-backfill``) as
a subprocess and measures its values/s (its own summary: from its first point-month to its
last) and its peak RSS (sampled every 50 ms). Size is the objects' bytes on S3Proxy's disk
divided by the values. Then the hot window keeps the last 30 days in QuestDB, the archive
service (``python -m archive``) starts, and one point x one year (11 archive-only months +
the last month in both tiers) is queried over HTTP, as Arrow IPC and as JSON.

    .venv/bin/python bench/archive.py [--points 10] [--months 12]

Needs the local stack (``histfill stack up``: QuestDB and S3Proxy). Prints a table and writes
bench/results/archive.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archive.hot_window import prune  # noqa: E402
from archive.keys import Month, months  # noqa: E402
from archive.service import Archive  # noqa: E402
from histfill import stack  # noqa: E402
from shared.qdb import QuestDBSQL, ensure_point_table, points_table  # noqa: E402
from shared.settings import ArchiveSettings, load_settings  # noqa: E402
from tests.integration.archive.conftest import write_points  # noqa: E402


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_archive(
    env: dict[str, str], points: list[str], first: Month, last: Month
) -> dict[str, float]:
    argv = [sys.executable, "-m", "histfill", "archive", "--no-backfill", "--every", "60"]
    argv += ["--points", ",".join(points), "--start-month", str(first), "--end-month", str(last)]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.05)  # sampling a child's memory, not waiting on a condition
    out = proc.stdout.read() if proc.stdout else ""
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"archive run failed ({proc.returncode}):\n{out[-3000:]}")
    rate = int(re.search(r"\(([\d,]+) values/s written\)", out)[1].replace(",", ""))  # type: ignore[index]
    values = int(re.findall(r"Data points: ([\d,]+)", out)[-1].replace(",", ""))
    return {"values": values, "values_per_s": rate, "wall_s": wall, "peak_rss_mb": peak / 2**20}


def _query_phase(
    env: dict[str, str], settings: ArchiveSettings, points: list[str], first: Month, last: Month
) -> tuple[int, dict[str, list[float]], int, subprocess.Popen[bytes]]:
    """Keep 30 days hot, start the archive service, time 1 point x the whole range."""
    archive = Archive.from_settings(settings)
    report = prune(archive.archiver, timedelta(days=30), last.end)
    archive.close()
    port = _port()
    service = subprocess.Popen(
        [sys.executable, "-m", "archive"],
        env={**env, "ARCHIVE_API_PORT": str(port), "ARCHIVE_API_HOST": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)  # the service starting
    body = {
        "pointIds": [points[0]],
        "startDate": first.start.isoformat(),
        "endDate": last.end.isoformat(),
    }
    timings: dict[str, list[float]] = {"arrow": [], "json": []}
    rows = 0
    for fmt in ("arrow", "json"):
        for _ in range(3):
            t = time.monotonic()
            response = httpx.post(
                f"{url}/api/timeseries/query", json={**body, "format": fmt}, timeout=120
            )
            timings[fmt].append(time.monotonic() - t)
            response.raise_for_status()
            if fmt == "arrow":
                rows = pa.ipc.open_stream(response.content).read_all().num_rows
    return len(report.dropped), timings, rows, service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "archive.json")
    args = parser.parse_args()
    stack.up()
    tag = uuid.uuid4().hex[:8]
    table, bucket = f"bench_archive_{tag}", f"bench-archive-{tag}"
    env = {
        **os.environ,
        "QDB_TABLE": table,
        "ARCHIVE_URL": f"s3://{bucket}/a",
        "ARCHIVE_S3_ENDPOINT": f"http://127.0.0.1:{stack.S3PROXY_PORT}",
        "LOG_LEVEL": "WARNING",
    }
    settings = load_settings(ArchiveSettings, {k: v for k, v in env.items() if k.isupper()})
    first = Month(2023, 1)
    last = months(first, Month(2100, 1))[args.months - 1]
    points = [f"SIMTAG{i:05d}" for i in range(args.points)]
    sql = QuestDBSQL(settings.qdb_http_url)
    service: subprocess.Popen[bytes] | None = None
    try:
        ensure_point_table(sql, table)
        t0 = time.monotonic()
        written = write_points(table, points, first.start, last.end)
        while int(sql.scalar(f"SELECT count() FROM {table}") or 0) < written:  # noqa: S608
            time.sleep(0.5)  # a benchmark waiting for QuestDB's WAL apply
        seed_s = time.monotonic() - t0
        print(f"seeded {written:,} values in {seed_s:.1f}s", flush=True)

        run = _run_archive(env, points, first, last)
        disk = stack.StackPaths().data / "s3proxy" / bucket
        size = sum(p.stat().st_size for p in disk.rglob("*.parquet"))
        bytes_per_value = size / run["values"]

        hot_from = last.end - timedelta(days=30)
        dropped, timings, rows, service = _query_phase(env, settings, points, first, last)
        result = {
            "when": datetime.now(UTC).isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared and loaded",
            "points": args.points,
            "months": args.months,
            "values": run["values"],
            "archive_values_per_s": run["values_per_s"],
            "archive_wall_s_incl_start": round(run["wall_s"], 2),
            "archive_peak_rss_mb": round(run["peak_rss_mb"], 1),
            "bytes_per_value": round(bytes_per_value, 3),
            "objects_bytes": size,
            "hot_window_from": hot_from.isoformat(),
            "partitions_dropped": dropped,
            "query_rows": rows,
            "query_1pt_1yr_arrow_s": [round(x, 3) for x in timings["arrow"]],
            "query_1pt_1yr_json_s": [round(x, 3) for x in timings["json"]],
        }
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        for name in (table, points_table(table)):
            sql.exec(f"DROP TABLE IF EXISTS {name}")
        shutil.rmtree(stack.StackPaths().data / "s3proxy" / bucket, ignore_errors=True)
    print("| metric | result | goal |\n| --- | --- | --- |")
    print(f"| archive throughput | {result['archive_values_per_s']:,} values/s | >= 500,000 |")
    print(f"| size | {result['bytes_per_value']} bytes/value | <= 6 |")
    best = min(timings["arrow"])
    print(f"| query 1 point x 1 year, both tiers (Arrow) | best {best:.3f} s | < 1 s |")
    print(f"| query 1 point x 1 year, both tiers (JSON) | best {min(timings['json']):.3f} s | - |")
    print(f"| archive process peak RSS | {result['archive_peak_rss_mb']} MB | <= 200 MB |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
