"""A request's "in QuestDB" share follows the consumer group's commits, across a restart."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.integration.consumer.conftest import ConsumerProcess
from tests.integration.producer.conftest import Service
from tests.integration.producer.test_producer_service import TEST_ONE, _final, _start

pytestmark = pytest.mark.stack


def _in_questdb(service: Service, request_id: str) -> float | None:
    value = service.get(f"/api/backfill/request/{request_id}")["inQuestDBPercent"]
    return None if value is None else float(value)


def _ratio_metric(service: Service) -> float | None:
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    found = re.findall(r"^histfill_backfill_ingested_ratio\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return float(found[0]) if found else None


def _has(consumer: ConsumerProcess, series: str) -> bool:
    try:
        text = httpx.get(f"http://127.0.0.1:{consumer.metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return False
    return series in text


def test_published_is_not_in_questdb_until_the_consumer_commits(
    service: Service, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Test 1 published, no consumer yet: 100 % published, 0 % in QuestDB. A consumer of the
    group ingests it: 100 % in QuestDB, on the request and in /metrics; a restarted producer
    (no delivery reports for what its predecessor published) says 100 % too."""
    service.start()
    request_id = _start(service, TEST_ONE)
    done = _final(service, request_id)
    assert done["progress"] == 100.0
    wait_for(lambda: _in_questdb(service, request_id) is not None, timeout=30)
    assert _in_questdb(service, request_id) == 0.0
    assert service.get("/api/backfill/status")["recentRequests"][0]["inQuestDBPercent"] == 0.0

    consumer = ConsumerProcess(stack_env, tmp_path / "consumer.log").start()
    try:
        wait_for(lambda: _in_questdb(service, request_id) == 100.0, timeout=90, interval=0.5)
        assert service.get(f"/api/backfill/request/{request_id}")["valuesInQuestDB"] == 4320
        wait_for(lambda: _ratio_metric(service) == 1.0, timeout=30, interval=0.5)
        # all read: only each partition's last commit marker is left, which is no lag in time
        backfill = stack_env["TOPIC_BACKFILL"]
        eta = f'histfill_consumer_drain_eta_seconds{{topic="{backfill}"}}'
        wait_for(lambda: _has(consumer, eta) and consumer.metric(eta) == 0, timeout=30)
        assert (
            consumer.metric(f'histfill_consumer_lag_seconds{{partition="0",topic="{backfill}"') == 0
        )

        service.stop()
        service.start()
        wait_for(lambda: _in_questdb(service, request_id) == 100.0, timeout=60, interval=0.5)
    finally:
        assert consumer.terminate() == 0
