"""structlog, configured once per process.

Services call :func:`configure_logging` first thing in ``main()``; library modules only ever do
``structlog.get_logger(__name__)``. JSON lines when stderr is not a terminal (compose, CI, log
shippers), a readable console otherwise. Standard-library logging (uvicorn, httpx) is routed
through the same renderer so one process speaks one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Set up structlog and stdlib logging; later calls only change the level."""
    global _configured  # noqa: PLW0603  # process-wide logging is global by nature
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    if json is None:
        json = not sys.stderr.isatty()

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            # the console renderer prints tracebacks itself; JSON needs them as a string field
            *([structlog.processors.format_exc_info] if json else []),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx logs every request at INFO: useful when debugging, noise during a backfill.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
    _configured = True


def is_configured() -> bool:
    return _configured
