"""`histfill archive` with backfill: what QuestDB lacks is asked of the real producer, landed by
the real consumer, then archived (services as subprocesses on the test's topics and table)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from archive.keys import Month
from archive.progress import Progress
from archive.service import Archive, execute, plan
from shared.kafka import base_config, ensure_topics, topic_specs
from shared.settings import CommonSettings, load_settings
from simulators.data import expected_count
from tests.helpers import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
POINTS = ["SIMTAG00001", "SIMTAG00002"]
JAN = Month(2024, 1)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def services(archive_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """A producer (Simulator connector) and a consumer for this test; the producer's URL."""
    settings = load_settings(CommonSettings, archive_env)
    ensure_topics(AdminClient(base_config(settings)), topic_specs(settings))
    api, metrics = _port(), _port()
    env = {
        **os.environ,
        **archive_env,
        "API_PORT": str(api),
        "API_HOST": "127.0.0.1",
        "METRICS_PORT": str(metrics),
        "SIMULATOR_GENERATED_TAGS": "10",
        "LOG_FORMAT": "json",
    }
    procs = []
    for module in ("consumer", "producer"):
        with (tmp_path / f"{module}.log").open("ab") as log:
            procs.append(
                subprocess.Popen(  # our own interpreter and module
                    [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=log
                )
            )
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{metrics}/ready"), 90, 0.2)
        wait_for(lambda: _ok(f"http://127.0.0.1:{api}/ready"), 90, 0.2)
        yield {"PRODUCER_URL": f"http://127.0.0.1:{api}"}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_missing_point_months_are_backfilled_then_archived(
    archive: Archive, services: dict[str, str], archive_env: dict[str, str]
) -> None:
    """QuestDB empty: the run asks the producer for the month, waits for the consumer to land
    it, and archives exactly the source's values."""
    archive.settings = load_settings(type(archive.settings), {**archive_env, **services})
    chosen = plan(POINTS, "2024-01", "2024-01", "Simulator", backfill=True)
    progress = execute(archive, chosen, Progress(len(POINTS)))
    assert progress.failed == 0, progress.errors
    assert progress.written == len(POINTS)
    for point in POINTS:
        want = expected_count(point, JAN.start, JAN.end, generated_tags=10)
        found = archive.archiver.load(point, JAN)
        assert found is not None
        assert found[1].rows == want == archive.tier.count(point, JAN.start, JAN.end)
