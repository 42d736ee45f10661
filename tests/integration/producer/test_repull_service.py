"""The re-pull inside ``python -m producer``: refused at start when it cannot run, and on its
timer with the changes report on the service's API when it can."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.qdb import QuestDBSQL
from shared.settings import ConsumerSettings
from simulators.pi import PISimulator, PISimulatorOptions
from simulators.server import serve_in_thread
from tests.helpers import wait_for
from tests.integration.consumer.conftest import (  # noqa: F401  # fixtures used by name
    ConsumerProcess,
    duplicate_keys,
    infra,
    start_consumer,
)
from tests.integration.producer.conftest import ROOT, Service

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = [f"\\\\SIMPI\\SIMTAG{i:05d}" for i in range(3)]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REPULL_ENABLED": "true"}, "REPULL_ENABLED"),
        (
            {"REPULL_ENABLED": "true", "LIVE_CONNECTOR": "Simulator", "REPULL_WINDOW": "banana"},
            "REPULL_WINDOW",
        ),
        ({"REPULL_INTERVAL_SECONDS": "0"}, "REPULL_INTERVAL_SECONDS"),
    ],
)
def test_a_repull_that_cannot_run_stops_the_service_at_start(
    producer_env: dict[str, str], env: dict[str, str], named: str
) -> None:
    """REPULL_ENABLED without live points, a bad REPULL_WINDOW or interval: exit 2, the
    variable named, before anything is served."""
    done = subprocess.run(  # our own interpreter and module
        [sys.executable, "-m", "producer"],
        cwd=ROOT,
        env={**os.environ, **producer_env, "LIVE_POINTS": "SINUSOID", **env, "API_PORT": "1"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    if "LIVE_CONNECTOR" not in env and named == "REPULL_ENABLED":
        assert "LIVE_CONNECTOR" in done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 2
    assert named in done.stdout.decode() + done.stderr.decode()


def test_the_service_repulls_on_its_timer_and_reports(
    service: Service,
    infra: ConsumerSettings,  # noqa: F811
    start_consumer: Callable[..., ConsumerProcess],  # noqa: F811
    qdb: QuestDBSQL,
) -> None:
    """REPULL_ENABLED: the producer re-reads the live points every interval; the first run adds
    the window to an empty QuestDB, the report on ``/api/backfill/changes`` says so with the
    last run's figures, and QuestDB holds each value once."""
    start_consumer()
    sim = PISimulator(PISimulatorOptions(generated_tags=len(POINTS)))
    with serve_in_thread(sim.app) as pi:
        service.start(
            PI_WEB_API_URL=f"{pi.url}/piwebapi",
            PI_USERNAME="pi",
            PI_PASSWORD="pw",  # noqa: S106  # the simulator takes any
            LIVE_CONNECTOR="PIWebApi",
            LIVE_POINTS=",".join(POINTS),
            LIVE_POLL_INTERVAL_SECONDS="3600",  # live mode aside: only the re-pull writes
            REPULL_ENABLED="true",
            REPULL_INTERVAL_SECONDS="1",
            REPULL_WINDOW="1h",
            TOPIC_CHANGES=f"{infra.topic_state}.changes",
        )
        found: dict[str, Any] = {}

        def reported() -> bool:
            found.update(service.get("/api/backfill/changes?since=1h"))
            return found["totals"]["added"] >= 60 * len(POINTS) and "lastRepull" in found

        wait_for(reported, timeout=90, interval=0.5)
        assert found["totals"]["changed"] == 0
        assert {r["point"] for r in found["rows"]} == set(POINTS)
        assert found["lastRepull"]["points"] == len(POINTS)
        table = infra.qdb_table
        wait_for(lambda: (qdb.scalar(f"SELECT count() FROM {table}") or 0) >= 180, timeout=60)
        assert duplicate_keys(qdb, table) == []
        # /metrics: the runs by outcome and the values added, for a dashboard or an alert
        scraped = httpx.get(f"{service.url}/metrics", timeout=10).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
        }
        assert samples[("histfill_repull_runs_total", (("outcome", "done"),))] >= 1
        added = samples[("histfill_repull_values_total", (("change", "added"),))]
        assert added >= found["totals"]["added"]
        assert samples[("histfill_repull_covered_until_seconds", ())] > 0
