# ruff: noqa: E402  (imports follow the sys.path fix below)
"""QuestDB's direct-ILP ingest ceiling for several table layouts, side by side on the same data.

Run: ``.venv/bin/python bench/ceiling.py [--points 100] [--days 365] [--layouts DAY,WEEK,MONTH,
DAY+request_id] [--repeat 1] [--out bench/results/ceiling.json]``. Needs a QuestDB (the local
stack's by default; ``--qdb-conf``/``--questdb-pid`` point at another one, e.g. one started with
other server settings).

The values are the e2e benchmark's ceiling frames (``bench/e2e.py``: generated 1-minute sine
tags, in the order the producer publishes them, in requests of ``--rows-per-request``). For
each layout a fresh table is created with that layout's DDL (``shared.qdb.PointTableLayout``),
the frames are written with ``Sender.dataframe()`` and the time to the last row visible is
taken, with QuestDB's own CPU seconds (its process, from psutil) per million rows, and, when its
Prometheus endpoint answers (``metrics.enabled=true``), its counters: rows physically written
by WAL apply per row ingested (the out-of-order rewrite factor) and O3 commits. Layouts run in
turns (A B C, A B C, ...) so a load change on the machine hits all of them alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import json
import statistics
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psutil
from questdb import Sender

from bench.e2e import Workload, ceiling_frames, questdb_counters, stack_pids
from shared.qdb import PointTableLayout, QuestDBSQL

ROOT = _BENCH.parent


def questdb_process(pid: int | None) -> psutil.Process | None:
    """QuestDB's process: ``pid``, else the stack's."""
    with suppress(psutil.Error):
        pid = pid or stack_pids().get("questdb")
        return psutil.Process(pid) if pid else None
    return None


def cpu_seconds(proc: psutil.Process | None) -> float:
    if proc is None:
        return float("nan")
    with suppress(psutil.Error):
        t = proc.cpu_times()
        return float(t.user + t.system)
    return float("nan")


def wait_quiet(proc: psutil.Process | None, max_cores: float = 0.2, timeout: float = 60) -> float:
    """Until QuestDB uses under ``max_cores`` over a second (an earlier table's purge etc.)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(proc)
        time.sleep(1.0)
        if not cpu_seconds(proc) - before >= max_cores:
            break
    return round(time.monotonic() - started, 1)


def rows(sql: QuestDBSQL, table: str) -> int:
    return int(sql.scalar(f"SELECT count() FROM {table}") or 0)  # noqa: S608  # our own name


def run_layout(
    layout: PointTableLayout,
    frames: list[pd.DataFrame],
    total: int,
    args: argparse.Namespace,
    proc: psutil.Process | None,
) -> dict[str, Any]:
    """One layout: fresh table, every frame written, timed to the last row visible."""
    table = f"ceil_{uuid.uuid4().hex[:8]}"
    symbols = ["source_address", "connector"] + (["request_id"] if layout.request_id else [])
    with QuestDBSQL(args.http_url) as sql:
        try:
            sql.exec(layout.ddl(table))
            quiet = wait_quiet(proc)
            cpu0, m0 = cpu_seconds(proc), questdb_counters(args.metrics_url)
            t0 = time.perf_counter()
            with Sender.from_conf(args.qdb_conf) as sender:
                for frame in frames:
                    data = frame if layout.request_id else frame.drop(columns=["request_id"])
                    sender.dataframe(data, table_name=table, symbols=symbols, at="ts")
                    sender.flush()
            sent = time.perf_counter() - t0
            while (visible := rows(sql, table)) < total:
                if time.perf_counter() - t0 > args.timeout:
                    raise SystemExit(f"{layout.name}: only {visible:,} of {total:,} rows visible")
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            cpu1, m1 = cpu_seconds(proc), questdb_counters(args.metrics_url)
            partitions = int(
                sql.scalar(f"SELECT count() FROM table_partitions('{table}')") or 0  # noqa: S608
            )
            disk = sql.scalar(f"SELECT sum(diskSize) FROM table_partitions('{table}')")  # noqa: S608
        finally:
            with suppress(Exception):
                sql.exec(f"DROP TABLE IF EXISTS {table}")
    delta = {k: m1[k] - m0.get(k, 0.0) for k in m1}
    written = delta.get("questdb_wal_apply_written_rows_total") or total
    out: dict[str, Any] = {
        "layout": layout.name,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent, 3),
        "values_per_s": round(total / elapsed),
        "questdb_cpu_s_per_m_rows": round((cpu1 - cpu0) / total * 1e6, 2),
        "partitions": partitions,
        "disk_mb": round(float(disk or 0) / 2**20, 1),
        "questdb_quiet_wait_s": quiet,
    }
    if delta:
        phys = delta.get("questdb_wal_apply_physically_written_rows_total", 0.0)
        out["rewrite_factor"] = round(phys / written, 2)
        out["o3_commits"] = int(delta.get("questdb_o3_commits_total", 0))
        out["commits"] = int(delta.get("questdb_commits_total", 0))
        out["ilp_bytes_per_row"] = round(delta.get("questdb_line_http_recv_bytes", 0) / total, 1)
    return out


