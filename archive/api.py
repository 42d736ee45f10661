"""The archive's HTTP API (port ``ARCHIVE_API_PORT``, 5053): archive runs and the query.

| method and path | what it does |
| --- | --- |
| ``POST /api/archive/start`` | ``pointIds``, ``startMonth``, ``endMonth``, ``connectorType``, |
|  | ``backfill`` |
| ``GET /api/archive/status`` | every run of this process |
| ``GET /api/archive/run/{runId}`` | one run's progress (point-months, rate, ETA, bytes, errors) |
| ``POST /api/archive/run/{runId}/cancel`` | stop after the point-months in hand |
| ``POST /api/timeseries/query`` | ``pointIds``, ``startDate``, ``endDate``, ``limit``, ``format`` |

Runs live in this process's memory: after a restart the objects are the truth, and running the
same request again skips what is done. Bad input gets a 400 naming the field.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from archive.answer import ARROW_MEDIA_TYPE, ndjson_lines, to_arrow_stream, to_json
from archive.errors import BadArchiveRequest
from archive.progress import Progress
from archive.query import TooManyRows, check
from archive.service import Archive, execute, plan
from shared.errors import HistfillError


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pointIds: list[str] = Field(min_length=1)  # the wire's names
    startMonth: str
    endMonth: str
    connectorType: str | None = None
    backfill: bool = True


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pointIds: list[str]
    startDate: datetime
    endDate: datetime
    limit: int | None = None
    format: Literal["json", "ndjson", "arrow"] = "json"


class _Run:
    def __init__(self, run_id: str, progress: Progress) -> None:
        self.run_id = run_id
        self.progress = progress
        self.cancel = threading.Event()


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"success": False, "error": {"field": field, "message": message}},
    )


def create_app(archive: Archive) -> FastAPI:
    runs: dict[str, _Run] = {}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="archive-run")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # cancel the runs; each stops after the point-months in hand
            for state in runs.values():
                state.cancel.set()
            pool.shutdown(wait=True)

    app = FastAPI(title="histfill archive", version="1", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        return _error(400, field, f"{field}: {first.get('msg')}")

    @app.exception_handler(BadArchiveRequest)
    async def _bad(_request: Request, exc: BadArchiveRequest) -> JSONResponse:
        return _error(413 if isinstance(exc, TooManyRows) else 400, exc.field, str(exc))

    @app.exception_handler(HistfillError)
    async def _failed(_request: Request, exc: HistfillError) -> JSONResponse:
        return _error(503 if exc.retriable else 500, "", str(exc))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/api/archive/start")
    def start(body: StartBody) -> dict[str, Any]:
        run = plan(body.pointIds, body.startMonth, body.endMonth, body.connectorType, body.backfill)
        run_id = uuid.uuid4().hex
        state = _Run(run_id, Progress(len(run.points) * len(run.months)))
        runs[run_id] = state

        def go() -> None:
            try:
                execute(archive, run, state.progress, state.cancel)
            except HistfillError as exc:
                state.progress.error(str(exc))
                state.progress.finish("Failed")

        pool.submit(go)
        return {"success": True, "data": {"runId": run_id, **state.progress.snapshot()}}

    def _get(run_id: str) -> _Run:
        found = runs.get(run_id)
        if found is None:
            raise BadArchiveRequest("runId", f"no run {run_id!r} in this process")
        return found

    @app.get("/api/archive/status")
    def status() -> dict[str, Any]:
        data = [{"runId": k, **r.progress.snapshot()} for k, r in runs.items()]
        return {"success": True, "data": {"runs": data}}

    @app.get("/api/archive/run/{run_id}")
    def one(run_id: str) -> dict[str, Any]:
        return {"success": True, "data": {"runId": run_id, **_get(run_id).progress.snapshot()}}

    @app.post("/api/archive/run/{run_id}/cancel")
    def cancel(run_id: str) -> dict[str, Any]:
        state = _get(run_id)
        state.cancel.set()
        return {"success": True, "data": {"runId": run_id, "cancelRequested": True}}

    @app.post("/api/timeseries/query", response_model=None)
    async def query(body: QueryBody) -> JSONResponse | StreamingResponse:
        checked = check(
            body.pointIds, body.startDate, body.endDate, body.limit, archive.query.limits
        )
        answers = await run_in_threadpool(archive.query.run, checked)
        if body.format == "arrow":
            return StreamingResponse(to_arrow_stream(answers), media_type=ARROW_MEDIA_TYPE)
        if body.format == "ndjson":
            lines: Iterator[str] = ndjson_lines(answers)
            return StreamingResponse(lines, media_type="application/x-ndjson")
        return JSONResponse(await run_in_threadpool(to_json, answers))

    return app
