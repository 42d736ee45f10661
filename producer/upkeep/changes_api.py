"""``GET /api/backfill/changes``: the changes report over HTTP (read-only, like the status)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from producer.api.app import ApiError, ok
from producer.upkeep.changes import SinceError, parse_since, report
from producer.upkeep.repull import Repull
from shared.settings import ProducerSettings


def add_changes_route(
    app: FastAPI, settings: ProducerSettings, repull: Repull | None = None
) -> None:
    """Add the report's route; ``repull`` (when running) adds its last run to the answer."""

    @app.get("/api/backfill/changes", tags=["upkeep"])
    async def changes(since: str = "1d", until: str | None = None, point: str | None = None) -> Any:
        """Values the re-pull (and hole repairs) added and changed, per point and UTC hour,
        seen from ``since`` (``1d``, ``12h``, or an ISO-8601 time) to ``until`` (default now)."""
        now = datetime.now(UTC)
        try:
            start = parse_since(since, now)
        except SinceError as exc:
            raise ApiError(400, str(exc), "since") from exc
        try:
            end = now if until is None else parse_since(until, now)
        except SinceError as exc:
            raise ApiError(400, str(exc), "until") from exc
        if end <= start:
            raise ApiError(400, "until must be after since", "until")
        data = await asyncio.to_thread(report, settings, start, end, point or None)
        if repull is not None and repull.last is not None:
            data["lastRepull"] = repull.last.as_dict()
        return ok(data)