def consumer_order(frames: list[pd.DataFrame], request_rows: int) -> list[pd.DataFrame]:
    """What the consumer does with a flush: each frame (a flush) sorted by time and cut into
    requests of ``request_rows``."""
    out = []
    for frame in frames:
        ordered = frame.sort_values("ts", kind="stable", ignore_index=True)
        out += [ordered.iloc[k : k + request_rows] for k in range(0, len(ordered), request_rows)]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--days", type=float, default=365.0)
    p.add_argument("--end", default="2026-01-01T00:00:00Z")
    p.add_argument("--chunk", default="30d", help="the producer's chunk: the frames' order")
    p.add_argument("--rows-per-request", type=int, default=500_000)
    p.add_argument(
        "--sorted",
        type=int,
        default=0,
        metavar="ROWS",
        help="as the consumer writes: each --rows-per-request frame (a flush) sorted by time "
        "and cut into requests of ROWS rows",
    )
    p.add_argument(
        "--layouts",
        default="DAY,WEEK,MONTH,DAY+request_id",
        help="comma-separated: DAY|WEEK|MONTH|YEAR, '+request_id' adds the symbol column",
    )
    p.add_argument("--repeat", type=int, default=1, help="turns over all layouts (median)")
    p.add_argument("--qdb-conf", default="http::addr=127.0.0.1:9000;")
    p.add_argument("--http-url", default="http://127.0.0.1:9000")
    p.add_argument("--metrics-url", default="http://127.0.0.1:9003/metrics")
    p.add_argument("--questdb-pid", type=int, default=None, help="default: the local stack's")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ceiling.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(UTC)
    points = [f"SIMTAG{i:05d}" for i in range(args.points)]
    work = Workload("Simulator", points, end - timedelta(days=args.days), end, 60.0, args.chunk)
    layouts = [PointTableLayout.parse(name) for name in args.layouts.split(",")]
    frames, total = ceiling_frames(work, args.rows_per_request, 10**12)
    if args.sorted:
        frames = consumer_order(frames, args.sorted)
    proc = questdb_process(args.questdb_pid)
    print(f"ceiling: {total:,} values, {len(frames)} requests, layouts {[x.name for x in layouts]}")
    runs: dict[str, list[dict[str, Any]]] = {x.name: [] for x in layouts}
    for turn in range(args.repeat):
        for layout in layouts:
            result = run_layout(layout, frames, total, args, proc)
            runs[layout.name].append(result)
            print(f"  turn {turn + 1} {json.dumps(result)}", flush=True)
    summary = {
        name: {
            "values_per_s": round(statistics.median(r["values_per_s"] for r in results)),
            "questdb_cpu_s_per_m_rows": round(
                statistics.median(r["questdb_cpu_s_per_m_rows"] for r in results), 2
            ),
        }
        for name, results in runs.items()
    }
    result = {
        "benchmark": "ceiling",
        "points": args.points,
        "days": args.days,
        "values": total,
        "rows_per_request": args.rows_per_request,
        "sorted_request_rows": args.sorted or None,
        "summary": summary,
        "runs": runs,
        "when": datetime.now(UTC).isoformat(),
    }
    print(f"{'layout':<22}{'values/s':>12}{'QuestDB CPU s/M rows':>24}")
    for name, s in summary.items():
        print(f"{name:<22}{s['values_per_s']:>12,}{s['questdb_cpu_s_per_m_rows']:>24}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
