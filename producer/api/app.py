"""The backfill HTTP API (port 5052): the seed's contract, plus cancel/pause/resume and estimate.

Every answer is the seed's envelope, ``{"success": true, "data": ...}``; failures are
``{"success": false, "error": {"field": ..., "message": ...}}`` with a 4xx/5xx status: 413 for a
body over ``API_MAX_BODY_BYTES`` (refused before it is read to its end, let alone parsed), 400
for a body that is not JSON (with line and column) or a rule it breaks (see
:mod:`producer.planning.requests`), 422 for a body of the wrong shape, 401 without the bearer token
(``API_TOKEN``, mutating endpoints only), 404 for an unknown request id, 503 when Kafka did not
take the request. OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer.api.status import recent
from producer.errors import ProducerError, PublishError, RequestRejected, UnknownRequest
from producer.planning.requests import StartBody
from producer.state.ingested import share, with_ingested
from producer.state.progress import RequestProgress, iso, utc_now
from producer.worker.orchestrator import Orchestrator
from shared.batch import from_micros

_bearer = HTTPBearer(auto_error=False, description="API_TOKEN, when the service sets one.")


class ApiError(Exception):
    """An answer other than success, rendered in the envelope."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def ok(data: Any) -> dict[str, Any]:
    """The success envelope."""
    return {"success": True, "data": data}


def _failure(
    status: int,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"success": False, "data": None, "error": {"field": field, "message": message}},
        status_code=status,
        headers=headers,
    )


def _too_large_message(limit: int) -> str:
    return (
        f"request body is larger than the limit of {limit:,} bytes (API_MAX_BODY_BYTES); "
        "split the request"
    )


class BodyTooLarge(HTTPException):
    """A chunked body passed the limit while it was being read (raised from ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with a 413 in the envelope.

    A declared ``Content-Length`` over the limit is answered at once, before a byte of the body
    is read; a body without one (chunked) is counted as the app reads it and refused the moment
    it passes the limit, so a request is never parsed, let alone planned, from an oversized
    body. (Starlette's own limiter answers plain text, outside the envelope.)
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _failure(413, _too_large_message(self.limit), "body")(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def json_position(body: object, pos: object) -> str:
    """``line L column C`` (1-based, as :class:`json.JSONDecodeError` counts) of a character
    offset in the body, or ``character N`` when the body is not at hand."""
    if not isinstance(pos, int):
        return "an unknown position"
    if not isinstance(body, str):
        return f"character {pos + 1}"
    line = body.count("\n", 0, pos) + 1
    column = pos - body.rfind("\n", 0, pos)
    return f"line {line} column {column}"


def validation_failure(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation error as the envelope: the field's name, not a body position."""
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        # FastAPI reports json.loads' failure as loc ("body", <character offset>).
        reason = (first.get("ctx") or {}).get("error") or first.get("msg")
        where = json_position(exc.body, loc[1] if len(loc) > 1 else None)
        return _failure(400, f"request body is not valid JSON: {reason} at {where}", "body")
    if loc == ("body",) and first.get("type") == "missing":
        return _failure(422, "request body is missing: send the request as a JSON object", "body")
    path = [str(part) for part in loc if part != "body"]
    field = ".".join(path) or "body"
    return _failure(422, f"{field}: {first.get('msg')}", field)


