"""``GET /api/backfill/changes``: the changes report over HTTP (read-only, like the status)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from producer.api.app import ok
from producer.upkeep.changes import SinceError, parse_since, report
from producer.upkeep.repull import Repull
from shared.settings import ProducerSettings


def _bad(message: str, field: str) -> JSONResponse:
    """The API's failure envelope (a 400 naming the query parameter)."""
    body = {"success": False, "data": None, "error": {"field": field, "message": message}}
    return JSONResponse(body, status_code=400)


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
            return _bad(str(exc), "since")
        try:
            end = now if until is None else parse_since(until, now)
        except SinceError as exc:
            return _bad(str(exc), "until")
        if end <= start:
            return _bad("until must be after since", "until")
        try:
            data = await asyncio.to_thread(report, settings, start, end, point or None)
        except (KafkaException, RuntimeError, TimeoutError) as exc:  # Kafka down or slow
            body = {"success": False, "data": None, "error": {"field": None, "message": str(exc)}}
            return JSONResponse(body, status_code=503)
        if repull is not None and repull.last is not None:
            data["lastRepull"] = repull.last.as_dict()
        return ok(data)
