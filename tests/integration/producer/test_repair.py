"""Holes on the real stack: live mode stopped for a while leaves a hole the repair finds and
fills (verify passes, each value once); a hole the source has too is confirmed empty once and
never asked again; ``histfill gaps`` lists what QuestDB lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producer.sources.connectors import Connectors
from producer.upkeep.repair import RepairScheduler
from producer.worker.orchestrator import Orchestrator
from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings, ProducerSettings, load_settings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (  # noqa: F401  # fixtures used by name
    ConsumerProcess,
    duplicate_keys,
    infra,
    start_consumer,
)
from tests.integration.producer.conftest import ROOT, Service

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = ["SINUSOID", "CDT158"]
LIVE = {
    "LIVE_CONNECTOR": "Simulator",
    "LIVE_POINTS": ",".join(POINTS),
    "LIVE_POLL_INTERVAL_SECONDS": "1",
    "SIMULATOR_INTERVAL_SECONDS": "1",
    "REPAIR_ENABLED": "true",
    "REPAIR_INTERVAL_SECONDS": "1",
    "REPAIR_LOOKBACK": "1h",
}
HOLE_S = 12
"""Seconds live mode is down (12 values of each 1-second point missing, 4x the factor 3)."""


def metrics(service: Service) -> dict[str, float]:
    """The producer's /metrics as ``name{label=value}`` -> value."""
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def repair_requests(service: Service) -> list[dict[str, Any]]:
    every = service.get("/api/backfill/status?all=true")["activeRequests"]  # all=true: all
    return [r for r in every if r.get("origin") == "repair"]


def per_point(qdb: QuestDBSQL, table: str) -> dict[str, int]:
    return {p: int(c) for p, c in qdb.rows(f"SELECT source_address, count() FROM {table}")}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "histfill", *args],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "INFO", **env, "COLUMNS": "250"},
        capture_output=True,  # pipes, not a terminal
        text=True,
        timeout=240,
        check=False,
    )


def holes_in(env: dict[str, str], since: str = "1h") -> list[dict[str, Any]]:
    done = run_cli(env, "gaps", "--since", since, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith('{"holes"'))
    holes: list[dict[str, Any]] = json.loads(line)["holes"]
    return holes


def test_live_mode_stopped_for_a_while_leaves_a_hole_the_repair_fills(
    service: Service,
    producer_env: dict[str, str],
    infra: ConsumerSettings,  # noqa: F811
    start_consumer: Callable[..., ConsumerProcess],  # noqa: F811
    qdb: QuestDBSQL,
) -> None:
    start_consumer()
    table = infra.qdb_table
    service.start(**LIVE)
    wait_for(lambda: min(per_point(qdb, table).get(p, 0) for p in POINTS) >= 10, timeout=90)
    assert repair_requests(service) == []  # no hole while live mode runs
    service.stop()
    stopped = time.time()
    wait_for(lambda: time.time() > stopped + HOLE_S, timeout=HOLE_S + 30, interval=0.2)
    env = {**producer_env, **LIVE}
    # the hole is in QuestDB once live values land after it; histfill gaps lists it
    service.start(**LIVE)
    found: list[dict[str, Any]] = []

    def hole_listed() -> bool:
        found[:] = holes_in(env)
        return {h["point"] for h in found} == set(POINTS)

    # the repair may fill it first: then the repair's requests are the proof of the detection
    wait_for(lambda: hole_listed() or len(repair_requests(service)) == len(POINTS), timeout=90)

    def repaired() -> bool:
        m = metrics(service)
        return m.get("histfill_repair_holes{status=repaired}", 0) >= len(POINTS)

    wait_for(repaired, timeout=120, interval=0.5)
    requests = repair_requests(service)
    assert sorted(r["pointAddresses"][0] for r in requests) == sorted(POINTS)  # one per hole
    assert all(r["status"] == "Completed" and r["pointsProcessed"] >= HOLE_S - 3 for r in requests)
    for r in requests:
        hole_s = (
            datetime.fromisoformat(r["endTime"]) - datetime.fromisoformat(r["startTime"])
        ).total_seconds()
        assert r["pointsProcessed"] == int(hole_s)  # every second of the hole, 1 value each
    m = metrics(service)
    assert m["histfill_repair_values_added_total"] == sum(r["pointsProcessed"] for r in requests)
    assert m["histfill_repair_holes{status=empty}"] == 0

    # the consumer lands the repair: no hole left, each value once, verify passes over the
    # whole span live mode covered
    wait_for(lambda: holes_in(env) == [], timeout=90, interval=0.5)
    assert duplicate_keys(qdb, table) == []
    first = qdb.scalar(f"SELECT min(ts) FROM {table}")
    start = datetime.fromisoformat(first.replace("Z", "+00:00")) + timedelta(seconds=1)
    start = start.replace(microsecond=0)
    # up to the first value after the hole (its end): live mode's values before it are in
    end = max(datetime.fromisoformat(r["endTime"]) for r in requests).replace(microsecond=0)
    args = ["--connector", "Simulator", "--points", ",".join(POINTS), "--chunk", "00:01:00"]
    args += ["--start", start.isoformat(), "--end", end.isoformat(), "--no-mark"]
    args += ["--fail-on-gaps"]
    verified = run_cli(env, "verify", *args)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # the changes report lists what each repair added, per point and hour, marked "repair"
    report = service.get("/api/backfill/changes?since=1h")
    added: dict[str, int] = {}
    for row in report["rows"]:
        assert row["changed"] == 0
        assert row["by"]["repair"]["added"] == row["added"]
        added[row["point"]] = added.get(row["point"], 0) + row["added"]
    assert added == {r["pointAddresses"][0]: r["pointsProcessed"] for r in requests}
    assert report["runs"] == len(requests)


