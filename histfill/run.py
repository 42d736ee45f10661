"""``histfill run`` (``make run``): the main job, end to end, on the built-in PI simulator.

1. The stack is up (``make run`` starts it first; this is idempotent).
2. The PI Web API simulator, the consumer and the producer start as background processes,
   managed like the stack's own services (pid files and logs under ``.stack/``, stopped by
   ``make stack-down``); ones already running are left alone.
3. Two backfills go through the producer's HTTP API, as an operator would send them: the
   seed's Test 1 (3 points x 1 day, 1-hour chunks) and 100 points x 30 days. Each shows a live
   progress bar and ends with the seed-style summary.
4. Once the consumer has caught up, every point and chunk is verified against the simulator,
   and the seed's count query is run.

Re-running it is safe: the producer skips chunks already checkpointed and QuestDB's dedup keys
keep the counts exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console

from histfill import stack
from producer.api.cli import api_client, call, summary, watch
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from simulators.data import expected_count

SIMULATOR_PORT = 8765
CONSUMER_METRICS_PORT = 9108
PRODUCER_PORT = 5052
GENERATED_TAGS = 100
SEED_POINTS = ("SINUSOID", "CDT158", "SINUSOIDU")


@dataclass(frozen=True)
class Job:
    """One backfill of the main job."""

    title: str
    points: tuple[str, ...]
    start: datetime
    end: datetime
    chunk: str


JOBS = (
    Job(
        "seed Test 1: 3 points x 1 day, 1-hour chunks",
        SEED_POINTS,
        datetime(2026, 1, 9, tzinfo=UTC),
        datetime(2026, 1, 10, tzinfo=UTC),
        "01:00:00",
    ),
    Job(
        f"{GENERATED_TAGS} points x 30 days, 1-day chunks",
        tuple(f"SIMTAG{i:05d}" for i in range(GENERATED_TAGS)),
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2025, 12, 31, tzinfo=UTC),
        "1.00:00:00",
    ),
)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def app_services(env: dict[str, str]) -> tuple[stack.Service, ...]:
    """The simulator, consumer and producer as stack services (started in this order)."""
    python = sys.executable
    return (
        stack.Service(
            "pi-simulator",
            SIMULATOR_PORT,
            lambda _paths: [
                python,
                "-m",
                "histfill",
                "simulate",
                "pi",
                "--port",
                str(SIMULATOR_PORT),
                "--generated-tags",
                str(GENERATED_TAGS),
            ],
            lambda: _http_ok(f"http://127.0.0.1:{SIMULATOR_PORT}/_sim/health"),
        ),
        stack.Service(
            "consumer",
            CONSUMER_METRICS_PORT,
            lambda _paths: [python, "-m", "consumer"],
            lambda: _http_ok(f"http://127.0.0.1:{CONSUMER_METRICS_PORT}/ready"),
            env=env,
        ),
        stack.Service(
            "producer",
            PRODUCER_PORT,
            lambda _paths: [python, "-m", "producer"],
            lambda: _http_ok(f"http://127.0.0.1:{PRODUCER_PORT}/ready"),
            env=env,
        ),
    )


def service_env() -> dict[str, str]:
    """The environment the job's services run with: the caller's, plus the simulator source."""
    return {
        "PI_WEB_API_URL": os.environ.get(
            "PI_WEB_API_URL", f"http://127.0.0.1:{SIMULATOR_PORT}/piwebapi"
        ),
        "PI_DEFAULT_SERVER": os.environ.get("PI_DEFAULT_SERVER", "SIMPI"),
        # the simulator, like a real PI Web API, refuses anonymous requests and takes any user
        "PI_USERNAME": os.environ.get("PI_USERNAME", "histfill"),
        "PI_PASSWORD": os.environ.get("PI_PASSWORD", "histfill"),
        "METRICS_PORT": str(CONSUMER_METRICS_PORT),
        "API_PORT": str(PRODUCER_PORT),
        "LOG_FORMAT": "json",
    }


def expected(job: Job) -> int:
    return sum(
        expected_count(p, job.start, job.end, generated_tags=GENERATED_TAGS) for p in job.points
    )


def run_job(job: Job, producer_url: str, console: Console) -> dict[str, Any]:
    """Submit one backfill through the API, show its progress, print the seed-style summary."""
    console.rule(f"[bold]{job.title}")
    body = {
        "connectorType": "PIWebApi",
        "pointAddresses": list(job.points),
        "startTime": job.start.isoformat().replace("+00:00", "Z"),
        "endTime": job.end.isoformat().replace("+00:00", "Z"),
        "chunkSize": job.chunk,
    }
    with api_client(producer_url, os.environ.get("API_TOKEN")) as client:
        queued = call(client, "POST", "/api/backfill/start", body)
        console.print(queued.get("message", f"queued {queued['requestId']}"))
        final = watch(client, queued["requestId"], 0.5)
    console.print(summary(final))
    return final


def wait_ingested(sql: QuestDBSQL, table: str, jobs: tuple[Job, ...], timeout: float = 600) -> int:
    """Wait until QuestDB holds every value of the jobs (the consumer caught up)."""
    want = sum(expected(job) for job in jobs)
    clauses = " OR ".join(
        f"(ts >= '{j.start.isoformat()}' AND ts < '{j.end.isoformat()}' AND source_address IN "
        + "("
        + ",".join(f"'{p}'" for p in j.points)
        + "))"
        for j in jobs
    )
    query = f"SELECT count() FROM {table} WHERE {clauses}"  # noqa: S608  # our own constants
    have = 0

    def caught_up() -> bool:
        nonlocal have
        have = int(sql.scalar(query) or 0)
        return have >= want

    stack.wait_until(caught_up, timeout, interval=0.5)
    return have


def verify_request(request_id: str, console: Console) -> bool:
    """Run `histfill verify --request-id` (per point and chunk: counts, gaps); True if it passed."""
    console.print(f"$ histfill verify --request-id {request_id}")
    result = subprocess.run(
        [sys.executable, "-m", "histfill", "verify", "--request-id", request_id],
        # its summary is what the person reads; its start/done log lines only when asked for
        env={"LOG_LEVEL": "WARNING", **os.environ, **service_env()},
        check=False,
    )
    return result.returncode == 0


def seed_count(sql: QuestDBSQL, table: str) -> int:
    """The seed's verification query (it has no time filter: the points' whole history)."""
    points = ",".join(f"'{p}'" for p in SEED_POINTS)
    return int(sql.scalar(f"SELECT COUNT(*) FROM {table} WHERE source_address IN ({points})"))  # noqa: S608


def main_job(
    console: Console,
    *,
    settings: ConsumerSettings,
    start_services: bool = True,
    producer_url: str = f"http://127.0.0.1:{PRODUCER_PORT}",
) -> int:
    """Run the main job; returns the exit code (0: every request completed and verified)."""
    if start_services:
        paths = stack.StackPaths()
        for service in app_services(service_env()):
            outcome = stack.start_service(service, paths)
            console.print(f"{service.name:13} {outcome}  (log: {paths.logs / service.name}.out)")
    finals = [run_job(job, producer_url, console) for job in JOBS]
    ok = all(final["status"] == "Completed" for final in finals)

    console.rule("[bold]verification")
    with QuestDBSQL.from_settings(settings) as sql:
        want = sum(expected(job) for job in JOBS)
        # a failed request will never fill the table: look once instead of waiting it out
        have = wait_ingested(sql, settings.qdb_table, JOBS, timeout=300 if ok else 0)
        console.print(
            f"values in QuestDB for these requests: {have:,} (the simulator serves {want:,})"
        )
        ok &= have == want
        for final in finals:
            # the operator's own command, against the same source the producer read
            ok &= verify_request(final["requestId"], console)
        seed = seed_count(sql, settings.qdb_table)
    seed_want = expected(JOBS[0])
    query = f"SELECT COUNT(*) FROM {settings.qdb_table} WHERE source_address IN "  # noqa: S608
    console.print(
        f"{query}('SINUSOID','CDT158','SINUSOIDU') -> [bold]{seed:,}[/] (expected {seed_want:,})"
    )
    if seed != seed_want:
        # the seed's query has no time filter: other data for these points shows up in it
        console.print(
            f"[yellow]note:[/] {seed - seed_want:+,} rows of these points lie outside this run's "
            "window (earlier backfills or live data); this run's own window was checked above"
        )
    from archive.demo import archive_demo  # noqa: PLC0415  # the archive step (issue 12)
    from archive.keys import Month  # noqa: PLC0415

    ok &= archive_demo(console, list(JOBS[1].points), Month.of(JOBS[1].start))
    console.rule()
    console.print(
        "[bold green]main job done[/]" if ok else "[bold red]main job finished with problems[/]"
    )
    console.print(
        "The services keep running:\n"
        "  watch consumer lag   .venv/bin/histfill lag   (Prometheus: "
        f"http://127.0.0.1:{CONSUMER_METRICS_PORT}/metrics)\n"
        "  backfill progress    .venv/bin/histfill backfill status"
        f"   (API docs: {producer_url}/docs)\n"
        "  query QuestDB        http://127.0.0.1:9000"
        "  or  psql -h 127.0.0.1 -p 8812 -U admin -d qdb\n"
        "  stop everything      make stack-down"
    )
    return 0 if ok else 1
