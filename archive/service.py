"""Wiring: settings -> store, QuestDB tier, archiver, query service; and one archive run.

Shared by the CLI, the HTTP API and the tests, so all three run the same code path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from archive.archiver import Archiver, closed_months, utc_now
from archive.backfill import ProducerClient, backfill_missing
from archive.errors import BadArchiveRequest, CorruptObjectError
from archive.hot_window import PruneReport, prune
from archive.keys import Month, months
from archive.nopandas import hide_pandas
from archive.progress import Progress
from archive.query import QueryLimits, QueryService
from archive.questdb_tier import QuestTier
from archive.store import ObjectStore, StoreConfig
from shared.malloc import tune_malloc
from shared.settings import ArchiveSettings, parse_retention

MAX_POINT_MONTHS = 10_000_000


def lean_memory() -> None:
    """Keep the archive process's RSS near its live data (goal: <= 200 MB whatever the range).

    Arrow's default allocator (mimalloc) keeps freed pages per thread: with 4 workers the run
    peaked at 405 MB; glibc's malloc with a fixed mmap threshold and two arenas
    (:func:`shared.malloc.tune_malloc`) returns each point-month's buffers when freed.
    Measured on ``bench/archive.py``: see the README. Call before any thread starts.
    pandas is kept out too (:mod:`archive.nopandas`: pyarrow would import it, ~30 MB).
    """
    hide_pandas()
    tune_malloc()
    pa.set_memory_pool(pa.system_memory_pool())


def store_config(settings: ArchiveSettings) -> StoreConfig:
    return StoreConfig(
        url=settings.archive_url,
        endpoint=settings.archive_s3_endpoint,
        region=settings.archive_s3_region,
        access_key=settings.archive_s3_access_key,
        secret_key=settings.archive_s3_secret_key,
        path_style=settings.archive_s3_path_style,
        retries=settings.archive_store_retries,
        backoff_s=settings.archive_store_backoff_seconds,
        timeout_s=settings.archive_store_timeout_seconds,
    )


@dataclass
class Archive:
    """The archive stage's objects, built once per process."""

    settings: ArchiveSettings
    store: ObjectStore
    tier: QuestTier
    archiver: Archiver
    query: QueryService

    @classmethod
    def from_settings(cls, settings: ArchiveSettings) -> Archive:
        store = ObjectStore(store_config(settings))
        tier = QuestTier.from_settings(settings)
        archiver = Archiver(store, tier)
        limits = QueryLimits(
            settings.query_max_points, settings.query_max_days, settings.query_max_rows
        )
        return cls(settings, store, tier, archiver, QueryService(archiver, tier, limits))

    def close(self) -> None:
        self.query.close()
        self.tier.close()


@dataclass(frozen=True)
class RunPlan:
    """A checked archive run: points x closed months, and whether to backfill first."""

    points: tuple[str, ...]
    first: Month
    last: Month
    connector: str | None = None
    backfill: bool = True

    @property
    def months(self) -> list[Month]:
        return months(self.first, self.last)


def plan(
    points: list[str],
    start_month: str,
    end_month: str,
    connector: str | None,
    backfill: bool,
    now: datetime | None = None,
    max_points: int = 10_000,
) -> RunPlan:
    """Check a run's input; BadArchiveRequest names the field."""
    first = Month.parse(start_month, "startMonth")
    last = Month.parse(end_month, "endMonth")
    if last < first:
        raise BadArchiveRequest("endMonth", f"{last} is before startMonth {first}")
    closed_months([last], now or utc_now())
    clean = [p for p in (q.strip() for q in points) if p]
    if not clean:
        raise BadArchiveRequest("pointIds", "name at least one point")
    if len(clean) > max_points:
        raise BadArchiveRequest("pointIds", f"{len(clean)} points; at most {max_points}")
    if len(set(clean)) != len(clean):
        raise BadArchiveRequest("pointIds", "a point is named twice")
    if backfill and not connector:
        raise BadArchiveRequest("connectorType", "needed to backfill (or turn backfill off)")
    result = RunPlan(tuple(clean), first, last, connector, backfill)
    if len(result.months) * len(clean) > MAX_POINT_MONTHS:
        raise BadArchiveRequest("pointIds", f"more than {MAX_POINT_MONTHS} point-months")
    return result


def missing_point_months(archive: Archive, run: RunPlan) -> dict[Month, list[str]]:
    """Point-months with neither a valid object nor rows in QuestDB: what to backfill."""
    missing: dict[Month, list[str]] = {}
    for month in run.months:
        for point in run.points:
            try:
                if archive.archiver.load(point, month) is not None:
                    continue
            except CorruptObjectError:
                pass
            if archive.tier.count(point, month.start, month.end) == 0:
                missing.setdefault(month, []).append(point)
    return missing


def execute(
    archive: Archive,
    run: RunPlan,
    progress: Progress,
    cancel: threading.Event | None = None,
    on_step: Callable[[Progress], None] | None = None,
) -> Progress:
    """Backfill what QuestDB lacks (if asked), archive every point-month, prune the hot window
    (if HOT_RETENTION is set). Errors end up in ``progress``; the run goes on past them."""
    archive.store.ensure_bucket()
    if run.backfill and run.connector:
        missing = missing_point_months(archive, run)
        if missing:
            token = archive.settings.producer_api_token
            producer = ProducerClient(
                archive.settings.producer_url, token.get_secret_value() if token else None
            )
            try:
                progress.status = "Backfilling"
                for error in backfill_missing(producer, archive.tier, run.connector, missing):
                    progress.note(error)
            finally:
                producer.close()
    archive.archiver.run(
        run.points, run.months, progress, archive.settings.archive_workers, cancel, on_step
    )
    if archive.settings.hot_retention and not (cancel and cancel.is_set()):
        report = prune_hot(archive)
        for name in report.dropped:
            progress.note(f"hot window: dropped QuestDB partition {name}")
    return progress


def prune_hot(archive: Archive, now: datetime | None = None) -> PruneReport:
    retention = archive.settings.hot_retention
    if not retention:
        return PruneReport()
    return prune(archive.archiver, timedelta(seconds=parse_retention(retention)), now or utc_now())