def test_a_hole_the_source_has_too_is_confirmed_empty_once_and_never_asked_again(
    service: Service,
    producer_env: dict[str, str],
    infra: ConsumerSettings,  # noqa: F811
    start_consumer: Callable[..., ConsumerProcess],  # noqa: F811
    qdb: QuestDBSQL,
    tmp_path: Any,
) -> None:
    start_consumer()
    table = infra.qdb_table
    now = datetime.now(UTC).replace(microsecond=0)
    gap_start, gap_end = now + timedelta(seconds=15), now + timedelta(seconds=15 + HOLE_S)
    gap = f"SINUSOID@{gap_start.isoformat()}/{gap_end.isoformat()}"
    env = {**LIVE, "SIMULATOR_GAPS": gap}
    service.start(**env)

    def confirmed_empty() -> bool:
        return metrics(service).get("histfill_repair_holes{status=empty}", 0) == 1

    wait_for(confirmed_empty, timeout=gap_end.timestamp() - time.time() + 120, interval=0.5)
    (asked,) = repair_requests(service)  # asked once, for the one point with a hole
    assert asked["pointAddresses"] == ["SINUSOID"]
    assert asked["status"] == "Completed"
    assert asked["pointsProcessed"] == 0
    assert asked["skippedChunks"] == 0  # read from the source, not found checkpointed
    assert datetime.fromisoformat(asked["startTime"]) < gap_start + timedelta(seconds=1)
    assert datetime.fromisoformat(asked["endTime"]) >= gap_end

    # later runs see the hole still in QuestDB and do not ask again
    runs = metrics(service)["histfill_repair_runs_total"]
    wait_for(lambda: metrics(service)["histfill_repair_runs_total"] >= runs + 5, timeout=60)
    m = metrics(service)
    assert m["histfill_repair_requests_submitted_total"] == 1
    assert m["histfill_repair_holes_open"] == 0
    assert len(repair_requests(service)) == 1
    holes = holes_in({**producer_env, **env})
    assert [h["point"] for h in holes] == ["SINUSOID"]
    assert holes[0]["expected"] >= HOLE_S - 1
    assert holes[0]["present"] == 0

    # durable: a restarted service knows the hole is empty and still does not ask for it (the
    # restart itself leaves a short hole in both points, which it may repair)
    service.stop()
    service.start(**env)
    wait_for(lambda: metrics(service).get("histfill_repair_runs_total", 0) >= 3, timeout=60)
    assert metrics(service)["histfill_repair_holes{status=empty}"] == 1

    def over_the_gap(r: dict[str, Any]) -> bool:
        return datetime.fromisoformat(r["startTime"]) < gap_end and gap_start < (
            datetime.fromisoformat(r["endTime"])
        )

    assert [r["requestId"] for r in repair_requests(service) if over_the_gap(r)] == [
        asked["requestId"]
    ]
    assert duplicate_keys(qdb, table) == []


def test_histfill_gaps_piped_prints_the_table_without_a_log_line_per_hole(
    producer_env: dict[str, str],
    infra: ConsumerSettings,  # noqa: F811
    qdb: QuestDBSQL,
) -> None:
    table = infra.qdb_table
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stamps = [now + timedelta(minutes=i) for i in (*range(10), *range(20, 30))]
    rows = ", ".join(f"('{t.isoformat()}', 'X''1', 1.0)" for t in stamps)
    qdb.exec(f"INSERT INTO {table} (ts, source_address, value) VALUES {rows}")
    wait_for(lambda: qdb.scalar(f"SELECT count() FROM {table}") == len(stamps), timeout=30)
    done = run_cli(producer_env, "gaps", "--since", "2h")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 holes in 1 of 1 points" in output
    assert "X'1" in output
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [e for e in logs if e.get("event") == "hole_found"] == []
    assert any(e.get("event") == "gaps_done" and e["holes"] == 1 for e in logs)
    debug = run_cli({**producer_env, "LOG_LEVEL": "DEBUG"}, "gaps", "--since", "2h")
    found = [json.loads(x) for x in debug.stderr.splitlines() + debug.stdout.splitlines()
             if x.startswith("{") and "hole_found" in x]  # fmt: skip
    assert found
    assert found[0]["expected"] == 10
    assert datetime.fromisoformat(found[0]["to"]) == stamps[10]


def test_in_a_fleet_one_member_takes_a_run(producer_env: dict[str, str]) -> None:
    """Two fleet members' schedulers: the Redis run key lets one of them run an interval; the
    next interval (the key expired) is taken again by one."""
    schedulers = []
    for member in ("m1", "m2"):
        env = {**producer_env, **LIVE, "PRODUCER_FLEET": "true", "PRODUCER_INSTANCE_ID": member}
        settings = load_settings(ProducerSettings, env)
        orchestrator = Orchestrator(settings, Connectors.from_settings(settings))
        schedulers.append(RepairScheduler(settings, orchestrator))
    first = [s._take_run() for s in schedulers]
    assert sorted(first) == [False, True]
    assert not any(s._take_run() for s in schedulers)  # still this interval
    wait_for(lambda: any(s._take_run() for s in schedulers), timeout=30, interval=0.2)
