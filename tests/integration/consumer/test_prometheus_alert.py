"""A real Prometheus, scraping a real consumer with the shipped rules, fires the lag alert.

The test starts its own Prometheus (Debian's package) on a free port, with a config pointing
at the consumer it starts, 1 s scrape and evaluation intervals, and a rendered copy of
``ops/prometheus/histfill.rules.yml`` whose ``for:`` durations are cut to 2 s (the
expressions and thresholds are the shipped ones). Real lag grows: real-time messages created
ten minutes ago wait in Kafka while the consumer cannot finish a flush (its Redis is a closed
port, so nothing is committed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from histfill.prometheus import OPS_PROMETHEUS, prometheus_argv
from shared.settings import ConsumerSettings
from tests.helpers import wait_for
from tests.integration.consumer.conftest import ConsumerProcess, free_port
from tests.integration.consumer.test_time_lag import produce_aged

pytestmark = pytest.mark.stack


class PrometheusProcess:
    """A Prometheus of this test's own: config, rules and data in a temporary folder."""

    def __init__(self, folder: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            message = "prometheus is missing: `apt-get install prometheus` (make ops-tools)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        rules = (OPS_PROMETHEUS / "histfill.rules.yml").read_text()
        (folder / "rules.yml").write_text(re.sub(r"for: \d+m", "for: 2s", rules))
        scrapes = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items()
        )
        (folder / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [rules.yml]\nscrape_configs:\n" + scrapes
        )
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                prometheus_argv(binary, folder / "prometheus.yml", folder / "data", self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> Any:
        response = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def firing(self) -> dict[str, dict[str, str]]:
        """Alert name -> labels of the alerts firing now."""
        return {
            a["labels"]["alertname"]: a["labels"]
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["state"] == "firing"
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], PrometheusProcess]]:
    started: list[PrometheusProcess] = []

    def start(targets: dict[str, str]) -> PrometheusProcess:
        started.append(PrometheusProcess(tmp_path, targets))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def test_real_time_lag_fires_the_alert_through_prometheus(
    infra: ConsumerSettings,
    start_consumer: Callable[..., ConsumerProcess],
    prometheus: Callable[[dict[str, str]], PrometheusProcess],
) -> None:
    """Live messages ten minutes old that the consumer cannot commit: Prometheus evaluates
    the shipped rules on the scraped lag and fires HistfillRealtimeLagHigh; the failing Redis
    writes fire HistfillSinkErrors; no other alert fires."""
    consumer = start_consumer(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    prom = prometheus({"histfill-consumer": f"127.0.0.1:{consumer.metrics_port}"})
    wait_for(prom.ready, timeout=60, interval=0.2)
    wait_for(lambda: consumer.metric("histfill_consumer_assigned_partitions") > 0, timeout=60)
    assert prom.firing() == {}

    produce_aged(infra, infra.topic_realtime, 600)
    wait_for(lambda: "HistfillRealtimeLagHigh" in prom.firing(), timeout=120, interval=0.5)
    lag = prom.get("/api/v1/query?query=histfill_realtime_lag_seconds")["result"]
    assert float(lag[0]["value"][1]) >= 600
    wait_for(lambda: "HistfillSinkErrors" in prom.firing(), timeout=60, interval=0.5)
    assert prom.firing()["HistfillSinkErrors"]["sink"] == "redis"
    assert set(prom.firing()) <= {"HistfillRealtimeLagHigh", "HistfillSinkErrors"}
