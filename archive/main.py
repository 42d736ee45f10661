"""``python -m archive``: the archive service (HTTP API on ARCHIVE_API_PORT)."""

from __future__ import annotations

import structlog
import uvicorn

from archive.api import create_app
from archive.service import Archive, lean_memory
from shared.errors import ConfigError
from shared.logging import configure_logging
from shared.settings import ArchiveSettings, load_settings

log = structlog.get_logger(__name__)


def main() -> int:
    try:
        settings = load_settings(ArchiveSettings)
    except ConfigError as exc:
        configure_logging()
        log.error("archive_config_invalid", error=str(exc))
        return 2
    configure_logging(
        settings.log_level,
        json=None if settings.log_format == "auto" else settings.log_format == "json",
    )
    lean_memory()
    archive = Archive.from_settings(settings)
    try:
        archive.store.ensure_bucket()
        log.info(
            "archive_service_starting", port=settings.archive_api_port, url=settings.archive_url
        )
        uvicorn.run(
            create_app(archive),
            host=settings.archive_api_host,
            port=settings.archive_api_port,
            log_config=None,
        )
    finally:
        archive.close()
    return 0
