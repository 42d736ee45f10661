# ruff: noqa: E402  (imports follow the sys.path fix below)
"""Values per second a worker fetches from the PI simulator over HTTP, and memory for a long window.

Run: ``.venv/bin/python bench/sources.py [--tags N] [--days D] [--workers 1,2] [--out PATH]``.

The PI simulator runs in a separate process (its own core: the machine has two), on loopback. A
*worker* is one ``PIWebApiSource.read`` of its own tags over the window, as the orchestrator runs
them; workers share one client (one connection pool, one host rate budget). Figures are for the
whole client path: HTTP, JSON, timestamp parsing, paging and ``PointBatch`` building.

The memory probe reads 1 month, 4 months, 1 year (525,600 values) and 2 years of a 1-minute tag,
each in a fresh process that keeps nothing, and reports the peak RSS. A month fits in one small
page; from 4 months on every window pages at ``--page`` values, and flat means those are equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

# ``python bench/sources.py`` puts bench/ first on sys.path, where bench/producer.py shadows the
# producer package: resolve the project's packages from the repository root instead.
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
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import structlog
from pydantic import SecretStr

from producer.sources import PIWebApiConfig, PIWebApiSource, TimeWindow
from producer.sources.base import PointComplete, PointFailure
from shared.batch import PointBatch

START = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def quiet_logs() -> None:
    """Library logs go to stderr, warnings and up, so stdout stays JSON."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def simulator(generated_tags: int):  # type: ignore[no-untyped-def]
    """The PI simulator in its own process; yields its base URL."""
    port = free_port()
    options = f"PISimulatorOptions(generated_tags={generated_tags})"
    code = (
        "from simulators.pi import PISimulatorOptions, run_pi_simulator; "
        f"run_pi_simulator('127.0.0.1', {port}, {options}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("PI simulator did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def source(url: str, page: int) -> PIWebApiSource:
    config = PIWebApiConfig(
        f"{url}/piwebapi",
        username="bench",
        password=SecretStr("bench"),
        default_server="SIMPI",
        max_values_per_request=page,
    )
    return PIWebApiSource(config)


async def worker(src: PIWebApiSource, tags: list[str], window: TimeWindow) -> tuple[int, float]:
    values = 0
    started = time.perf_counter()
    async for item in src.read(tags, window):
        if isinstance(item, PointBatch):
            values += len(item)
        elif isinstance(item, PointFailure):
            raise RuntimeError(f"bench read failed: {item.error}")
    return values, time.perf_counter() - started


async def throughput(
    url: str, workers: int, tags_per_worker: int, days: float, page: int
) -> dict[str, Any]:
    window = TimeWindow(START, START + timedelta(days=days))
    async with source(url, page) as src:
        await worker(src, ["SIMTAG00000"], TimeWindow(START, START + timedelta(hours=1)))  # warm
        started = time.perf_counter()
        jobs = [
            worker(
                src,
                [f"SIMTAG{w * tags_per_worker + i:05d}" for i in range(tags_per_worker)],
                window,
            )
            for w in range(workers)
        ]
        results = await asyncio.gather(*jobs)
        elapsed = time.perf_counter() - started
        requests = src.http.requests
    per_worker = [values / seconds for values, seconds in results]
    total = sum(values for values, _ in results)
    return {
        "workers": workers,
        "values": total,
        "seconds": round(elapsed, 3),
        "values_per_s_per_worker": round(float(np.mean(per_worker))),
        "values_per_s_total": round(total / elapsed),
        "requests": requests,
    }


def rss_mb(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process, in MiB. (Not
    ``ru_maxrss``: Linux carries it across ``execve`` from the parent's high-water mark.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


async def memory_probe(url: str, days: int, page: int) -> dict[str, Any]:
    """Read ``days`` of SINUSOID keeping nothing; baseline and peak RSS of this process."""
    window = TimeWindow(START, START + timedelta(days=days))
    async with source(url, page) as src:
        await worker(src, ["SINUSOID"], TimeWindow(START, START + timedelta(hours=1)))  # warm
        baseline = rss_mb()
        values = 0
        async for item in src.read(["SINUSOID"], window):
            if isinstance(item, PointBatch):
                values += len(item)
            elif isinstance(item, PointComplete):
                break
    peak = rss_mb("VmHWM")
    return {
        "days": days,
        "values": values,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "growth_mb": round(peak - baseline, 1),
    }


def memory(url: str, days: int, page: int) -> dict[str, Any]:
    """:func:`memory_probe` in a fresh process, so earlier work does not hide the peak."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", url, str(days), "--page", str(page)],
        capture_output=True,
        check=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10, help="tags per worker")
    parser.add_argument("--days", type=float, default=30.0, help="window length")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument(
        "--page", type=int, default=50_000, help="max values per request (the client default)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--memory-probe", nargs=2, metavar=("URL", "DAYS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet_logs()
    if args.memory_probe:
        url, days = args.memory_probe
        print(json.dumps(asyncio.run(memory_probe(url, int(days), args.page))))
        return
    counts = [int(w) for w in args.workers.split(",")]
    with simulator(generated_tags=max(counts) * args.tags) as url:
        runs = [asyncio.run(throughput(url, w, args.tags, args.days, args.page)) for w in counts]
        probes = {f"{days}_days": memory(url, days, args.page) for days in (30, 120, 365, 730)}
    result = {
        "goal_values_per_s_per_worker": 200_000,
        "throughput": runs,
        "max_values_per_request": args.page,
        "memory_1_minute_tag": probes,
        "tags_per_worker": args.tags,
        "window_days": args.days,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
