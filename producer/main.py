"""``python -m producer`` / ``histfill producer``: the backfill service, configured by env vars.

Order at start: settings (a bad variable stops here, named), logging, topics, then uvicorn,
whose lifespan starts the orchestrator (fence, rebuild state, resume) and live mode. SIGTERM and
SIGINT are uvicorn's: it stops accepting requests and runs the lifespan's shutdown, which aborts
the open chunks (redone at the next start) and flushes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import structlog
import uvicorn
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI

from producer.api.app import create_app
from producer.fleet.coordinator import FleetOrchestrator
from producer.live.poller import LivePoller
from producer.planning.planner import ChunkSizeError, parse_chunk_size
from producer.sources.connectors import Connectors
from producer.upkeep.changes import changes_topic_spec
from producer.upkeep.changes_api import add_changes_route
from producer.upkeep.repair import RepairScheduler
from producer.upkeep.repull import Repull, check_settings
from producer.worker.orchestrator import Orchestrator
from shared.codec import BatchCodec
from shared.errors import ConfigError, HistfillError
from shared.kafka import base_config, ensure_topics, topic_specs
from shared.logging import configure_logging
from shared.settings import ProducerSettings, load_settings

log = structlog.get_logger(__name__)


def build_app(settings: ProducerSettings) -> FastAPI:
    """The service's ASGI app: API + orchestrator (+ live mode when ``LIVE_CONNECTOR`` is set)."""
    try:
        parse_chunk_size(settings.default_chunk_size)
    except ChunkSizeError as exc:
        raise ConfigError(f"DEFAULT_CHUNK_SIZE: {exc}") from exc
    check_settings(settings)  # REPULL_*: a bad one stops us here, named
    codec = BatchCodec()
    connectors = Connectors.from_settings(settings)
    orchestrator = (
        FleetOrchestrator(settings, connectors, codec)
        if settings.producer_fleet
        else Orchestrator(settings, connectors, codec)
    )
    token = settings.api_token.get_secret_value() if settings.api_token else None
    repair = RepairScheduler(settings, orchestrator) if settings.repair_enabled else None
    repull = Repull(settings, connectors, codec) if settings.repull_enabled else None
    collectors = [c for c in (repair, repull) if c is not None]
    app = create_app(orchestrator, api_token=token, collectors=collectors)
    add_changes_route(app, settings, repull)
    if settings.live_connector is not None:
        _run_beside(app, LivePoller(settings, connectors, codec))
    for job in (repair, repull):
        if job is not None:
            _run_beside(app, job)
    return app


class _Job(Protocol):
    def start(self) -> None: ...
    async def stop(self) -> None: ...


def _run_beside(app: FastAPI, job: _Job) -> None:
    """Run ``job`` (live mode, the hole repair, the re-pull) while the app runs, started once
    the orchestrator has rebuilt its state and stopped before it stops."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def with_job(a: FastAPI) -> AsyncIterator[None]:
        async with inner(a):
            job.start()
            try:
                yield
            finally:
                await job.stop()

    app.router.lifespan_context = with_job


def serve(settings: ProducerSettings) -> None:
    """Create the topics if missing and serve until SIGTERM/SIGINT."""
    app = build_app(settings)  # first: a bad setting stops us before we touch Kafka
    specs = [*topic_specs(settings), changes_topic_spec(settings)]
    ensure_topics(AdminClient(base_config(settings)), specs)
    log.info("producer_starting", host=settings.api_host, port=settings.api_port)
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep shared.logging's handlers: one format per process
        access_log=False,
        lifespan="on",
    )


def main() -> None:
    """Entry point; exits 2 with the message when the configuration or the stack is wrong."""
    try:
        settings = load_settings(ProducerSettings)
    except ConfigError as exc:
        configure_logging("INFO")
        log.error("invalid_configuration", error=str(exc))
        sys.exit(2)
    configure_logging(
        settings.log_level,
        json=None if settings.log_format == "auto" else settings.log_format == "json",
    )
    try:
        serve(settings)
    except HistfillError as exc:
        log.error("producer_failed", error=str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