def http_failure(exc: HTTPException) -> JSONResponse:
    """Starlette's HTTP errors (413, 404, 405, a body that is not text) in the envelope."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return _failure(
            400,
            f"request body is not valid JSON: it is not UTF-8 text ({cause.reason} at byte "
            f"{cause.start})",
            "body",
        )
    field = "body" if exc.status_code == 413 else None
    return _failure(exc.status_code, str(exc.detail), field, exc.headers)


def _start_answer(progress: RequestProgress) -> dict[str, Any]:
    r = progress.request
    start, end = from_micros(r.start_us), from_micros(r.end_us)
    return {
        "requestId": r.request_id,
        "connectorType": r.connector_type,
        "pointCount": len(r.points),
        "startTime": iso(start),
        "endTime": iso(end),
        "chunkSize": r.chunk_size,
        "totalChunks": progress.total_chunks,
        "status": progress.status.value,
        "message": f"Backfill queued: {len(r.points)} points from {start.date()} to {end.date()}",
    }


class ProgressCollector(Collector):
    """Prometheus metrics computed from the orchestrator at each scrape.

    ``request_id`` is a label, so its values are bounded: a request is exported while it is
    active (queued, running, paused) and for :data:`producer.api.status.RECENT_FINISHED` (an hour)
    after it finished, at most :data:`producer.api.status.RECENT_FINISHED_MAX` finished ones, the
    same set ``/api/backfill/status`` shows; older requests stop being exported. ``status`` is
    a label too: a request changing status starts a new series (the old one ends at once, as
    this collector exports only the current one).
    """

    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orchestrator = orchestrator

    def shown(self) -> list[RequestProgress]:
        """The requests exported: active ones, and those finished within the last hour."""
        progresses = [e.progress for e in self._orchestrator.entries.values()]
        return [p for p in progresses if not p.status.final] + recent(progresses, utc_now())

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["request_id", "connector", "status"]
        gauges = {
            "progress": GaugeMetricFamily(
                "histfill_backfill_progress_ratio",
                "Chunks with an outcome (done, skipped, failed, cut), 0 to 1.",
                labels=labels,
            ),
            "ingested": GaugeMetricFamily(
                "histfill_backfill_ingested_ratio",
                "Progress scaled by the share of published values the consumer group has "
                "committed (= in QuestDB), 0 to 1; absent until the group's offsets were read.",
                labels=labels,
            ),
            "status": GaugeMetricFamily(
                "histfill_backfill_request_status",
                "1 for the request's current status (label status).",
                labels=labels,
            ),
            "chunks_planned": GaugeMetricFamily(
                "histfill_backfill_chunks_planned", "Chunks in the request's plan.", labels=labels
            ),
            "chunks_completed": GaugeMetricFamily(
                "histfill_backfill_chunks_completed", "Chunks committed or skipped.", labels=labels
            ),
            "chunks_failed": GaugeMetricFamily(
                "histfill_backfill_chunks_failed", "Chunks with failed points.", labels=labels
            ),
            "chunks_skipped": GaugeMetricFamily(
                "histfill_backfill_chunks_skipped", "Chunks already done before.", labels=labels
            ),
            "rate": GaugeMetricFamily(
                "histfill_backfill_values_per_second", "Publish rate.", labels=labels
            ),
            "elapsed": GaugeMetricFamily(
                "histfill_backfill_elapsed_seconds", "Time spent, this process.", labels=labels
            ),
            "eta": GaugeMetricFamily(
                "histfill_backfill_eta_seconds", "Estimated time left.", labels=labels
            ),
            "errors": GaugeMetricFamily(
                "histfill_backfill_point_errors", "Point failures recorded.", labels=labels
            ),
        }
        values = CounterMetricFamily(
            "histfill_backfill_values_published", "Values published.", labels=labels
        )
        batches = CounterMetricFamily(
            "histfill_backfill_batches_published", "Messages published.", labels=labels
        )
        self._orchestrator.refresh()
        tracker = self._orchestrator.ingest
        for p in self.shown():
            key = [p.request.request_id, p.request.connector_type, p.status.value]
            gauges["progress"].add_metric(key, p.percent / 100)
            ingested = share(tracker.ingested(p.request.request_id), p.values_published, p.percent)
            if ingested is not None:
                gauges["ingested"].add_metric(key, ingested / 100)
            gauges["status"].add_metric(key, 1)
            gauges["chunks_planned"].add_metric(key, p.total_chunks)
            gauges["chunks_completed"].add_metric(key, len(p.completed))
            gauges["chunks_failed"].add_metric(key, len(p.failed))
            gauges["chunks_skipped"].add_metric(key, p.skipped_chunks)
            gauges["rate"].add_metric(key, p.rate)
            gauges["elapsed"].add_metric(key, p.elapsed_s)
            gauges["eta"].add_metric(key, p.eta_s if p.eta_s is not None else float("nan"))
            gauges["errors"].add_metric(key, p.error_count)
            values.add_metric(key, p.values_published)
            batches.add_metric(key, p.batches_published)
        depth = GaugeMetricFamily("histfill_backfill_queue_depth", "Requests waiting to start.")
        depth.add_metric([], self._orchestrator.status()["queueDepth"])
        fenced = CounterMetricFamily(
            "histfill_backfill_fenced_workers",
            "Workers stopped because a newer producer took their transactional id.",
        )
        fenced.add_metric([], self._orchestrator.fenced_workers)
        yield from gauges.values()
        yield values
        yield batches
        yield depth
        yield fenced
        yield from self._orchestrator.extra_metrics()


def _add_detail(app: FastAPI, orchestrator: Orchestrator) -> None:
    """``GET /api/backfill/request/{id}`` (its own function: ``create_app`` is long)."""

    @app.get("/api/backfill/request/{request_id}", tags=["backfill"])
    async def request_detail(request_id: str) -> dict[str, Any]:
        """One request: progress, counts, rate, ETA and its errors; ``inQuestDBPercent``:
        ``progress`` scaled by the share of its published values the consumers committed."""
        await orchestrator.sync(request_id)
        return ok(with_ingested(orchestrator.ingest, orchestrator.get(request_id).to_json()))


def _add_retry(app: FastAPI, orchestrator: Orchestrator, mutating: list[Any]) -> None:
    """``POST /api/backfill/request/{id}/retry`` (its own function: ``create_app`` is long)."""

    @app.post("/api/backfill/request/{request_id}/retry", dependencies=mutating, tags=["backfill"])
    async def retry(request_id: str) -> dict[str, Any]:
        """Queue a new request with only the failed points of a finished one (every point if its
        window was cut at the read moment), over its window; checkpointed chunks are skipped.
        409 while it runs or when nothing failed."""
        progress = await orchestrator.retry(request_id)
        return ok({**_start_answer(progress), "retryOf": request_id})


def create_app(
    orchestrator: Orchestrator,
    *,
    api_token: str | None = None,
    max_body_bytes: int | None = None,
    collectors: Sequence[Collector] = (),
) -> FastAPI:
    """The API around a (not yet started) orchestrator; the app's lifespan starts and stops it.

    ``max_body_bytes`` defaults to the orchestrator's settings (``API_MAX_BODY_BYTES``).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await orchestrator.start()
        try:
            yield
        finally:
            await orchestrator.stop()

    app = FastAPI(
        title="histfill backfill API",
        version="1",
        description="Backfill PI / ACE IoT history into Kafka (and on to QuestDB).",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes or orchestrator.settings.api_body_limit)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ProgressCollector(orchestrator))
    for collector in collectors:  # e.g. the hole repair's counts
        registry.register(collector)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if api_token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), api_token.encode()):
            raise ApiError(401, "a valid 'Authorization: Bearer <API_TOKEN>' header is required")

    mutating = [Depends(authorize)]

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _failure(exc.status, exc.message, exc.field)

    @app.exception_handler(RequestRejected)
    async def _rejected(_: Request, exc: RequestRejected) -> JSONResponse:
        return _failure(exc.status, exc.message, exc.field)

    @app.exception_handler(UnknownRequest)
    async def _unknown(_: Request, exc: UnknownRequest) -> JSONResponse:
        return _failure(404, str(exc), "requestId")

    @app.exception_handler(PublishError)
    async def _unavailable(_: Request, exc: PublishError) -> JSONResponse:
        return _failure(503, f"Kafka did not take the request: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_failure(exc)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return http_failure(exc)

    @app.post("/api/backfill/start", dependencies=mutating, tags=["backfill"])
    async def start(body: StartBody) -> dict[str, Any]:
        """Queue a backfill: `connectorType`, `pointAddresses`, `startTime`, `endTime`,
        `chunkSize`."""
        return ok(_start_answer(await orchestrator.submit(body)))

    @app.post("/api/backfill/estimate", tags=["backfill"])
    async def estimate(body: StartBody) -> dict[str, Any]:
        """Dry run: chunks, values, bytes and time the request would take; nothing is queued."""
        return ok(orchestrator.estimate(body))

    @app.get("/api/backfill/status", tags=["backfill"])
    async def status(all: bool = False) -> dict[str, Any]:
        """`activeRequests`: the requests not finished (with `all=true`, every request);
        `recentRequests`: the ones that finished within the last hour, at most 20, latest first,
        with their final status (so a request does not vanish the moment it ends); `stats`,
        `queueDepth`."""
        payload = orchestrator.status(include_finished=all)
        for listing in ("activeRequests", "recentRequests"):
            payload[listing] = [with_ingested(orchestrator.ingest, r) for r in payload[listing]]
        return ok(payload)

    @app.post("/api/backfill/request/{request_id}/cancel", dependencies=mutating, tags=["backfill"])
    async def cancel(request_id: str) -> dict[str, Any]:
        """Cancel: the chunk in flight is aborted; committed chunks stay (a re-run skips them)."""
        return ok((await orchestrator.cancel(request_id)).to_json())

    @app.post("/api/backfill/request/{request_id}/pause", dependencies=mutating, tags=["backfill"])
    async def pause(request_id: str) -> dict[str, Any]:
        """Pause: nothing new starts; the chunk in flight is aborted and redone on resume."""
        return ok((await orchestrator.pause(request_id)).to_json())

    @app.post("/api/backfill/request/{request_id}/resume", dependencies=mutating, tags=["backfill"])
    async def resume(request_id: str) -> dict[str, Any]:
        """Resume a paused request."""
        return ok((await orchestrator.resume(request_id)).to_json())

    _add_detail(app, orchestrator)
    _add_retry(app, orchestrator, mutating)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        """The process answers."""
        return ok({"status": "ok"})

    @app.get("/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        """State rebuilt and workers running."""
        if not orchestrator.started:
            return _failure(503, "starting: rebuilding state from the state topic")
        return JSONResponse(ok({"status": "ready"}))

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics of every request."""
        return PlainTextResponse(
            generate_latest(registry).decode(), media_type="text/plain; version=0.0.4"
        )

    @app.exception_handler(ProducerError)
    async def _producer_error(_: Request, exc: ProducerError) -> JSONResponse:
        return _failure(500, str(exc))

    return app
