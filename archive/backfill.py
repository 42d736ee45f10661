"""Filling what QuestDB lacks before archiving, through the producer's backfill API.

Why the producer's API rather than reading the connectors here: the producer already owns
reading historians well (paging, rate budgets shared per host, retries, checkpoints in Kafka
transactions, resumable requests) and the consumer owns exactly-once writes into QuestDB. The
archive stays one reader of QuestDB, the system of record, and cannot write a value there that
verify would not see. The cost is a wait for the consumer to land the rows, which the archive
run does by watching QuestDB's counts reach what the producer published.

Only point-months with no valid object and no rows in QuestDB are asked for: one request per
month naming those points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from archive.errors import ArchiveError
from archive.keys import Month
from archive.questdb_tier import QuestTier

log = structlog.get_logger(__name__)
FINAL = {"Completed", "CompletedWithErrors", "Partial", "Failed", "Cancelled"}  # producer statuses


class ProducerClient:
    """The few producer API calls the archive needs."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ArchiveError(
                f"producer API unreachable at {self._client.base_url}: {exc}"
            ) from exc
        payload = response.json() if response.content else {}
        if response.status_code >= 400 or not payload.get("success", False):
            raise ArchiveError(f"producer API refused {method} {path}: {payload or response.text}")
        data: dict[str, Any] = payload["data"]
        return data

    def start(self, connector: str, points: list[str], month: Month) -> str:
        body = {
            "connectorType": connector,
            "pointAddresses": points,
            "startTime": month.start.isoformat().replace("+00:00", "Z"),
            "endTime": month.end.isoformat().replace("+00:00", "Z"),
            "chunkSize": "P7D",
        }
        return str(self._call("POST", "/api/backfill/start", body)["requestId"])

    def request(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/backfill/request/{request_id}")


def backfill_missing(
    producer: ProducerClient,
    tier: QuestTier,
    connector: str,
    missing: dict[Month, list[str]],
    timeout_s: float = 3600,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Backfill the missing point-months; returns error messages (empty: all landed)."""
    errors: list[str] = []
    requests = {
        month: producer.start(connector, points, month) for month, points in missing.items()
    }
    deadline = clock() + timeout_s
    for month, request_id in requests.items():
        points = missing[month]
        while True:
            data = producer.request(request_id)
            if data["status"] in FINAL:
                break
            if clock() > deadline:
                errors.append(f"{month}: backfill {request_id} still {data['status']} at timeout")
                break
            sleep(poll_s)
        if data["status"] != "Completed":
            errors.append(f"{month}: backfill {request_id} ended {data['status']}")
        published = int(data.get("pointsProcessed", 0))
        # the consumer lands the rows after the producer published them
        while clock() <= deadline:
            have = sum(tier.count(p, month.start, month.end) for p in points)
            if have >= published:
                break
            sleep(poll_s)
        else:
            errors.append(f"{month}: QuestDB did not receive the backfilled rows in time")
        log.info("archive_backfill_done", month=str(month), request_id=request_id, values=published)
    return errors
