"""Fixtures for the archive on the real stack: QuestDB, and the local S3Proxy (never a mock).

Each test gets its own QuestDB table (``stack_env``) and its own bucket, removed afterwards.
Data is the simulator's (``simulators.data``), written straight into QuestDB over ILP: the
archive reads QuestDB, and the path into QuestDB is tested elsewhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from questdb import Sender

from archive.service import Archive
from histfill import stack as stack_mod
from shared.qdb import QuestDBSQL, ensure_point_table
from shared.settings import ArchiveSettings, load_settings
from simulators.data import TagCatalog, events
from tests.helpers import wait_for

CATALOG = TagCatalog(60.0, generated_tags=200)
Seed = Callable[[list[str], datetime, datetime], int]


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@pytest.fixture
def archive_env(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The test's table plus its own bucket on the local S3Proxy (removed afterwards)."""
    bucket = "t" + stack_env["QDB_TABLE"].removeprefix("point_data_")
    env = {
        **stack_env,
        "ARCHIVE_URL": f"s3://{bucket}/arch",
        "ARCHIVE_S3_ENDPOINT": f"http://127.0.0.1:{stack_mod.S3PROXY_PORT}",
        "ARCHIVE_STORE_RETRIES": "2",
        "ARCHIVE_STORE_BACKOFF_SECONDS": "0.05",
    }
    yield env
    shutil.rmtree(stack_mod.StackPaths().data / "s3proxy" / bucket, ignore_errors=True)


@pytest.fixture
def archive_settings(archive_env: dict[str, str]) -> ArchiveSettings:
    return load_settings(ArchiveSettings, archive_env)


@pytest.fixture
def archive(archive_settings: ArchiveSettings, qdb: QuestDBSQL) -> Iterator[Archive]:
    """The archive stage wired to the test's table and bucket (the bucket exists)."""
    ensure_point_table(qdb, archive_settings.qdb_table)
    built = Archive.from_settings(archive_settings)
    built.store.ensure_bucket()
    yield built
    built.close()


def write_points(
    table: str, points: list[str], start: datetime, end: datetime, step: int = 1
) -> int:
    """Write the simulator's values of ``points`` in ``[start, end)`` (every ``step``-th)."""
    total = 0
    with Sender.from_conf("http::addr=127.0.0.1:9000;") as sender:
        for name in points:
            spec = CATALOG.get(name)
            assert spec is not None
            ev = events(spec, _us(start), _us(end))
            keep = slice(None, None, step)
            n = len(ev.timestamps_us[keep])
            frame = pd.DataFrame(
                {
                    "source_address": pd.Categorical([name] * n),
                    "value": ev.values[keep],
                    "quality": ev.quality[keep].astype(np.int8),
                    "text_value": (ev.texts[keep] if ev.texts else [None] * n),
                    "connector": pd.Categorical(["Simulator"] * n),
                    "ts": pd.to_datetime(ev.timestamps_us[keep], unit="us", utc=True),
                }
            )
            sender.dataframe(
                frame, table_name=table, symbols=["source_address", "connector"], at="ts"
            )
            total += n
    return total


@pytest.fixture
def seed(archive: Archive, qdb: QuestDBSQL) -> Seed:
    """Write simulator data into the test's table and wait until QuestDB shows all of it."""
    table = archive.settings.qdb_table
    written = {"rows": 0}

    def _seed(points: list[str], start: datetime, end: datetime) -> int:
        n = write_points(table, points, start, end)
        written["rows"] += n
        want = written["rows"]
        wait_for(lambda: int(qdb.scalar(f"SELECT count() FROM {table}") or 0) >= want, 120)
        return n

    return _seed
