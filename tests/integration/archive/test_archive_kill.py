"""SIGKILL of the archive process mid-run: no value lost or doubled once it is run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from archive.keys import Month, months
from archive.service import Archive
from histfill import stack as stack_mod
from tests.helpers import wait_for
from tests.integration.archive.conftest import Seed

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POINTS = [f"SIMTAG{i:05d}" for i in range(40)]
FIRST, LAST = Month(2024, 1), Month(2024, 2)


def _archive_cli(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own interpreter and module
        [
            sys.executable,
            "-m",
            "histfill",
            "archive",
            "--no-backfill",
            "--points",
            ",".join(POINTS),
            "--start-month",
            str(FIRST),
            "--end-month",
            str(LAST),
        ],
        env={**os.environ, **env, "ARCHIVE_WORKERS": "2", "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_mid_run_then_rerun_gives_every_value_once(
    archive: Archive, seed: Seed, archive_env: dict[str, str]
) -> None:
    """Killed with SIGKILL after its first objects: every key is absent or whole; the re-run
    completes, and per point-month the object holds exactly QuestDB's rows."""
    seed(POINTS, FIRST.start, LAST.end)
    bucket_dir = stack_mod.StackPaths().data / "s3proxy" / archive.store.bucket  # type: ignore[operator]

    def objects() -> list[Path]:
        # os.walk, not rglob: S3Proxy's multipart scratch folders (.mpus-*) come and go while
        # it is read, and rglob raises FileNotFoundError on one that vanished (seen in a run)
        return [
            Path(folder, name)
            for folder, _, names in os.walk(bucket_dir)
            for name in names
            if name.endswith(".parquet")
        ]

    proc = _archive_cli(archive_env)
    try:
        wait_for(lambda: len(objects()) >= 3, timeout=120, interval=0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    total = len(POINTS) * len(months(FIRST, LAST))
    before = len(archive.store.list("timeseries/"))
    assert 0 < before < total, "the kill did not land mid-run"
    for key in archive.store.list("timeseries/"):  # whatever exists is whole and valid
        point_month = key.split("/")
        month = Month(int(point_month[1]), int(point_month[2]))
        from archive.keys import parse_key  # noqa: PLC0415

        point, _ = parse_key(key)
        assert archive.archiver.load(point, month) is not None

    rerun = _archive_cli(archive_env)
    assert rerun.wait(timeout=300) == 0
    assert len(archive.store.list("timeseries/")) == total
    for month in months(FIRST, LAST):
        for point in POINTS:
            found = archive.archiver.load(point, month)
            assert found is not None
            table, meta = found
            assert meta.rows == archive.tier.count(point, month.start, month.end) > 0
            ts = table.column("ts").cast("int64").to_numpy()
            assert len(set(ts.tolist())) == len(ts)
