"""What ``/api/backfill/status`` and a retry are made of: pure functions of request progress.

Users look at the status page first, and a request vanishing from it the moment it finished
read as "lost"; so the page lists, next to the active requests, the ones that finished lately
(:data:`RECENT_FINISHED`, at most :data:`RECENT_FINISHED_MAX`). A retry is the original
request over the original window with only the points still to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from producer.errors import RequestRejected
from producer.planning.requests import StartBody
from producer.state.progress import RequestProgress, Status, iso
from shared.batch import from_micros

RECENT_FINISHED = timedelta(hours=1)
"""How long a finished request stays in ``recentRequests``."""
RECENT_FINISHED_MAX = 20
"""At most this many finished requests in ``recentRequests``, the latest first."""


def recent(progresses: list[RequestProgress], now: datetime) -> list[RequestProgress]:
    """Requests that finished within :data:`RECENT_FINISHED` of ``now``, latest first, at most
    :data:`RECENT_FINISHED_MAX`."""
    since = now - RECENT_FINISHED
    finished = [
        p
        for p in progresses
        if p.status.final and p.finished_at is not None and p.finished_at >= since
    ]
    finished.sort(key=lambda p: p.finished_at or since, reverse=True)
    return finished[:RECENT_FINISHED_MAX]


def status_payload(
    progresses: list[RequestProgress], now: datetime, *, workers: int, include_finished: bool
) -> dict[str, Any]:
    """The seed's status payload (``activeRequests``, ``stats``, ``queueDepth``) plus
    ``recentRequests``; ``include_finished`` lists every request in ``activeRequests``."""
    shown = [p for p in progresses if include_finished or not p.status.final]
    return {
        "activeRequests": [p.to_json() for p in shown],
        "recentRequests": [p.to_json() for p in recent(progresses, now)],
        "stats": {
            "completedRequests": sum(
                p.status in (Status.COMPLETED, Status.COMPLETED_WITH_ERRORS) for p in progresses
            ),
            "partialRequests": sum(p.status is Status.PARTIAL for p in progresses),
            "failedRequests": sum(p.status is Status.FAILED for p in progresses),
            "cancelledRequests": sum(p.status is Status.CANCELLED for p in progresses),
            "totalPointsBackfilled": sum(p.values_published for p in progresses),
            "totalBatchesPublished": sum(p.batches_published for p in progresses),
            "failedChunks": sum(len(p.failed) for p in progresses),
            "workers": workers,
        },
        "queueDepth": sum(p.status is Status.QUEUED for p in progresses),
    }


def retry_body(progress: RequestProgress) -> StartBody:
    """The request that retries ``progress``: its failed points (every point if its window was
    cut at the read moment) over its window and chunk size. ``RequestRejected`` (409) while it
    runs or when nothing is left to retry."""
    r = progress.request
    if not progress.status.final:
        raise RequestRejected(
            "requestId",
            f"request {r.request_id} is {progress.status.value}: retry it once it finished",
            status=409,
        )
    failed = progress.points.failed_points
    points = list(r.points) if progress.partial else [p for p in r.points if p in failed]
    if not points:
        raise RequestRejected(
            "requestId", f"request {r.request_id} has no failed points to retry", status=409
        )
    return StartBody.model_validate(
        {
            "connectorType": r.connector_type,
            "pointAddresses": points,
            "startTime": iso(from_micros(r.start_us)),
            "endTime": iso(from_micros(r.end_us)),
            "chunkSize": r.chunk_size,
        }
    )
